// Reconciliation's findings about stuck work (DESIGN.md §6): orphans past their deadline (scan
// interval + the round's backoff + margin, counted from settlement or the latest requeue), jobs
// refused as unrecoverable whose obligation is still an orphan, and SUSPENSE of open healing rows.
import { describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { escalateToSuspense } from "../../src/db/healing.js";
import { orphanAges } from "../../src/db/orphanAges.js";
import { orphanDeadlineOf, reconcileLedger } from "../../src/jobs/reconcile.js";
import { scanForOrphans } from "../../src/jobs/scan.js";
import { JOB } from "../../src/queues/names.js";
import { givenRequeued } from "../helpers/healingRows.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { postCashReceivedBySql } from "../helpers/otherSystems.js";
import { testPipeline } from "../helpers/pipeline.js";
import { waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";

const database = await testDb();
// No workers unless a test starts them: orphans stay orphans.
const pipeline = testPipeline(database, { HEALING_SCAN_EVERY_MS: String(15 * 60_000), HEALING_BACKOFF_MS: "60000" });
const { ctx } = pipeline;
const db = database.db;
const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000);

async function escalate(obligationId: string) {
  return db.transaction((tx) => escalateToSuspense(tx, obligationId, { actor: "test", reason: "no active positions", attemptCount: 3 }));
}

describe("stale orphans", () => {
  it("are the orphans older than scan interval + round backoff + margin (23 min by default), not escalated ones nor a fresh requeue", async () => {
    expect(orphanDeadlineOf(ctx.settings)).toBe(23 * 60_000);
    const old = await givenSettledObligation(database, { settledAt: minutesAgo(40) });
    const fresh = await givenSettledObligation(database, { settledAt: minutesAgo(20) });
    const retrying = await givenSettledObligation(database, { settledAt: minutesAgo(50) });
    await db.execute(sql`insert into dispersal_healing_attempts (obligation_id, attempt_count, status, last_error)
                         values (${retrying.obligationId}::uuid, 1, 'retrying', 'no active positions')`);
    const escalated = await givenSettledObligation(database, { lenders: [0], settledAt: minutesAgo(120) });
    expect(await escalate(escalated.obligationId)).toBe("escalated");
    const requeued = await givenSettledObligation(database, { lenders: [0], settledAt: minutesAgo(120) });
    await escalate(requeued.obligationId);
    await givenRequeued(database, requeued.obligationId);

    const report = await reconcileLedger(ctx);
    expect(report.findings.staleOrphans).toEqual({ count: 2, sample: expect.arrayContaining([old.obligationId, retrying.obligationId]) });

    const ages = new Map((await orphanAges(db)).map((a) => [a.state, a]));
    expect(ages.get("new")).toMatchObject({ count: 2 });
    expect(ages.get("new")!.oldestAgeSeconds).toBeGreaterThanOrEqual(40 * 60);
    expect(ages.get("new")!.oldestAgeSeconds).toBeLessThan(45 * 60);
    expect(ages.get("retrying")).toMatchObject({ count: 1 });
    expect(ages.get("retrying")!.oldestAgeSeconds).toBeGreaterThanOrEqual(50 * 60);
    expect(ages.get("requeued")).toMatchObject({ count: 1 });
    expect(ages.get("requeued")!.oldestAgeSeconds).toBeLessThan(5 * 60); // counted from the requeue
    expect(ages.get("escalated")).toMatchObject({ count: 1 });
    expect(ages.get("escalated")!.oldestAgeSeconds).toBeGreaterThanOrEqual(120 * 60);
    expect(fresh.obligationId).not.toBe(old.obligationId);

    // Dispersed (here: by a scan and a worker), nothing is stale any more.
    const workers = pipeline.startWorkers();
    try {
      await scanForOrphans(ctx);
      await waitFor(async () => (await reconcileLedger(ctx)).findings.staleOrphans?.count === 0, { timeoutMs: 20_000, what: "no stale orphan", everyMs: 300 });
    } finally {
      await workers.close();
    }
    expect((await orphanAges(db)).find((a) => a.state === "new")).toEqual({ state: "new", count: 0, oldestAgeSeconds: 0 });
  });
});

describe("jobs refused as unrecoverable", () => {
  it("are a finding while their obligation is still an orphan, and only then", async () => {
    const orphan = await givenSettledObligation(database, {});
    const dispersedLater = await givenSettledObligation(database, {});
    const settledLater = await givenSettledObligation(database, { status: "due" });
    const { retrigger } = ctx.queues;
    const refused = [
      // A payload refused as malformed, which names a real orphan.
      await retrigger.add(JOB.retrigger, { obligationId: orphan.obligationId.toUpperCase(), unexpected: "x".repeat(300) } as never, { attempts: 3 }),
      await retrigger.add(JOB.retrigger, { obligationId: dispersedLater.obligationId, unexpected: "x".repeat(300) } as never, { attempts: 3 }),
      // Refused because it was not settled yet: it is settled after the refusal, a new orphan the scan will pick up.
      await retrigger.add(JOB.retrigger, { obligationId: settledLater.obligationId }, { attempts: 3 }),
      await retrigger.add(JOB.retrigger, { obligationId: "30000000-0000-0000-0000-00000000dead" }, { attempts: 3 }),
      await retrigger.add(JOB.retrigger, { obligationId: "not an id" } as never, { attempts: 3 }),
    ];
    const workers = pipeline.startWorkers();
    try {
      await waitFor(async () => (await Promise.all(refused.map((j) => retrigger.getJob(j.id!).then((x) => x?.isFailed())))).every(Boolean), {
        timeoutMs: 20_000,
        what: "every job refused",
      });
      await retrigger.add(JOB.retrigger, { obligationId: dispersedLater.obligationId }, { attempts: 3 });
      await waitFor(async () => (await db.execute(sql`select 1 from obligations where id = ${dispersedLater.obligationId}::uuid and dispersed`)).length > 0, {
        timeoutMs: 20_000,
        what: "the second obligation dispersed",
      });
    } finally {
      await workers.close();
    }
    await db.execute(sql`update obligations set status = 'settled', settled_at = now() + interval '1 second' where id = ${settledLater.obligationId}::uuid`);

    const report = await reconcileLedger(ctx);
    expect(report.findings.rejectedOrphans).toEqual({ count: 1, sample: [orphan.obligationId] });
  });
});

describe("SUSPENSE of open healing rows", () => {
  it("of a requeued obligation must be 0 or its settled amount: late cash is reported until the backstop tops it up", async () => {
    const o = await givenSettledObligation(database, { lenders: [0], amount: 100_000n, cashReceived: [90_000n] });
    await escalate(o.obligationId);
    await givenRequeued(database, o.obligationId);
    expect((await reconcileLedger(ctx)).findings.openSuspenseMismatch).toEqual({ count: 0, sample: [] });

    await postCashReceivedBySql(database, o.obligationId, 10_000n);
    const report = await reconcileLedger(ctx);
    expect(report.findings.openSuspenseMismatch).toEqual({ count: 1, sample: [o.obligationId] });
    expect(report.findings.escalatedSuspenseMismatch).toEqual({ count: 0, sample: [] });

    expect(await scanForOrphans(ctx)).toMatchObject({ suspenseToppedUp: 1, obligationErrors: 0 });
    expect((await reconcileLedger(ctx)).findings.openSuspenseMismatch).toEqual({ count: 0, sample: [] });
  });
});
