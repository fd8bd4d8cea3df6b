// Everything the benchmark creates (databases dispersal_bench_*, Redis keys under its own prefixes,
// child processes) is registered here and removed at the end, on error and on Ctrl-C.
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { connectDatabase, type Database } from "../src/db/client.js";
import { migrateDatabase } from "../src/db/migrate.js";
import { deleteKeysWithPrefix } from "../test/helpers/redisKeys.js";

export const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";

const run = randomBytes(3).toString("hex");
const cleanups: Array<{ what: string; undo: () => Promise<void> }> = [];

export function onCleanup(what: string, undo: () => Promise<void>): () => Promise<void> {
  const entry = { what, undo };
  cleanups.push(entry);
  return async () => {
    const i = cleanups.indexOf(entry);
    if (i < 0) return;
    cleanups.splice(i, 1);
    await undo();
  };
}

export async function cleanupAll(): Promise<void> {
  while (cleanups.length > 0) {
    const entry = cleanups.pop()!;
    await entry.undo().catch((error: Error) => process.stderr.write(`bench: cleanup of ${entry.what} failed: ${error.message}\n`));
  }
}

export function databaseUrl(name: string): string {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

export interface BenchDatabase extends Database {
  name: string;
  drop(): Promise<void>;
}

async function dropDatabase(name: string): Promise<void> {
  const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`drop database if exists "${name}" with (force)`);
  } finally {
    await admin.end({ timeout: 5 });
  }
}

/** A freshly migrated database of its own, dropped by cleanupAll() (or by drop()). */
export async function createBenchDatabase(label: string, options: { max?: number } = {}): Promise<BenchDatabase> {
  const name = `dispersal_bench_${run}_${label}`;
  const url = databaseUrl(name);
  const undoDrop = onCleanup(`database ${name}`, () => dropDatabase(name));
  await migrateDatabase(url);
  const database = connectDatabase(url, { max: options.max ?? 16, applicationName: "dispersal-bench" });
  const undoClose = onCleanup(`pool of ${name}`, () => database.close());
  return {
    ...database,
    name,
    drop: async () => {
      await undoClose();
      await undoDrop();
    },
  };
}

/** A queue prefix of its own (a hash tag, like the service's default); its keys are deleted by cleanupAll(). */
export function benchQueuePrefix(label: string): string {
  const prefix = `{bench-${run}-${label}}`;
  onCleanup(`redis keys ${prefix}`, () => deleteRedisKeys(prefix));
  return prefix;
}

export async function deleteRedisKeys(prefix: string): Promise<void> {
  await deleteKeysWithPrefix(REDIS_URL, prefix);
}

let hooked = false;
/** Ctrl-C or SIGTERM: clean up, then exit. */
export function cleanupOnSignals(): void {
  if (hooked) return;
  hooked = true;
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`\nbench: ${signal}: cleaning up\n`);
    void cleanupAll().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
}
