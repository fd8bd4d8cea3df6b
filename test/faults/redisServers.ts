// Redis servers of the fault suite's own: a dedicated single node (to flush and restart without
// touching the shared one) and a 3-node Redis Cluster, all on loopback, in a temp dir, ended by pid.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { type Child, type ChildGroup, sleep, waitFor } from "./children.js";

/** Whether nothing listens on 127.0.0.1:port right now. */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** A port the kernel hands out for loopback (free at the time of asking). */
export function ephemeralPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function ping(port: number): Promise<string | undefined> {
  const redis = new Redis({ host: "127.0.0.1", port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 });
  redis.on("error", () => {});
  try {
    await redis.connect();
    return await redis.ping();
  } catch {
    return undefined;
  } finally {
    redis.disconnect();
  }
}

export interface RedisNode {
  port: number;
  child: Child;
}

/** redis-server on 127.0.0.1:port, no persistence (a restart comes back empty). */
export async function startRedis(children: ChildGroup, port: number, dir: string, extra: string[] = []): Promise<RedisNode> {
  const child = children.spawn(`redis-${port}`, "redis-server", [
    "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "yes", ...extra,
  ], { PATH: process.env.PATH ?? "" }, dir);
  await waitFor(async () => (child.alive() ? (await ping(port)) === "PONG" : Promise.reject(new Error(`redis-server on ${port} exited: ${child.output()}`))), {
    timeoutMs: 10_000,
    what: `redis-server on port ${port}`,
    everyMs: 50,
  });
  return { port, child };
}

export function makeTempDir(label: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), `dispersal-faults-${label}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `count` (default 3) free ports whose cluster bus ports (port + 10000) are free too. */
export async function clusterPorts(count = 3): Promise<number[]> {
  for (let tries = 0; tries < 50; tries++) {
    const base = 21000 + Math.floor(Math.random() * 9000);
    const ports = Array.from({ length: count }, (_, i) => base + i);
    const free = await Promise.all([...ports, ...ports.map((p) => p + 10000)].map(portIsFree));
    if (free.every(Boolean)) return ports;
  }
  throw new Error("no free ports for a Redis Cluster");
}

export interface RedisCluster {
  nodes: RedisNode[];
  /** host:port,… for REDIS_CLUSTER_NODES. */
  nodeList: string;
  stop(): Promise<void>;
}

/**
 * A 3-master Redis Cluster on loopback, created with redis-cli --cluster create, waited on until
 * cluster_state:ok. With `replicas: 1`, six nodes: each master has a replica that takes over when
 * the master is gone for `nodeTimeoutMs`.
 */
export async function startCluster(children: ChildGroup, options: { replicas?: 0 | 1; nodeTimeoutMs?: number } = {}): Promise<RedisCluster> {
  const replicas = options.replicas ?? 0;
  const temp = makeTempDir("cluster");
  const nodes: RedisNode[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.child.kill("SIGKILL")));
    temp.remove();
  };
  try {
    const ports = await clusterPorts(3 * (1 + replicas));
    for (const port of ports) {
      nodes.push(
        await startRedis(children, port, temp.dir, [
          "--cluster-enabled", "yes", "--cluster-config-file", `nodes-${port}.conf`, "--cluster-node-timeout", String(options.nodeTimeoutMs ?? 2000),
        ]),
      );
    }
    const create = children.spawn("redis-cli-cluster-create", "redis-cli", [
      "--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", String(replicas), "--cluster-yes",
    ]);
    const exit = await Promise.race([create.exited, sleep(30_000).then(() => ({ code: -1, signal: null }))]);
    if (exit.code !== 0) throw new Error(`redis-cli --cluster create failed (${JSON.stringify(exit)}): ${create.output()}`);
    await waitFor(
      async () => {
        const states = await Promise.all(
          ports.map(async (port) => {
            const redis = new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: 0, retryStrategy: () => null });
            redis.on("error", () => {});
            try {
              return /cluster_state:ok/.test(String(await redis.call("CLUSTER", "INFO")));
            } catch {
              return false;
            } finally {
              redis.disconnect();
            }
          }),
        );
        return states.every(Boolean);
      },
      { timeoutMs: 30_000, what: "cluster_state:ok on every node", everyMs: 200 },
    );
    return { nodes, nodeList: ports.map((p) => `127.0.0.1:${p}`).join(","), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
