// The daily reconciliation checks what changed since the previous completed run; the weekly sweep
// checks everything (issue "Every cent ties out", docs/ledger.md "Incremental and full runs").
// Defects are made as other systems make them (SQL on the contract tables); the scope is shown to be
// real (few obligations checked among many); a change committed while a run is in progress and a
// failed run's changes are found by the next run.
import { describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { disperseObligations } from "../../src/db/dispersals.js";
import { runReconciliation, type ReconciliationCheck, type ReconciliationReport, type ReconciliationScope, type RejectedRetrigger } from "../../src/db/reconciliation.js";
import { reconcileProcessor } from "../../src/jobs/reconcile.js";
import { JOB, SCHEDULER } from "../../src/queues/names.js";
import { upsertSchedulers } from "../../src/queues/schedulers.js";
import { givenSettledObligation, type GivenObligation } from "../helpers/factories.js";
import { postCashReceivedBySql } from "../helpers/otherSystems.js";
import { testPipeline } from "../helpers/pipeline.js";
import { testDb } from "../helpers/testDb.js";

const database = await testDb({ max: 6 });
const pipeline = testPipeline(database);
const { ctx } = pipeline;
const db = database.db;

function run(scope: ReconciliationScope, rejectedRetriggers: RejectedRetrigger[] = []): Promise<ReconciliationReport> {
  return runReconciliation(db, { orphanDeadlineMs: 3_600_000, scope, rejectedRetriggers });
}

/** The checks of a run that name the id. */
function named(report: ReconciliationReport, id: string): ReconciliationCheck[] {
  return (Object.entries(report.findings) as Array<[ReconciliationCheck, { sample?: string[] }]>)
    .filter(([, finding]) => typeof finding === "object" && finding.sample?.includes(id))
    .map(([check]) => check);
}

/** Settled obligations, dispersed (entries and postings), as the healer leaves them. */
async function dispersed(count: number, options: GivenObligation = {}): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push((await givenSettledObligation(database, { lenders: [6000, 4000], servicingFeeBps: 0, ...options })).obligationId);
  await db.transaction((tx) => disperseObligations(tx, ids));
  return ids;
}

/** A copy of one of its LENDER_PAYABLE_CREATED postings (a new key): the lender owed twice, the entries unchanged. */
function doublePayableSql(obligationId: string) {
  return sql`
    insert into cash_journal_entries (entry_type, effective_date, amount, debit_account_id, credit_account_id, idempotency_key,
                                      mortgage_id, obligation_id, lender_id, actor, channel)
    select entry_type, effective_date, amount, debit_account_id, credit_account_id, idempotency_key || ':again',
           mortgage_id, obligation_id, lender_id, 'payouts-core', 'sql'
      from cash_journal_entries where obligation_id = ${obligationId}::uuid and entry_type = 'LENDER_PAYABLE_CREATED'
     order by sequence limit 1`;
}

const obligationCount = async () => Number((await db.execute<{ n: bigint }>(sql`select count(*) as n from obligations`))[0]!.n);
const pendingChanges = async (obligationId: string) =>
  Number((await db.execute<{ n: bigint }>(sql`select count(*) as n from ledger_changes where obligation_id = ${obligationId}::uuid`))[0]!.n);

