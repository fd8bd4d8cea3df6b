// The pipeline context the benchmark process itself uses (to scan and enqueue with a real queue),
// and the worker processes it spawns: `node bin/dispersal.js worker`, ended by pid.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { loadConfig, type Config } from "../src/config.js";
import type { Database } from "../src/db/client.js";
import type { PipelineContext } from "../src/jobs/context.js";
import { log } from "../src/log.js";
import { createRedisConnection } from "../src/queues/connection.js";
import { openQueues } from "../src/queues/queues.js";
import { onCleanup, REDIS_URL } from "./benchResources.js";
import { waitUntil } from "./measure.js";

const BIN = fileURLToPath(new URL("../bin/dispersal.js", import.meta.url));

/**
 * Worker processes run as docs/scaling.md deploys them (Memory): V8's heap capped at 192 MB, which
 * holds a worker's RSS near 170 MB instead of letting the heap grow lazily towards 300 MB on a
 * large machine. `BENCH_WORKER_NODE_OPTIONS` (may be empty) overrides it.
 */
export const WORKER_NODE_OPTIONS = process.env.BENCH_WORKER_NODE_OPTIONS ?? "--max-old-space-size=192";

export interface BenchPipeline {
  ctx: PipelineContext;
  config: Config;
  close(): Promise<void>;
}

export function openBenchPipeline(database: Database, prefix: string, overrides: Record<string, string> = {}): BenchPipeline {
  log.level = "warn";
  const config = loadConfig({ DATABASE_URL: database.url, REDIS_URL, QUEUE_PREFIX: prefix, LOG_LEVEL: "warn", ...overrides });
  const connection = createRedisConnection(config, "dispersal-bench");
  const queues = openQueues(connection, prefix);
  const close = onCleanup(`queues ${prefix}`, async () => {
    await queues.close();
    connection.disconnect();
  });
  return { ctx: { database, readers: database, queues, settings: config, log }, config, close };
}

export interface ChildProcesses {
  pids: number[];
  output(): string;
  stop(): Promise<void>;
}

/** Spawns `count` children and ends them by pid (SIGTERM, then SIGKILL after a grace period). */
export function spawnChildren(count: number, command: string[], env: Record<string, string>, label: string): ChildProcesses {
  const children: ChildProcess[] = [];
  let output = "";
  for (let i = 0; i < count; i++) {
    const child = spawn(process.execPath, command, {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout!.on("data", (d: Buffer) => (output = (output + d.toString()).slice(-20_000)));
    child.stderr!.on("data", (d: Buffer) => (output = (output + d.toString()).slice(-20_000)));
    children.push(child);
  }
  const stop = onCleanup(`${label} processes ${children.map((c) => c.pid).join(",")}`, async () => {
    await Promise.all(children.map((child) => stopChild(child)));
  });
  return { pids: children.map((c) => c.pid!), output: () => output, stop };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  process.kill(child.pid!, "SIGTERM");
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, "SIGKILL");
  }, 15_000);
  await exited;
  clearTimeout(timer);
}

/**
 * `processes` worker processes of the service on the bench database and prefix; resolves once each
 * has its retrigger worker connected and the scan that every start triggers has finished (so that
 * it cannot pick up the orphans the benchmark seeds next).
 */
export async function startWorkerProcesses(
  pipeline: BenchPipeline,
  processes: number,
  env: Record<string, string>,
  options: { waitForStartUpScan?: boolean } = {},
): Promise<ChildProcesses> {
  const { queues } = pipeline.ctx;
  const children = spawnChildren(
    processes,
    [BIN, "worker"],
    {
      DATABASE_URL: pipeline.config.DATABASE_URL,
      REDIS_URL: pipeline.config.REDIS_URL,
      QUEUE_PREFIX: queues.prefix,
      HEALING_SCAN_EVERY_MS: String(24 * 3600 * 1000),
      LOG_LEVEL: "warn",
      ...(WORKER_NODE_OPTIONS ? { NODE_OPTIONS: WORKER_NODE_OPTIONS } : {}),
      ...env,
    },
    "worker",
  );
  try {
    await waitUntil(async () => (await queues.retrigger.getWorkersCount()) >= processes, { timeoutMs: 60_000, what: "worker processes", everyMs: 100 });
    if (options.waitForStartUpScan === false) return children;
    await waitUntil(
      async () => {
        const counts = await queues.healing.getJobCounts("active", "waiting", "completed", "failed");
        return counts.active === 0 && counts.waiting === 0 && (counts.completed ?? 0) + (counts.failed ?? 0) > 0;
      },
      { timeoutMs: 60_000, what: "the start-up scan", everyMs: 100 },
    );
  } catch (error) {
    await children.stop();
    throw new Error(`${(error as Error).message}\n${children.output()}`);
  }
  return children;
}
