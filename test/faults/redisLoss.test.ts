// Fault 3: Redis loses everything mid-run, twice — FLUSHALL, then the server killed and restarted
// empty — on a redis-server of this file's own. Postgres holds the money facts: the next scan
// re-enqueues what is left, nothing is lost or doubled, and the workers ride it out.
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { scanForOrphans } from "../../src/jobs/scan.js";
import { ChildGroup, sleep, type Child } from "./children.js";
import { expectNothingLostOrDoubled, measureEndState } from "./endState.js";
import { recordFaults } from "./faultCounts.js";
import { ephemeralPort, makeTempDir, portIsFree, startRedis } from "./redisServers.js";
import { note, Scenario } from "./scenario.js";

const redisChildren = new ChildGroup();
const temp = makeTempDir("redis");
const port = (await portIsFree(6391)) ? 6391 : await ephemeralPort();
await startRedis(redisChildren, port, temp.dir);
const scenario = await Scenario.open({ redisUrl: `redis://127.0.0.1:${port}` });
afterAll(async () => {
  await scenario.close();
  await redisChildren.killAll();
  temp.remove();
});

describe("fault: Redis restarted empty mid-run", () => {
  it("re-enqueues what is left on the next scan, with no duplicate and nothing lost", async () => {
    const orphans = await scenario.seedOrphans({ fixable: 1100, unfixable: 100 });
    const env = { WORKER_CONCURRENCY: "4" };
    const workers: Child[] = [0, 1, 2].map((i) => scenario.spawnWorker(`worker-${i}`, env));
    expect((await scanForOrphans(scenario.ctx, "fault-suite")).found).toBeGreaterThan(0);
    let injected = 0;

    await scenario.waitForProgress(0.25);
    const admin = new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: 1 });
    try {
      await admin.flushall();
    } finally {
      admin.disconnect();
    }
    injected++;
    note("FLUSHALL", { progress: await scenario.progress() });
    await sleep(1000);
    const afterFlush = await scanForOrphans(scenario.ctx, "fault-suite");
    note("scan after FLUSHALL", { found: afterFlush.found, enqueued: afterFlush.enqueued, backstop: afterFlush.escalatedByBackstop });
    expect(afterFlush.enqueued).toBeGreaterThan(0);

    await scenario.waitForProgress(0.6);
    const server = redisChildren.live().find((c) => c.name === `redis-${port}`)!;
    expect((await server.kill("SIGKILL")).signal).toBe("SIGKILL");
    injected++;
    note("redis-server killed", { progress: await scenario.progress() });
    await sleep(1000);
    await startRedis(redisChildren, port, temp.dir);
    note("redis-server restarted empty");
    await sleep(1500);
    const afterRestart = await scanForOrphans(scenario.ctx, "fault-suite");
    note("scan after restart", { found: afterRestart.found, enqueued: afterRestart.enqueued, backstop: afterRestart.escalatedByBackstop });

    // Once more while only the unfixable ones are left, in the middle of their rounds: rounds that
    // used every attempt are escalated by the scan's backstop, the others start a new round.
    await scenario.waitForProgress(1100 / 1200);
    const again = new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: 1 });
    try {
      await again.flushall();
    } finally {
      again.disconnect();
    }
    injected++;
    note("FLUSHALL during the unfixable rounds", { progress: await scenario.progress() });
    await sleep(1000);
    const afterSecondFlush = await scanForOrphans(scenario.ctx, "fault-suite");
    note("scan after the second FLUSHALL", { found: afterSecondFlush.found, enqueued: afterSecondFlush.enqueued, backstop: afterSecondFlush.escalatedByBackstop });

    await scenario.settle();
    const end = await measureEndState(scenario.database, orphans);
    recordFaults(import.meta.url, "Redis flushed and restarted empty", { injected, ...end });
    expect(workers.map((w) => w.alive())).toEqual([true, true, true]);
    expectNothingLostOrDoubled(end, { dispersed: 1100, escalated: 100 });
  }, 180_000);
});
