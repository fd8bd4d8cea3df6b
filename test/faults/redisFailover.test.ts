// Failover of the distributed engine: a 6-node Redis Cluster (3 masters, 3 replicas) on loopback,
// worker processes on it (REDIS_CLUSTER_NODES), 1,200 orphans in flight; the master that owns the
// queue prefix's hash slot is SIGKILLed by pid mid-run and its replica takes over (cluster node
// timeout 1 s). The same worker processes carry on by themselves: nothing lost, nothing doubled, no
// wrong escalation, reconciliation clean. Every node and its temp dir are gone afterwards.
import { afterAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { Redis } from "ioredis";
import { scanForOrphans } from "../../src/jobs/scan.js";
import { ChildGroup, waitFor, whyExited } from "./children.js";
import { expectNothingLostOrDoubled, measureEndState } from "./endState.js";
import { recordFaults } from "./faultCounts.js";
import { startCluster, type RedisNode } from "./redisServers.js";
import { note, Scenario } from "./scenario.js";

const clusterChildren = new ChildGroup();
const cluster = await startCluster(clusterChildren, { replicas: 1, nodeTimeoutMs: 1000 });
const scenario = await Scenario.open({ clusterNodes: cluster.nodeList, prefix: `{failover${randomBytes(4).toString("hex")}}` });
afterAll(async () => {
  await scenario.close();
  await cluster.stop();
  await clusterChildren.killAll();
});

async function onNode<T>(port: number, work: (redis: Redis) => Promise<T>): Promise<T | undefined> {
  const redis = new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 });
  redis.on("error", () => {});
  try {
    return await work(redis);
  } catch {
    return undefined;
  } finally {
    redis.disconnect();
  }
}

interface NodeLine {
  port: number;
  role: "master" | "slave";
  failed: boolean;
  slots: [number, number][];
}

/** CLUSTER NODES as one live node sees it. */
async function clusterView(port: number): Promise<NodeLine[] | undefined> {
  const text = await onNode(port, async (r) => String(await r.call("CLUSTER", "NODES")));
  if (!text) return undefined;
  return text.trim().split("\n").map((line) => {
    const [, address, flags, , , , , , ...slots] = line.split(" ");
    return {
      port: Number(address!.split("@")[0]!.split(":")[1]),
      role: flags!.includes("master") ? "master" : "slave",
      failed: /fail/.test(flags!),
      slots: slots.filter((s) => /^\d/.test(s)).map((s) => {
        const [from, to = from] = s.split("-");
        return [Number(from), Number(to)] as [number, number];
      }),
    };
  });
}

async function ownerOf(slot: number, askPort: number): Promise<NodeLine | undefined> {
  const view = await clusterView(askPort);
  return view?.find((n) => n.role === "master" && !n.failed && n.slots.some(([a, b]) => slot >= a && slot <= b));
}

describe("fault: Redis Cluster failover (3 masters, 3 replicas)", () => {
  it("loses nothing and doubles nothing when the master of the queue's slot is killed mid-run and its replica takes over", async () => {
    // Every replica in sync before anything runs: a failover needs one.
    await waitFor(
      async () => {
        const view = await clusterView(cluster.nodes[0]!.port);
        if (!view || view.filter((n) => n.role === "slave").length !== 3) return false;
        const links = await Promise.all(view.filter((n) => n.role === "slave").map((n) => onNode(n.port, async (r) => String(await r.info("replication")))));
        return links.every((info) => info !== undefined && /master_link_status:up/.test(info));
      },
      { timeoutMs: 30_000, what: "three replicas in sync", everyMs: 200 },
    );

    const orphans = await scenario.seedOrphans({ fixable: 1100, unfixable: 100 });
    const env = { WORKER_CONCURRENCY: "4", REDIS_URL: "redis://127.0.0.1:1" };
    const workers = [0, 1, 2].map((i) => scenario.spawnWorker(`worker-${i}`, env));
    const scan = await scanForOrphans(scenario.ctx, "fault-suite");
    expect(scan.enqueued).toBe(1200);

    const slot = Number(await onNode(cluster.nodes[0]!.port, (r) => r.call("CLUSTER", "KEYSLOT", scenario.prefix)));
    const master = await ownerOf(slot, cluster.nodes[0]!.port);
    expect(master).toBeDefined();
    const victim = cluster.nodes.find((n) => n.port === master!.port) as RedisNode;
    const survivor = cluster.nodes.find((n) => n !== victim)!;

    await scenario.waitForProgress(0.15, 120_000);
    const before = await scenario.progress();
    expect(before.open).toBeGreaterThan(500);
    expect((await victim.child.kill("SIGKILL")).signal).toBe("SIGKILL");
    const killedAt = Date.now();
    note("master of the queue's slot killed", { slot, port: victim.port, pid: victim.child.pid, progress: before });

    const promoted = await waitFor(
      async () => {
        const owner = await ownerOf(slot, survivor.port);
        return owner && owner.port !== victim.port ? owner : undefined;
      },
      { timeoutMs: 30_000, what: "a replica to take the slot over", everyMs: 100 },
    );
    note("replica promoted", { port: promoted.port, afterMs: Date.now() - killedAt });

    // The same worker processes carry on: progress after the failover, nobody respawned.
    await scenario.waitForProgress(0.9, 120_000);
    expect(workers.map((w) => w.alive()), whyExited(workers)).toEqual([true, true, true]);

    await scenario.settle({ timeoutMs: 180_000 });
    const end = await measureEndState(scenario.database, orphans);
    recordFaults(import.meta.url, "master of the queue's slot killed, replica promoted", { injected: 1, ...end });
    expect(workers.map((w) => w.alive()), whyExited(workers)).toEqual([true, true, true]);
    expectNothingLostOrDoubled(end, { dispersed: 1100, escalated: 100 });
  }, 300_000);

  it("shuts every node down and removes the temp dir", async () => {
    const dirs = cluster.nodes.map((n) => n.child.process.spawnargs[n.child.process.spawnargs.indexOf("--dir") + 1]!);
    await scenario.close();
    await cluster.stop();
    expect(cluster.nodes.map((n) => n.child.alive())).toEqual([false, false, false, false, false, false]);
    expect(dirs.every((d) => !existsSync(d))).toBe(true);
  }, 120_000);
});
