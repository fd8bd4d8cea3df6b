// Late cash and repeated escalations (DESIGN.md §4): while escalated, SUSPENSE of the obligation
// equals its settled amount; a later escalation or late cash posts only the difference; resolution
// reverses every suspense posting; one escalation of a round is one posting and one audit row.
import { beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { escalateToSuspense } from "../../src/db/healing.js";
import { findAccount } from "../../src/db/ledger.js";
import { runReconciliation } from "../../src/db/reconciliation.js";
import { requestRequeue, type RequeueResult } from "../../src/jobs/requeue.js";
import { scanAndWait } from "../../src/jobs/scanAndWait.js";
import { scanForOrphans } from "../../src/jobs/scan.js";
import { givenRequeued } from "../helpers/healingRows.js";
import { givenSettledObligation, type GivenObligationResult } from "../helpers/factories.js";
import { postCashReceivedBySql } from "../helpers/otherSystems.js";
import { testPipeline } from "../helpers/pipeline.js";
import { waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";

const database = await testDb({ max: 12 });
const pipeline = testPipeline(database);
const { ctx } = pipeline;
const db = database.db;

beforeAll(() => {
  pipeline.startWorkers();
});

async function healing(obligationId: string) {
  const [row] = await db.execute<{ status: string; attempt_count: number }>(sql`
    select status, attempt_count from dispersal_healing_attempts where obligation_id = ${obligationId}::uuid`);
  return row;
}

async function journal(obligationId: string, entryType: string) {
  const rows = await db.execute<{ id: string; amount: bigint; idempotency_key: string; reverses_entry_id: string | null }>(sql`
    select id, amount, idempotency_key, reverses_entry_id from cash_journal_entries
     where obligation_id = ${obligationId}::uuid and entry_type = ${entryType} order by sequence`);
  return rows.map((r) => ({ ...r, amount: BigInt(r.amount) }));
}

async function suspenseOf(o: GivenObligationResult): Promise<bigint> {
  return (await findAccount(db, { family: "SUSPENSE", mortgageId: o.mortgageId, obligationId: o.obligationId }))?.balance ?? 0n;
}

async function audits(obligationId: string, action: string): Promise<number> {
  const [row] = await db.execute<{ n: bigint }>(sql`select count(*) as n from audit_log where resource_id = ${obligationId} and action = ${action}`);
  return Number(row!.n);
}

async function waitForStatus(obligationId: string, status: string, attempts?: number) {
  await waitFor(
    async () => {
      const row = await healing(obligationId);
      return row?.status === status && (attempts === undefined || row.attempt_count === attempts);
    },
    { timeoutMs: 20_000, what: `${obligationId} ${status}` },
  );
}

async function reconcile() {
  return runReconciliation(db, { orphanDeadlineMs: 15 * 60_000 });
}

describe("late cash for an escalated obligation (the issue's scenario)", () => {
  it("a second round's escalation tops SUSPENSE up by the late 10,000; the success reverses every suspense posting", async () => {
    // 100,000 owed, 90,000 received; no lender holds units: the round fails 3 times and escalates.
    const o = await givenSettledObligation(database, { lenders: [0], amount: 100_000n, cashReceived: [90_000n] });
    expect(await scanAndWait(ctx, { timeoutMs: 20_000 })).toMatchObject({ found: 1, escalated: 1 });
    expect(await healing(o.obligationId)).toMatchObject({ status: "escalated", attempt_count: 3 });
    expect(await suspenseOf(o)).toBe(90_000n);

    // Another system posts the remaining 10,000; an operator requeues; the new round fails 3 times.
    await postCashReceivedBySql(database, o.obligationId, 10_000n);
    const jobId = ((await requestRequeue(ctx, o.obligationId, { actor: "alice", channel: "cli", reason: "late cash arrived" })) as RequeueResult).jobId!;
    await waitFor(async () => (await ctx.queues.retrigger.getJob(jobId))?.isFailed(), { timeoutMs: 20_000, what: "the requeued round's final failure" });
    await pipeline.ctx.queues.retrigger.getJob(jobId);
    await waitForStatus(o.obligationId, "escalated", 3);

    expect(await suspenseOf(o)).toBe(100_000n);
    expect((await journal(o.obligationId, "SUSPENSE_ESCALATED")).map((p) => [p.amount, p.idempotency_key])).toEqual([
      [90_000n, `suspense-escalation:${o.obligationId}`],
      [10_000n, `suspense-escalation:${o.obligationId}:2`],
    ]);
    expect(await audits(o.obligationId, "dispersal.self_healing_escalated")).toBe(2);
    // Escalated, listed, requeueable again; nothing for the scan to do; the ledger reconciles.
    const scan = await scanForOrphans(ctx);
    expect(scan).toMatchObject({ found: 0, suspenseToppedUp: 0, obligationErrors: 0 });
    expect(await reconcile()).toMatchObject({ status: "clean", defectCount: 0 });

    // Positions fixed, requeued, dispersed: both suspense postings reversed, SUSPENSE 0.
    await db.execute(sql`update mortgage_positions set units = 10000 where mortgage_id = ${o.mortgageId}::uuid`);
    await requestRequeue(ctx, o.obligationId, { actor: "alice", channel: "cli", reason: "positions fixed" });
    await waitForStatus(o.obligationId, "resolved");
    const parked = await journal(o.obligationId, "SUSPENSE_ESCALATED");
    const reversals = await journal(o.obligationId, "REVERSAL");
    expect(reversals.map((r) => [r.reverses_entry_id, r.amount])).toEqual(parked.map((p) => [p.id, p.amount]));
    expect(await suspenseOf(o)).toBe(0n);
    const [dispersed] = await db.execute<{ total: bigint }>(sql`select sum(amount) as total from dispersal_entries where obligation_id = ${o.obligationId}::uuid`);
    expect(BigInt(dispersed!.total)).toBe(100_000n);
    expect(await reconcile()).toMatchObject({ status: "clean", defectCount: 0 });
  });

  it("the scan's backstop tops up an escalation whose cash arrived from another system, once", async () => {
    const o = await givenSettledObligation(database, { lenders: [0], amount: 50_000n, cashReceived: [40_000n] });
    await scanAndWait(ctx, { timeoutMs: 20_000 });
    expect(await healing(o.obligationId)).toMatchObject({ status: "escalated" });
    await postCashReceivedBySql(database, o.obligationId, 10_000n);

    const before = await reconcile();
    expect(before.findings.escalatedSuspenseMismatch?.sample).toContain(o.obligationId);

    expect(await scanForOrphans(ctx)).toMatchObject({ suspenseToppedUp: 1, obligationErrors: 0 });
    expect(await scanForOrphans(ctx)).toMatchObject({ suspenseToppedUp: 0, obligationErrors: 0 });
    expect(await suspenseOf(o)).toBe(50_000n);
    expect((await journal(o.obligationId, "SUSPENSE_ESCALATED")).map((p) => [p.amount, p.idempotency_key])).toEqual([
      [40_000n, `suspense-escalation:${o.obligationId}`],
      [10_000n, `suspense-escalation:${o.obligationId}:2`],
    ]);
    expect(await audits(o.obligationId, "dispersal.suspense_topped_up")).toBe(1);
    expect(await healing(o.obligationId)).toMatchObject({ status: "escalated" });
    expect((await reconcile()).findings.escalatedSuspenseMismatch?.sample).not.toContain(o.obligationId);
  });

  it("restates SUSPENSE when the first cash received is less than the amount parked (settled without cash postings)", async () => {
    const o = await givenSettledObligation(database, { lenders: [0], amount: 30_000n, cashReceived: [] });
    await scanAndWait(ctx, { timeoutMs: 20_000 });
    expect(await suspenseOf(o)).toBe(30_000n);
    await postCashReceivedBySql(database, o.obligationId, 25_000n);
    expect(await scanForOrphans(ctx)).toMatchObject({ suspenseToppedUp: 1, obligationErrors: 0 });
    expect(await suspenseOf(o)).toBe(25_000n);
    expect((await journal(o.obligationId, "SUSPENSE_ESCALATED")).map((p) => p.amount)).toEqual([30_000n, 25_000n]);
    expect((await journal(o.obligationId, "REVERSAL")).map((p) => p.amount)).toEqual([30_000n]);
    expect((await reconcile()).findings.escalatedSuspenseMismatch?.sample).not.toContain(o.obligationId);
  });
});

describe("one escalation of a round", () => {
  /** An unfixable obligation whose round used its 3 attempts, as the processor leaves it. */
  async function exhaustedRound(amount: bigint) {
    const o = await givenSettledObligation(database, { lenders: [0], amount });
    await db.execute(sql`
      insert into dispersal_healing_attempts (obligation_id, attempt_count, status, last_error, last_attempt_at)
      values (${o.obligationId}::uuid, 3, 'retrying', 'no active positions', now())`);
    return o;
  }

  it("is one posting and one audit row when five callers escalate at once, all queued on the row lock", async () => {
    const o = await exhaustedRound(7_000n);
    const holder = await database.sql.reserve();
    try {
      await holder`begin`;
      await holder`select 1 from obligations where id = ${o.obligationId}::uuid for update`;
      const callers = Array.from({ length: 5 }, (_, i) =>
        db.transaction((tx) => escalateToSuspense(tx, o.obligationId, { actor: `caller-${i}`, reason: "final failure", attemptCount: 3 })),
      );
      await waitFor(
        async () => {
          // Row-lock waiters queue behind each other (only the first is blocked by the holder itself).
          const [row] = await db.execute<{ n: bigint }>(sql`
            select count(*) as n from pg_stat_activity
             where datname = current_database() and wait_event_type = 'Lock' and query like '%for update%'`);
          return Number(row!.n) >= 5;
        },
        { timeoutMs: 10_000, what: "five escalations waiting on the lock", everyMs: 50 },
      );
      await holder`commit`;
      const outcomes = await Promise.all(callers);
      expect(outcomes.sort()).toEqual(["already-escalated", "already-escalated", "already-escalated", "already-escalated", "escalated"]);
    } finally {
      holder.release();
    }
    expect((await journal(o.obligationId, "SUSPENSE_ESCALATED")).map((p) => p.amount)).toEqual([7_000n]);
    expect(await audits(o.obligationId, "dispersal.self_healing_escalated")).toBe(1);
    expect(await healing(o.obligationId)).toMatchObject({ status: "escalated", attempt_count: 3 });
  });

  it("a late escalation of an earlier round leaves a requeued obligation requeued", async () => {
    const o = await exhaustedRound(8_000n);
    expect(await db.transaction((tx) => escalateToSuspense(tx, o.obligationId, { actor: "handler", reason: "final failure", attemptCount: 3 }))).toBe("escalated");
    await givenRequeued(database, o.obligationId);
    // The first round's final failure, handled again late (another process, a redelivered event).
    expect(await db.transaction((tx) => escalateToSuspense(tx, o.obligationId, { actor: "late-handler", reason: "final failure", attemptCount: 3 }))).toBe("stale-round");
    expect(await healing(o.obligationId)).toMatchObject({ status: "requeued", attempt_count: 0 });
    expect(await audits(o.obligationId, "dispersal.self_healing_escalated")).toBe(1);
    expect(await suspenseOf(o)).toBe(8_000n);
  });
});
