// Fault 6: the pipeline on a real 3-node Redis Cluster (started here on loopback, created with
// redis-cli --cluster create), unchanged but for REDIS_CLUSTER_NODES and a hash-tagged prefix. A
// worker is killed mid-run for good measure. The cluster and its temp dir are gone afterwards.
import { afterAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { Redis } from "ioredis";
import { scanForOrphans } from "../../src/jobs/scan.js";
import { ChildGroup, whyExited } from "./children.js";
import { expectNothingLostOrDoubled, measureEndState } from "./endState.js";
import { recordFaults } from "./faultCounts.js";
import { startCluster } from "./redisServers.js";
import { note, Scenario } from "./scenario.js";

const clusterChildren = new ChildGroup();
const cluster = await startCluster(clusterChildren);
const scenario = await Scenario.open({ clusterNodes: cluster.nodeList, prefix: `{fault${randomBytes(4).toString("hex")}}` });
afterAll(async () => {
  await scenario.close();
  await cluster.stop();
  await clusterChildren.killAll();
});

describe("fault: a 3-node Redis Cluster", () => {
  it("heals several hundred orphans with worker processes on the cluster, exactly once each", async () => {
    const orphans = await scenario.seedOrphans({ fixable: 450, unfixable: 50 });
    const workers = [0, 1, 2].map((i) => scenario.spawnWorker(`worker-${i}`, { WORKER_CONCURRENCY: "4", REDIS_URL: "redis://127.0.0.1:1" }));
    const scan = await scanForOrphans(scenario.ctx, "fault-suite");
    expect(scan.found).toBeGreaterThan(0);

    // The keys of the queues all live on the one slot of the hash tag.
    const slotOwners = new Set<number>();
    for (const node of cluster.nodes) {
      const redis = new Redis({ host: "127.0.0.1", port: node.port, maxRetriesPerRequest: 1 });
      try {
        if ((await redis.call("DBSIZE")) as number > 0) slotOwners.add(node.port);
      } finally {
        redis.disconnect();
      }
    }
    note("cluster up, orphans enqueued", { nodes: cluster.nodeList, nodesHoldingKeys: slotOwners.size, progress: await scenario.progress() });
    expect(slotOwners.size).toBe(1);

    await scenario.waitForProgress(0.3);
    expect((await workers[1]!.kill("SIGKILL")).signal).toBe("SIGKILL");
    workers[1] = scenario.spawnWorker("worker-1-respawn", { WORKER_CONCURRENCY: "4", REDIS_URL: "redis://127.0.0.1:1" });
    note("worker killed on the cluster", { progress: await scenario.progress() });

    await scenario.settle();
    const end = await measureEndState(scenario.database, orphans);
    recordFaults(import.meta.url, "pipeline on a 3-node Redis Cluster, a worker killed", { injected: 1, ...end });
    expect(workers.map((w) => w.alive()), whyExited(workers)).toEqual([true, true, true]);
    expectNothingLostOrDoubled(end, { dispersed: 450, escalated: 50 });
  }, 180_000);

  it("shuts the cluster down and removes its temp dir", async () => {
    const dirs = cluster.nodes.map((n) => n.child.process.spawnargs[n.child.process.spawnargs.indexOf("--dir") + 1]!);
    await scenario.close();
    await cluster.stop();
    expect(cluster.nodes.map((n) => n.child.alive())).toEqual([false, false, false]);
    expect(dirs.map((d) => existsSync(d))).toEqual([false, false, false]);
  }, 180_000);
});
