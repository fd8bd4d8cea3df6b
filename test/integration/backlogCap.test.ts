import { describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { disperseObligation } from "../../src/db/dispersals.js";
import { resolveHealing } from "../../src/db/healing.js";
import { scanForOrphans } from "../../src/jobs/scan.js";
import { enqueueRetriggers, retriggerBacklog } from "../../src/queues/retriggerJobs.js";
import { readScanCursor } from "../../src/queues/scanState.js";
import { givenOrphans } from "../helpers/orphans.js";
import { testPipeline } from "../helpers/pipeline.js";
import { spawnCli, waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";

const database = await testDb({ max: 8 });
const { db } = database;

async function orphansLeft(): Promise<number> {
  const [row] = await db.execute<{ n: number }>(sql`select count(*)::int as n from obligations where status = 'settled' and not dispersed`);
  return row!.n;
}

describe("the bounded backlog (HEALING_MAX_BACKLOG)", () => {
  it("a scan tick enqueues only what fits, the next tick goes on after it, and one tick round the whole ring ends it", async () => {
    const pipeline = testPipeline(database, { HEALING_MAX_BACKLOG: "100", HEALING_SCAN_PAGE_SIZE: "30" });
    const { ctx } = pipeline;
    await givenOrphans(database, { count: 250 });
    const queued = async () => (await ctx.queues.retrigger.getJobs(["waiting"], 0, -1)).map((j) => j.data.obligationId).sort();
    // What the workers would do with the queued jobs: disperse them, then they leave the backlog.
    const workThrough = async (ids: string[]) => {
      for (const id of ids) await db.transaction(async (tx) => (await disperseObligation(tx, id), await resolveHealing(tx, id, 1, { actor: "test" })));
      await ctx.queues.retrigger.obliterate({ force: true });
    };

    const first = await scanForOrphans(ctx);
    expect(first).toMatchObject({ enqueued: 100, backlogFull: true });
    expect(await retriggerBacklog(ctx.queues)).toBe(100);
    const firstIds = await queued();

    const whileFull = await scanForOrphans(ctx);
    expect(whileFull).toMatchObject({ found: 0, enqueued: 0, backlogFull: true });
    expect(await retriggerBacklog(ctx.queues)).toBe(100);

    await workThrough(firstIds);
    const second = await scanForOrphans(ctx);
    expect(second).toMatchObject({ enqueued: 100, backlogFull: true });
    const secondIds = await queued();
    expect(secondIds[0]! > firstIds[firstIds.length - 1]!).toBe(true); // after the cursor, not the same orphans again
    expect(await readScanCursor(ctx.queues)).toBe(secondIds[secondIds.length - 1]);

    await workThrough(secondIds);
    const last = await scanForOrphans(ctx);
    expect(last).toMatchObject({ found: 50, enqueued: 50, backlogFull: false });
    expect(await readScanCursor(ctx.queues)).toBeNull();
    await workThrough(await queued());
    expect(await orphansLeft()).toBe(0);
  });

  it("requeues and other callers of the enqueue path obey the cap: what does not fit is deferred, not lost", async () => {
    const pipeline = testPipeline(database, { HEALING_MAX_BACKLOG: "5" });
    const { obligationIds } = await givenOrphans(database, { count: 8 });
    const result = await enqueueRetriggers(pipeline.ctx.queues, pipeline.ctx.settings, obligationIds);
    expect(result.map((j) => j.obligationId)).toEqual(obligationIds.slice(0, 5));
    expect(result.deferred).toEqual(obligationIds.slice(5));
    const again = await enqueueRetriggers(pipeline.ctx.queues, pipeline.ctx.settings, obligationIds.slice(0, 2));
    expect(again.map((j) => j.added)).toEqual([false, false]); // live already: kept, never doubled, no room needed
    expect(await retriggerBacklog(pipeline.ctx.queues)).toBe(5);
    await pipeline.ctx.queues.retrigger.obliterate({ force: true });
    for (const id of obligationIds) await db.transaction(async (tx) => (await disperseObligation(tx, id), await resolveHealing(tx, id, 1, { actor: "test" })));
  });

  it("5,000 orphans, a backlog cap of 500 and an hourly scan: two worker processes heal them all, the backlog never above 550", async () => {
    const { obligationIds } = await givenOrphans(database, { count: 5000, perMortgage: 50 });
    const pipeline = testPipeline(database, { HEALING_MAX_BACKLOG: "500" });
    const env = {
      DATABASE_URL: database.url,
      REDIS_URL: pipeline.config.REDIS_URL,
      QUEUE_PREFIX: pipeline.ctx.queues.prefix,
      HEALING_MAX_BACKLOG: "500",
      HEALING_SCAN_EVERY_MS: "3600000",
      LOG_LEVEL: "warn",
    };
    const workers = [spawnCli(["worker"], env), spawnCli(["worker"], env)];
    let peak = 0;
    let samples = 0;
    await waitFor(
      async () => {
        peak = Math.max(peak, await retriggerBacklog(pipeline.ctx.queues));
        samples++;
        return (await orphansLeft()) === 0;
      },
      { timeoutMs: 180_000, what: "every orphan dispersed", everyMs: 25 },
    );
    expect(samples).toBeGreaterThan(20);
    expect(peak).toBeGreaterThan(100);
    expect(peak).toBeLessThanOrEqual(550);
    const [counts] = await db.execute<{ entries: number; obligations: number }>(sql`
      select count(*)::int as entries, count(distinct obligation_id)::int as obligations from dispersal_entries
       where obligation_id in (select (jsonb_array_elements_text(${JSON.stringify(obligationIds)}::jsonb))::uuid)`);
    expect(counts).toEqual({ entries: 15_000, obligations: 5000 });
    expect(await Promise.all(workers.map((w) => w.stop("SIGTERM")))).toEqual([0, 0]);
  }, 240_000);
});