describe("scope", () => {
  it("the first incremental run has no completed run to start from: it is full", async () => {
    await dispersed(30);
    const first = await run("incremental");
    expect(first).toMatchObject({ scope: "full", fromMark: null, obligationsChecked: await obligationCount(), status: "clean" });
    expect(BigInt(first.journalMark!)).toBeGreaterThan(0n);
    const second = await run("incremental");
    // Nothing changed: nothing to check, and the marks chain.
    expect(second).toMatchObject({ scope: "incremental", fromMark: first.journalMark, journalMark: first.journalMark, obligationsChecked: 0, status: "clean" });
  });

  it("defects made after the last run are found by the next incremental run, which checks only what they touched", async () => {
    const [doubled, edited] = await dispersed(2);
    const [restated] = await dispersed(1, { cashReceived: [] }); // settled by another system without cash: its amount is its net cash
    const baseline = await run("incremental");
    expect(baseline).toMatchObject({ scope: "incremental", status: "clean" });

    await db.execute(doublePayableSql(doubled!));
    await db.execute(sql`update dispersal_entries set amount = amount + 100
                          where id = (select id from dispersal_entries where obligation_id = ${edited!}::uuid order by lender_id limit 1)`);
    await db.execute(sql`update obligations set amount = amount + 5000 where id = ${restated!}::uuid`);

    const next = await run("incremental");
    expect(next).toMatchObject({ scope: "incremental", fromMark: baseline.journalMark, status: "defects" });
    expect(BigInt(next.journalMark!)).toBe(BigInt(baseline.journalMark!) + 1n); // the doubled posting
    expect(named(next, doubled!)).toEqual(expect.arrayContaining(["payablesMismatch", "overAllocated"]));
    expect(named(next, edited!)).toEqual(["payablesMismatch"]);
    expect(named(next, restated!)).toEqual(["conservationDefects"]);
    expect(next.findings.accountTotalsMismatch?.count).toBeGreaterThan(0); // the copy moved no account total
    // Three obligations touched among 33: the scope is real.
    expect(next.obligationsChecked).toBe(3);
    expect(await obligationCount()).toBe(33);
  });

  it("an old defect nothing has touched since is not re-reported by the incremental run, is found by the full sweep, and then stays reported", async () => {
    const [old] = await dispersed(1);
    await run("incremental");
    // Written with triggers off (a bulk load as session_replication_role = replica): no change recorded, no journal row.
    await db.transaction(async (tx) => {
      await tx.execute(sql`set local session_replication_role = replica`);
      await tx.execute(sql`update dispersal_entries set amount = amount - 1
                            where id = (select id from dispersal_entries where obligation_id = ${old!}::uuid order by lender_id limit 1)`);
    });
    const incremental = await run("incremental");
    expect(named(incremental, old!)).toEqual([]);
    expect(incremental.obligationsChecked).toBeLessThan(10); // what the previous run named, nothing else
    const total = await obligationCount();

    const full = await run("full");
    expect(full).toMatchObject({ scope: "full", fromMark: null, obligationsChecked: total });
    expect(named(full, old!)).toEqual(["payablesMismatch"]);

    // Named by a run, it is checked again by the next ones until it is fixed.
    const after = await run("incremental");
    expect(after.scope).toBe("incremental");
    expect(named(after, old!)).toEqual(["payablesMismatch"]);
    expect(after.obligationsChecked).toBeLessThan(10);
  });
});

describe("what the change log records", () => {
  it("a position changed puts every obligation of its mortgage in scope; an update that changes nothing records nothing", async () => {
    const first = await givenSettledObligation(database, { lenders: [6000, 4000], servicingFeeBps: 0 });
    const second = await givenSettledObligation(database, { mortgageId: first.mortgageId });
    await db.transaction((tx) => disperseObligations(tx, [first.obligationId, second.obligationId]));
    const before = await run("incremental");
    await db.execute(sql`update obligations set status = status where mortgage_id = ${first.mortgageId}::uuid`);
    expect(await pendingChanges(first.obligationId)).toBe(0);
    await db.execute(sql`update mortgage_positions set units = units + 1 where mortgage_id = ${first.mortgageId}::uuid`);
    const after = await run("incremental");
    // The two of the mortgage, and the obligations the previous run named (the defects of the tests above).
    const carried = new Set(
      (["conservationDefects", "payablesMismatch", "feeMismatch", "overAllocated", "settledWithoutCash", "resolvedSuspenseNotCleared"] as const)
        .flatMap((check) => before.findings[check]?.sample ?? []),
    );
    expect(carried.size).toBeGreaterThan(0);
    expect(after.obligationsChecked).toBe(new Set([first.obligationId, second.obligationId, ...carried]).size);
  });
});

