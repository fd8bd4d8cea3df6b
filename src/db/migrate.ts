// Brings a database to the current schema: creates it if missing, then applies drizzle/ migrations
// under an advisory lock, so several processes starting at once migrate one at a time. The lock is
// a session's: callers pass the direct URL (DATABASE_DIRECT_URL), never a transaction pooler's.
import postgres from "postgres";
import { drizzle } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import { fileURLToPath } from "node:url";
import { InfrastructureError } from "../domain/errors.js";
import { redactUrl } from "../redactUrl.js";
import { isOutage } from "./client.js";

export const MIGRATIONS_FOLDER = fileURLToPath(new URL("../../drizzle", import.meta.url));
const MIGRATION_LOCK = 7_240_001;

/**
 * The database a postgres:// URL names, and the same URL naming `postgres` instead. By hand, not
 * with URL: a multi-host URL (`host1:5432,host2:5432`, a failover pair) is not one WHATWG URL.
 */
export function splitDatabaseUrl(url: string): { name: string; adminUrl: string } {
  const match = /^([a-z]+:\/\/[^/?#]*)(\/[^?#]*)?(.*)$/i.exec(url);
  const name = match ? decodeURIComponent((match[2] ?? "").replace(/^\//, "")) : "";
  return { name, adminUrl: match ? `${match[1]}/postgres${match[3]}` : url };
}

export async function createDatabaseIfMissing(url: string): Promise<boolean> {
  const { name, adminUrl } = splitDatabaseUrl(url);
  if (!name) throw new InfrastructureError(`DATABASE_URL ${redactUrl(url)} names no database`);
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    const found = await sql`select 1 from pg_database where datname = ${name}`;
    if (found.length > 0) return false;
    await sql.unsafe(`create database "${name.replace(/"/g, '""')}"`);
    return true;
  } catch (error) {
    if ((error as { code?: string }).code === "42P04") return false; // created by a process racing us
    throw unreachable(url, error);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export async function migrateDatabase(url: string): Promise<void> {
  await createDatabaseIfMissing(url);
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    await sql`select pg_advisory_lock(${MIGRATION_LOCK})`;
    await migrate(drizzle(sql), { migrationsFolder: MIGRATIONS_FOLDER });
    await sql`select pg_advisory_unlock(${MIGRATION_LOCK})`;
  } catch (error) {
    throw unreachable(url, error);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

export function unreachable(url: string, error: unknown): unknown {
  if (!isOutage(error)) return error;
  return new InfrastructureError(
    `Cannot reach Postgres at ${redactUrl(url)} (${(error as Error).message}). ` +
      "Start one with `docker compose up -d postgres`, or point DATABASE_URL at a running server.",
    { cause: error },
  );
}
