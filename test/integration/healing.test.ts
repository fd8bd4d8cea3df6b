import { beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { findAccount } from "../../src/db/ledger.js";
import { scanAndWait } from "../../src/jobs/scanAndWait.js";
import { scanForOrphans } from "../../src/jobs/scan.js";
import { requestRequeue } from "../../src/jobs/requeue.js";
import { JOB } from "../../src/queues/names.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { testDb } from "../helpers/testDb.js";
import { testPipeline } from "../helpers/pipeline.js";
import { waitFor } from "../helpers/processes.js";

const database = await testDb();
const pipeline = testPipeline(database);
const { ctx } = pipeline;
const db = database.db;

async function healingRow(obligationId: string) {
  const [row] = await db.execute<{ status: string; attempt_count: number; last_error: string | null }>(sql`
    select status, attempt_count, last_error from dispersal_healing_attempts where obligation_id = ${obligationId}::uuid`);
  return row;
}

async function postings(obligationId: string, entryType: string) {
  return db.execute<{ id: string; amount: bigint; actor: string | null }>(sql`
    select id, amount, actor from cash_journal_entries where obligation_id = ${obligationId}::uuid and entry_type = ${entryType}`);
}

beforeAll(() => {
  pipeline.startWorkers();
});

describe("the healing pipeline", () => {
  it("finds an orphan and disperses it with exact per-lender amounts, leaving others alone", async () => {
    const orphan = await givenSettledObligation(database, { lenders: [5000, 3000, 2000], amount: 123_457n, type: "principal_repayment" });
    const notSettled = await givenSettledObligation(database, { status: "due" });
    const summary = await scanAndWait(ctx, { timeoutMs: 20_000 });
    expect(summary).toMatchObject({ found: 1, enqueued: 1, dispersed: 1, escalated: 0, unfinished: 0 });
    const entries = await db.execute<{ lender_id: string; amount: bigint }>(sql`
      select lender_id::text, amount from dispersal_entries where obligation_id = ${orphan.obligationId}::uuid`);
    const byLender = new Map(entries.map((e) => [e.lender_id, e.amount]));
    expect(orphan.lenderIds.map((id) => byLender.get(id))).toEqual([61_729n, 37_037n, 24_691n]);
    expect(await healingRow(notSettled.obligationId)).toBeUndefined();
    expect((await scanForOrphans(ctx)).found).toBe(0);
  });

  it("tries an unfixable orphan exactly 3 times, then escalates it once for the settled amount", async () => {
    const unfixable = await givenSettledObligation(database, { lenders: [0, 0], amount: 80_000n, cashReceived: [50_000n, 25_000n] });
    const summary = await scanAndWait(ctx, { timeoutMs: 20_000 });
    expect(summary).toMatchObject({ found: 1, dispersed: 0, escalated: 1 });
    expect(await healingRow(unfixable.obligationId)).toMatchObject({ status: "escalated", attempt_count: 3 });
    expect((await postings(unfixable.obligationId, "SUSPENSE_ESCALATED")).map((p) => p.amount)).toEqual([75_000n]);
    const suspense = await findAccount(db, { family: "SUSPENSE", mortgageId: unfixable.mortgageId, obligationId: unfixable.obligationId });
    expect(suspense?.balance).toBe(75_000n);

    const again = await scanAndWait(ctx, { timeoutMs: 5_000 });
    expect(again).toMatchObject({ found: 0, enqueued: 0 });
    expect(await postings(unfixable.obligationId, "SUSPENSE_ESCALATED")).toHaveLength(1);
    const [audit] = await db.execute<{ n: bigint }>(sql`select count(*) as n from audit_log where action = 'dispersal.self_healing_escalated' and resource_id = ${unfixable.obligationId}`);
    expect(audit!.n).toBe(1n);
  });

  it("clears SUSPENSE to 0 when a requeued escalation is finally dispersed", async () => {
    const given = await givenSettledObligation(database, { lenders: [0], amount: 10_000n });
    await scanAndWait(ctx, { timeoutMs: 20_000 });
    expect(await healingRow(given.obligationId)).toMatchObject({ status: "escalated" });
    await db.execute(sql`update mortgage_positions set units = 10000 where mortgage_id = ${given.mortgageId}::uuid`);

    const requeue = await requestRequeue(ctx, given.obligationId, { actor: "alice", channel: "cli", reason: "positions fixed" });
    if (requeue.status !== "requeued" || !requeue.jobId) throw new Error("expected the requeue to be carried out at once");
    const jobId = requeue.jobId;
    await waitFor(async () => (await ctx.queues.retrigger.getJob(jobId))?.isCompleted(), { timeoutMs: 20_000, what: "the requeued job" });

    expect(await healingRow(given.obligationId)).toMatchObject({ status: "resolved", attempt_count: 1 });
    expect(await postings(given.obligationId, "REVERSAL")).toHaveLength(1);
    const suspense = await findAccount(db, { family: "SUSPENSE", mortgageId: given.mortgageId, obligationId: given.obligationId });
    expect(suspense?.balance).toBe(0n);
    const actions = await db.execute<{ action: string; actor: string }>(sql`select action, actor from audit_log where resource_id = ${given.obligationId} order by created_at`);
    expect(actions.map((a) => a.action)).toEqual(["dispersal.self_healing_escalated", "dispersal.self_healing_requeued", "dispersal.self_healing_resolved"]);
    expect(actions[1]!.actor).toBe("alice");
    // The round's actor comes from its requeue request in Postgres, not from the job.
    expect(actions[2]!.actor).toBe("alice");
    const [reversal] = await postings(given.obligationId, "REVERSAL");
    expect(reversal).toMatchObject({ actor: "alice" });
  });

  it("fails a job with malformed data at once, without retry or escalation, and keeps working", async () => {
    const bad = await ctx.queues.retrigger.add(JOB.retrigger, { obligationId: "'; drop table obligations; --" } as never, { attempts: 3 });
    const good = await givenSettledObligation(database, { lenders: [1] });
    const summary = await scanAndWait(ctx, { timeoutMs: 20_000 });
    expect(summary.dispersed).toBe(1);
    let state = await bad.getState();
    for (let i = 0; i < 50 && state !== "failed"; i++) {
      await new Promise((r) => setTimeout(r, 100));
      state = await bad.getState();
    }
    const failed = (await ctx.queues.retrigger.getJob(bad.id!))!;
    expect(state).toBe("failed");
    expect(failed.attemptsMade).toBe(1);
    expect(failed.failedReason).toMatch(/malformed retrigger job data/);
    expect(await healingRow(good.obligationId)).toMatchObject({ status: "resolved" });
  });
});