describe("concurrency", () => {
  it("an entry edit committed while a run is in progress is found by that run or the next", async () => {
    const [late] = await dispersed(1);
    await run("incremental");
    const other = await database.sql.reserve();
    try {
      await other`begin`;
      await other`update dispersal_entries set amount = amount + 7
                   where id = (select id from dispersal_entries where obligation_id = ${late!}::uuid order by lender_id limit 1)`;
      const during = await run("incremental"); // does not wait for the open transaction
      await other`commit`;
      const next = await run("incremental");
      expect([...named(during, late!), ...named(next, late!)]).toContain("payablesMismatch");
      expect(named(next, late!)).toEqual(["payablesMismatch"]);
    } finally {
      other.release();
    }
  });

  it("a posting whose sequence is below a run's mark but committed after the run read it is found by the next run", async () => {
    const [late, other] = await dispersed(2);
    await run("incremental");
    const writer = await database.sql.reserve();
    try {
      await writer`begin`;
      // Allocates its sequence now, commits later.
      const [inserted] = await writer<{ sequence: string }[]>`
        insert into cash_journal_entries (entry_type, effective_date, amount, debit_account_id, credit_account_id, idempotency_key,
                                          mortgage_id, obligation_id, lender_id, actor, channel)
        select entry_type, effective_date, amount, debit_account_id, credit_account_id, idempotency_key || ':late',
               mortgage_id, obligation_id, lender_id, 'payouts-core', 'sql'
          from cash_journal_entries where obligation_id = ${late!}::uuid and entry_type = 'LENDER_PAYABLE_CREATED'
         order by sequence limit 1
        returning sequence::text`;
      const lateSequence = inserted!.sequence;
      // A later posting commits first: the run's mark passes the open one's sequence.
      await postCashReceivedBySql(database, other!, 1n);
      const during = await run("incremental");
      expect(BigInt(during.journalMark!)).toBeGreaterThan(BigInt(lateSequence));
      expect(named(during, late!)).toEqual([]);
      await writer`commit`;
      const next = await run("incremental");
      expect(BigInt(next.fromMark!)).toBeGreaterThan(BigInt(lateSequence)); // the sequence alone would miss it
      expect(named(next, late!)).toEqual(expect.arrayContaining(["payablesMismatch", "overAllocated"]));
    } finally {
      writer.release();
    }
  });

  it("a failed run loses no change: the next run finds it", async () => {
    const [changed] = await dispersed(1);
    await run("incremental");
    await db.execute(sql`delete from dispersal_entries where obligation_id = ${changed!}::uuid
                          and id = (select id from dispersal_entries where obligation_id = ${changed!}::uuid order by lender_id limit 1)`);
    expect(await pendingChanges(changed!)).toBeGreaterThan(0);
    // A check fails inside the run (a malformed id in the rejected jobs it is given).
    await expect(run("incremental", [{ obligationId: "not-a-uuid", rejectedAt: Date.now() }])).rejects.toThrow(/uuid/);
    const [failed] = await db.execute<{ status: string; journal_mark: string | null }>(sql`
      select status, journal_mark::text from reconciliation_runs order by started_at desc limit 1`);
    expect(failed).toEqual({ status: "failed", journal_mark: null });
    expect(await pendingChanges(changed!)).toBeGreaterThan(0);
    const next = await run("incremental");
    expect(named(next, changed!)).toEqual(["payablesMismatch"]);
    expect(await pendingChanges(changed!)).toBe(0);
  });
});

describe("schedules", () => {
  it("the weekly sweep is a second repeatable job on the same processor, with scope full", async () => {
    await upsertSchedulers(ctx.queues, ctx.settings);
    expect(await ctx.queues.reconciliation.getJobScheduler(SCHEDULER.reconciliation)).toMatchObject({ pattern: "0 7 * * *", tz: "UTC" });
    expect(await ctx.queues.reconciliation.getJobScheduler(SCHEDULER.fullReconciliation)).toMatchObject({ pattern: "30 7 * * 0", tz: "UTC" });
    const processor = reconcileProcessor(ctx);
    expect(await processor({ data: { requestedBy: "scheduler", scope: "full" } })).toMatchObject({ scope: "full", obligationsChecked: await obligationCount() });
    expect(await processor({ data: { requestedBy: "scheduler", scope: "incremental" } })).toMatchObject({ scope: "incremental" });
    expect(await processor({ data: { requestedBy: "scheduler" } })).toMatchObject({ scope: "incremental" });
    expect(JOB.reconcileFull).not.toBe(JOB.reconcile);
  });
});
