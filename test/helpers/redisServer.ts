// A redis-server of a test's own on a free loopback port (never the shared one): to kill by pid and
// restart on the same port. Append-only file on, so that a restart comes back with what it held.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll } from "vitest";
import { waitFor } from "./processes.js";

export interface PrivateRedis {
  port: number;
  url: string;
  /** SIGKILL, then wait until it is gone. */
  kill(): Promise<void>;
  /** Start again on the same port and data directory; resolves when it answers PING. */
  restart(): Promise<void>;
  /** SIGSTOP: connections stay open and commands are accepted, but nothing is answered (a hung Redis). */
  freeze(): void;
  /** SIGCONT after freeze(). */
  thaw(): void;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function answers(port: number): Promise<boolean> {
  const redis = new Redis({ host: "127.0.0.1", port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 500 });
  redis.on("error", () => {});
  try {
    await redis.connect();
    return (await redis.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

/** Registered at collection time: afterAll ends the server by its pid and removes its directory. */
export async function privateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "dispersal-redis-"));
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dir], {
      stdio: "ignore",
    });
    await waitFor(async () => answers(port), { timeoutMs: 10_000, what: `redis-server on port ${port}`, everyMs: 50 });
  };
  const kill = async () => {
    const running = child;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once("exit", resolve));
    process.kill(running.pid!, "SIGKILL"); // a stopped (frozen) process dies of SIGKILL too
    await exited;
  };
  afterAll(async () => {
    await kill();
    rmSync(dir, { recursive: true, force: true });
  });
  await start();
  const signal = (name: "SIGSTOP" | "SIGCONT") => {
    if (!child || child.exitCode !== null || child.signalCode !== null) throw new Error(`redis-server on port ${port} is not running`);
    process.kill(child.pid!, name);
  };
  return { port, url: `redis://127.0.0.1:${port}`, kill, restart: start, freeze: () => signal("SIGSTOP"), thaw: () => signal("SIGCONT") };
}
