import { describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { escalateToSuspense } from "../../src/db/healing.js";
import { seedObligations } from "../../src/db/seed.js";
import { DispersalBatches } from "../../src/jobs/dispersalBatches.js";
import { requestRequeue } from "../../src/jobs/requeue.js";
import { enqueueRetriggers, retriggerBacklog } from "../../src/queues/retriggerJobs.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { testPipeline, type TestPipeline } from "../helpers/pipeline.js";
import { waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";

const database = await testDb({ max: 10 });
const { db } = database;

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;

async function obligationsOf(tag: string): Promise<string[]> {
  const rows = await db.execute<{ id: string }>(sql`
    select o.id from obligations o join mortgages m on m.id = o.mortgage_id
     where m.reference like ${`SEED-${tag}-%`} and o.status = 'settled' order by o.id`);
  return rows.map((r) => r.id);
}

/**
 * Everything the healing wrote for one seeded data set, with ids made comparable across two data
 * sets of the same seed: a seeded id loses its data set tag, a dispersal entry is named by its
 * obligation and lender, a journal entry by its idempotency key.
 */
async function ledgerOf(tag: string) {
  const seeded = (id: string | null | undefined) => (id && id.startsWith(tag) ? `S${id.slice(8)}` : (id ?? null));
  const entries = await db.execute<Record<string, string>>(sql`
    select d.id, d.obligation_id, d.lender_id, d.amount::text, d.ownership_units::text, d.total_units::text, d.dispersal_date::text, d.status
      from dispersal_entries d join mortgages m on m.id = d.mortgage_id where m.reference like ${`SEED-${tag}-%`}`);
  const entryName = new Map(entries.map((e) => [e.id!, `entry(${seeded(e.obligation_id!)},${seeded(e.lender_id!)})`]));
  const journal = await db.execute<Record<string, string | null>>(sql`
    select j.id, j.entry_type, j.effective_date::text, j.amount::text, j.idempotency_key, j.obligation_id, j.lender_id, j.mortgage_id,
           j.reverses_entry_id, j.reason, j.actor, j.channel,
           concat_ws('/', d.family, d.subaccount, d.mortgage_id, d.obligation_id, d.lender_id) as debit,
           concat_ws('/', c.family, c.subaccount, c.mortgage_id, c.obligation_id, c.lender_id) as credit
      from cash_journal_entries j
      join cash_accounts d on d.id = j.debit_account_id join cash_accounts c on c.id = j.credit_account_id
      join mortgages m on m.id = j.mortgage_id
     where m.reference like ${`SEED-${tag}-%`} and j.entry_type not in ('OBLIGATION_ACCRUED', 'CASH_RECEIVED')`);
  const rename = (text: string | null | undefined) => text?.replace(UUID, (id) => entryName.get(id) ?? seeded(id)!) ?? null;
  const journalName = new Map(journal.map((j) => [j.id!, `journal(${rename(j.idempotency_key)})`]));
  const renameAll = (text: string | null | undefined) => rename(text?.replace(UUID, (id) => journalName.get(id) ?? id) ?? null);
  const healing = await db.execute<Record<string, string>>(sql`
    select h.obligation_id, h.status, h.attempt_count::text from dispersal_healing_attempts h
      join obligations o on o.id = h.obligation_id join mortgages m on m.id = o.mortgage_id where m.reference like ${`SEED-${tag}-%`}`);
  const audit = await db.execute<Record<string, string>>(sql`
    select a.action, a.actor, a.resource_id from audit_log a
      join obligations o on o.id::text = a.resource_id join mortgages m on m.id = o.mortgage_id where m.reference like ${`SEED-${tag}-%`}`);
  const accounts = await db.execute<Record<string, string>>(sql`
    select concat_ws('/', a.family, a.subaccount, a.mortgage_id, a.obligation_id, a.lender_id) as account,
           a.cumulative_debits::text, a.cumulative_credits::text
      from cash_accounts a join mortgages m on m.id = a.mortgage_id where m.reference like ${`SEED-${tag}-%`}`);
  const sorted = (rows: string[]) => rows.sort();
  return {
    entries: sorted(entries.map((e) => [entryName.get(e.id!), e.amount, e.ownership_units, e.total_units, e.dispersal_date, e.status].join(" "))),
    postings: sorted(
      journal.map((j) =>
        [j.entry_type, j.effective_date, j.amount, rename(j.debit), rename(j.credit), renameAll(j.idempotency_key), seeded(j.obligation_id), seeded(j.lender_id), seeded(j.mortgage_id), renameAll(j.reverses_entry_id), renameAll(j.reason), j.actor, j.channel].join(" "),
      ),
    ),
    healing: sorted(healing.map((h) => [seeded(h.obligation_id!), h.status, h.attempt_count].join(" "))),
    audit: sorted(audit.map((a) => [a.action, a.actor, seeded(a.resource_id!)].join(" "))),
    accounts: sorted(accounts.map((a) => [rename(a.account!), a.cumulative_debits, a.cumulative_credits].join(" "))),
  };
}

async function healAll(pipeline: TestPipeline, obligationIds: string[]): Promise<void> {
  const workers = pipeline.startWorkers({ concurrency: 32 });
  try {
    const queued = await enqueueRetriggers(pipeline.ctx.queues, pipeline.ctx.settings, obligationIds);
    expect(queued.deferred).toEqual([]);
    await waitFor(async () => (await retriggerBacklog(pipeline.ctx.queues)) === 0, { timeoutMs: 60_000, what: "every retrigger job ended" });
    await workers.settled();
  } finally {
    await workers.close();
  }
}

describe("batched healing", () => {
  it("writes the same entries, postings, healing rows and audit as one transaction per obligation, cent for cent", async () => {
    // Two data sets of one seed: the same amounts, fees, lenders and units under different ids.
    const shape = { mortgages: 40, obligations: 400, settledShare: 1, orphanShare: 1, unfixableOrphanShare: 0.1, lendersPerMortgage: { min: 1, max: 12 }, seed: 1234, withHistoricalDispersals: false };
    const alone = await seedObligations(database, shape);
    const batched = await seedObligations(database, shape);
    const aloneIds = await obligationsOf(alone.tag);
    const batchedIds = await obligationsOf(batched.tag);
    expect(aloneIds).toHaveLength(400);
    expect(batched.unfixableOrphans).toBeGreaterThan(0);
    const pipelines = [testPipeline(database, { HEALING_BATCH_SIZE: "1" }), testPipeline(database, { HEALING_BATCH_SIZE: "50" })] as const;
    // Some requeued escalations (their resolution reverses the suspense, in the requester's name).
    for (const [i, ids] of [aloneIds, batchedIds].entries()) {
      for (const obligationId of ids.slice(0, 20)) {
        await db.transaction((tx) => escalateToSuspense(tx, obligationId, { actor: "test", reason: "earlier round failed", attemptCount: 3 }));
        const requeue = await requestRequeue(pipelines[i]!.ctx, obligationId, { actor: "alice", channel: "cli", reason: "positions fixed upstream" });
        expect(requeue.status).toBe("requeued");
      }
    }

    await healAll(pipelines[0], aloneIds);
    await healAll(pipelines[1], batchedIds);

    const [left] = await db.execute<{ n: number }>(sql`select count(*)::int as n from obligations where status = 'settled' and not dispersed
      and id not in (select obligation_id from dispersal_healing_attempts where status = 'escalated')`);
    expect(left!.n).toBe(0);
    const expected = await ledgerOf(alone.tag);
    const actual = await ledgerOf(batched.tag);
    expect(expected.postings.filter((p) => p.startsWith("REVERSAL")).length).toBeGreaterThan(0);
    expect(expected.postings.filter((p) => p.startsWith("SUSPENSE_ESCALATED")).length).toBeGreaterThan(20);
    expect(expected.postings.filter((p) => p.startsWith("SERVICING_FEE_RECOGNIZED")).length).toBeGreaterThan(0);
    expect(actual.entries).toEqual(expected.entries);
    expect(actual.postings).toEqual(expected.postings);
    expect(actual.accounts).toEqual(expected.accounts);
    expect(actual.healing).toEqual(expected.healing);
    expect(actual.audit).toEqual(expected.audit);
    // …and the two paths did differ: one transaction per obligation against a few batches.
    const transactions = async (tag: string) => {
      const [row] = await db.execute<{ transactions: number; obligations: number }>(sql`
        select count(distinct d.xmin::text)::int as transactions, count(distinct d.obligation_id)::int as obligations
          from dispersal_entries d join mortgages m on m.id = d.mortgage_id where m.reference like ${`SEED-${tag}-%`}`);
      return row!;
    };
    const unbatched = await transactions(alone.tag);
    expect(unbatched.transactions).toBe(unbatched.obligations);
    const grouped = await transactions(batched.tag);
    expect(grouped.transactions).toBeLessThan(grouped.obligations / 4);
  }, 120_000);

  it("commits the batch in one transaction and leaves out, with their own errors, what cannot be dispersed", async () => {
    const pipeline = testPipeline(database);
    const batches = new DispersalBatches(pipeline.ctx, { maxSize: 20, lingerMs: 50, maxWaitMs: 200 });
    const good = await Promise.all(Array.from({ length: 8 }, () => givenSettledObligation(database, { lenders: [7000, 3000] })));
    const noPositions = await givenSettledObligation(database, { lenders: [0, 0] });
    const notSettled = await givenSettledObligation(database, { status: "due" });
    const unknown = "0badc0de-0000-4000-8000-000000000000";
    const requests = [...good.map((g) => g.obligationId), noPositions.obligationId, notSettled.obligationId, unknown];
    const outcomes = await Promise.all(requests.map((obligationId) => batches.disperse({ obligationId, attempt: 1 })));

    expect(outcomes.slice(0, 8).map((o) => o.kind)).toEqual(Array(8).fill("dispersed"));
    const errorCode = (o: (typeof outcomes)[number]) => (o.kind === "failed" ? (o.error as { code: string }).code : o.kind);
    expect(outcomes.slice(8).map(errorCode)).toEqual(["NO_ACTIVE_POSITIONS", "OBLIGATION_NOT_SETTLED", "OBLIGATION_NOT_FOUND"]);
    const [one] = await db.execute<{ transactions: number; entries: number }>(sql`
      select count(distinct xmin::text)::int as transactions, count(*)::int as entries from dispersal_entries
       where obligation_id in (select (jsonb_array_elements_text(${JSON.stringify(good.map((g) => g.obligationId))}::jsonb))::uuid)`);
    expect(one).toEqual({ transactions: 1, entries: 16 });
    const [untouched] = await db.execute<{ n: number }>(sql`
      select count(*)::int as n from cash_journal_entries
       where obligation_id in (${noPositions.obligationId}::uuid, ${notSettled.obligationId}::uuid) and entry_type not in ('OBLIGATION_ACCRUED', 'CASH_RECEIVED')`);
    expect(untouched!.n).toBe(0);
  });

  it("an obligation that fails alone uses an attempt while its neighbours are dispersed; a batch that cannot commit runs each job alone", async () => {
    const pipeline = testPipeline(database, { HEALING_BATCH_SIZE: "50", HEALING_BACKOFF_MS: "60000" });
    const good = await Promise.all(Array.from({ length: 10 }, () => givenSettledObligation(database, { lenders: [5000, 5000] })));
    const noPositions = await givenSettledObligation(database, { lenders: [0] });
    // Another posting already under the fee's key (another type and amount): the batch's postEntries throws, the batch rolls back.
    const conflicting = await givenSettledObligation(database, { lenders: [10_000], servicingFeeBps: 100, type: "regular_interest" });
    await db.execute(sql`
      insert into cash_journal_entries (entry_type, effective_date, amount, debit_account_id, credit_account_id, idempotency_key, mortgage_id, obligation_id)
      select 'OBLIGATION_ACCRUED', current_date, 1, d.id, c.id, ${`cash-ledger:servicing-fee-recognized:${conflicting.obligationId}:1`}, ${conflicting.mortgageId}::uuid, ${conflicting.obligationId}::uuid
        from (select id from cash_accounts where family = 'TRUST_CASH' and mortgage_id = ${conflicting.mortgageId}::uuid) d,
             (select id from cash_accounts where family = 'BORROWER_RECEIVABLE' and obligation_id = ${conflicting.obligationId}::uuid) c`);
    await db.execute(sql`update cash_accounts a set cumulative_debits = cumulative_debits + 1 where family = 'TRUST_CASH' and mortgage_id = ${conflicting.mortgageId}::uuid`);
    await db.execute(sql`update cash_accounts a set cumulative_credits = cumulative_credits + 1 where family = 'BORROWER_RECEIVABLE' and obligation_id = ${conflicting.obligationId}::uuid`);

    const workers = pipeline.startWorkers({ concurrency: 16 });
    try {
      await enqueueRetriggers(pipeline.ctx.queues, pipeline.ctx.settings, [...good.map((g) => g.obligationId), noPositions.obligationId, conflicting.obligationId]);
      const rows = async () =>
        db.execute<{ obligation_id: string; status: string; attempt_count: number }>(sql`
          select obligation_id::text, status, attempt_count from dispersal_healing_attempts
           where obligation_id in (select (jsonb_array_elements_text(${JSON.stringify([...good.map((g) => g.obligationId), noPositions.obligationId, conflicting.obligationId])}::jsonb))::uuid)`);
      await waitFor(async () => (await rows()).length === 11, { timeoutMs: 30_000, what: "a healing row for each recoverable obligation" });
      const byId = new Map((await rows()).map((r) => [r.obligation_id, r]));
      for (const g of good) expect(byId.get(g.obligationId)).toMatchObject({ status: "resolved", attempt_count: 1 });
      expect(byId.get(noPositions.obligationId)).toMatchObject({ status: "retrying", attempt_count: 1 });
      // Unrecoverable alone, as unbatched: failed without an attempt, without retry, its neighbours unharmed.
      const failed = await waitFor(
        async () => (await pipeline.ctx.queues.retrigger.getFailed()).find((j) => j.data.obligationId === conflicting.obligationId),
        { timeoutMs: 30_000, what: "the conflicting job failed" },
      );
      expect(failed.failedReason).toMatch(/IDEMPOTENCY_CONFLICT/);
      expect(byId.has(conflicting.obligationId)).toBe(false);
    } finally {
      await workers.close();
    }
  });
});
