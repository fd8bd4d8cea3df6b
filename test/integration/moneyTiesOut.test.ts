// Every cent ties out whatever other systems do to the contract tables (issue "Every cent ties
// out"): each scenario is written as the other system writes it (plain SQL) or through our own
// intake, and asserted on the ledger to the cent.
import { beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { escalateToSuspense } from "../../src/db/healing.js";
import { runReconciliation, type ReconciliationCheck } from "../../src/db/reconciliation.js";
import { receivePayment, returnPayment } from "../../src/db/payments.js";
import { readMoneyAtRisk } from "../../src/db/moneyAtRisk.js";
import { scanAndWait } from "../../src/jobs/scanAndWait.js";
import { scanForOrphans } from "../../src/jobs/scan.js";
import { requestRequeue } from "../../src/jobs/requeue.js";
import { ObligationNotSettledError } from "../../src/domain/errors.js";
import { waitFor } from "../helpers/processes.js";
import { givenSettledObligation, type GivenObligationResult } from "../helpers/factories.js";
import { postCashReceivedBySql, postCashReversalBySql } from "../helpers/otherSystems.js";
import { testPipeline } from "../helpers/pipeline.js";
import { testDb } from "../helpers/testDb.js";

const database = await testDb({ max: 12 });
const pipeline = testPipeline(database);
const { ctx } = pipeline;
const db = database.db;

beforeAll(() => {
  pipeline.startWorkers();
});

const heal = () => scanAndWait(ctx, { timeoutMs: 30_000 });

/** The checks of a reconciliation run that name the obligation. */
async function findingsFor(obligationId: string): Promise<ReconciliationCheck[]> {
  const report = await runReconciliation(db, { orphanDeadlineMs: 3_600_000 });
  return (Object.entries(report.findings) as Array<[ReconciliationCheck, { sample?: string[] }]>)
    .filter(([, finding]) => typeof finding === "object" && finding.sample?.includes(obligationId))
    .map(([check]) => check);
}

/** What the journal says of one obligation, all as bigint cents. */
async function ledgerOf(obligationId: string) {
  const [row] = await db.execute<Record<string, string>>(sql`
    select obligation_net_cash(o.id)::text as net_cash, obligation_allocated(o.id)::text as allocated,
           obligation_suspense(o.id)::text as suspense, o.status, o.dispersed::text,
           (select coalesce(sum(d.amount), 0) from dispersal_entries d where d.obligation_id = o.id and d.status <> 'reversed')::text as entries,
           (select coalesce(sum(f.amount), 0) from servicing_fee_entries f where f.obligation_id = o.id and f.status <> 'reversed')::text as fees,
           (select count(*) from cash_journal_entries j where j.obligation_id = o.id and j.entry_type = 'LENDER_PAYABLE_CREATED')::text as payables,
           (select coalesce(sum(a.cumulative_credits - a.cumulative_debits), 0) from cash_accounts a
             where a.family = 'LENDER_PAYABLE' and a.mortgage_id = o.mortgage_id)::text as lenders_owed,
           (select coalesce(sum(a.cumulative_debits - a.cumulative_credits), 0) from cash_accounts a
             where a.family = 'TRUST_CASH' and a.mortgage_id = o.mortgage_id)::text as trust_cash
      from obligations o where o.id = ${obligationId}::uuid`);
  return {
    netCash: BigInt(row!.net_cash!),
    allocated: BigInt(row!.allocated!),
    suspense: BigInt(row!.suspense!),
    status: row!.status,
    dispersed: row!.dispersed === "true",
    projected: BigInt(row!.entries!) + BigInt(row!.fees!),
    payables: Number(row!.payables),
    lendersOwed: BigInt(row!.lenders_owed!),
    trustCash: BigInt(row!.trust_cash!),
  };
}

async function cashEntryOf(obligationId: string): Promise<string> {
  const [row] = await db.execute<{ id: string }>(sql`
    select id::text from cash_journal_entries where obligation_id = ${obligationId}::uuid and entry_type = 'CASH_RECEIVED' order by sequence limit 1`);
  return row!.id;
}

async function dispersed(options: Parameters<typeof givenSettledObligation>[1] = {}): Promise<GivenObligationResult> {
  const given = await givenSettledObligation(database, { lenders: [5000, 3000, 2000], servicingFeeBps: 0, ...options });
  await heal();
  expect(await ledgerOf(given.obligationId)).toMatchObject({ dispersed: true, allocated: given.amount, projected: given.amount });
  return given;
}

describe("payables never double when another system redoes a dispersal", () => {
  it("entries deleted: the healer restores them from the journal and posts nothing again", async () => {
    const given = await dispersed();
    await db.execute(sql`delete from dispersal_entries where obligation_id = ${given.obligationId}::uuid`);
    expect((await ledgerOf(given.obligationId)).dispersed).toBe(false);
    await heal();
    expect(await ledgerOf(given.obligationId)).toMatchObject({ dispersed: true, allocated: 100_000n, projected: 100_000n, payables: 3, lendersOwed: 100_000n, suspense: 0n });
    const [audit] = await db.execute<{ n: number }>(sql`
      select count(*)::int as n from audit_log where action = 'dispersal.entries_restored' and resource_id = ${given.obligationId}`);
    expect(audit!.n).toBe(1);
    expect(await findingsFor(given.obligationId)).toEqual([]);
  });

  it("only `dispersed` reset: a replay, no escalation and nothing parked", async () => {
    const given = await dispersed();
    await db.execute(sql`update obligations set dispersed = false where id = ${given.obligationId}::uuid`);
    await heal();
    expect(await ledgerOf(given.obligationId)).toMatchObject({ dispersed: true, allocated: 100_000n, payables: 3, lendersOwed: 100_000n, suspense: 0n });
    const [healing] = await db.execute<{ status: string }>(sql`select status from dispersal_healing_attempts where obligation_id = ${given.obligationId}::uuid`);
    expect(healing?.status).not.toBe("escalated");
  });
});

describe("reconciliation names every disagreement between the journal and the entries", () => {
  it("entries deleted (before the healer runs), amounts shifted between lenders, a lender changed, an extra payable posting", async () => {
    const deleted = await dispersed();
    const shifted = await dispersed();
    const relent = await dispersed();
    const extra = await dispersed();
    await db.execute(sql`delete from dispersal_entries where obligation_id = ${deleted.obligationId}::uuid`);
    await db.execute(sql`
      update dispersal_entries set amount = amount + case when lender_id = ${shifted.lenderIds[0]!}::uuid then 1000 else -500 end
       where obligation_id = ${shifted.obligationId}::uuid`);
    await db.execute(sql`
      update dispersal_entries set lender_id = ${extra.lenderIds[0]!}::uuid
       where obligation_id = ${relent.obligationId}::uuid and lender_id = ${relent.lenderIds[1]!}::uuid`);
    await db.execute(sql`
      insert into cash_journal_entries (entry_type, effective_date, amount, debit_account_id, credit_account_id, idempotency_key, mortgage_id, obligation_id, lender_id)
      select 'LENDER_PAYABLE_CREATED', current_date, 777, j.debit_account_id, j.credit_account_id, 'payouts-core:extra:' || j.id, j.mortgage_id, j.obligation_id, j.lender_id
        from cash_journal_entries j where j.obligation_id = ${extra.obligationId}::uuid and j.entry_type = 'LENDER_PAYABLE_CREATED' limit 1`);
    expect(await findingsFor(deleted.obligationId)).toContain("payablesMismatch");
    expect(await findingsFor(shifted.obligationId)).toContain("payablesMismatch");
    expect(await findingsFor(relent.obligationId)).toContain("payablesMismatch");
    expect(await findingsFor(extra.obligationId)).toEqual(expect.arrayContaining(["payablesMismatch", "overAllocated"]));
  });

  it("the healer never posts over edited entries: it escalates with nothing to park, and reconciliation keeps naming it", async () => {
    const shifted = await dispersed();
    await db.execute(sql`
      update dispersal_entries set amount = amount + case when lender_id = ${shifted.lenderIds[0]!}::uuid then 2000 else -1000 end
       where obligation_id = ${shifted.obligationId}::uuid`);
    expect((await ledgerOf(shifted.obligationId)).dispersed).toBe(false);
    await heal();
    const [healing] = await db.execute<{ status: string; last_error: string }>(sql`
      select status, last_error from dispersal_healing_attempts where obligation_id = ${shifted.obligationId}::uuid`);
    expect(healing).toMatchObject({ status: "escalated", last_error: expect.stringMatching(/disagree with the journal/) });
    expect(await ledgerOf(shifted.obligationId)).toMatchObject({ allocated: 100_000n, payables: 3, suspense: 0n, lendersOwed: 100_000n });
    expect(await findingsFor(shifted.obligationId)).toEqual(["payablesMismatch"]);
  });
});

describe("returned cash is never paid out", () => {
  it("a payment returned through the intake reverses the pending allocation; the borrower can pay again, dispersed as allocation 2", async () => {
    const given = await givenSettledObligation(database, { lenders: [6000, 4000], servicingFeeBps: 0, status: "due", cashReceived: [] });
    await receivePayment(db, { obligationId: given.obligationId, reference: `PAY-${given.obligationId}`, amount: 100_000n, actor: "feed", channel: "api" });
    await heal();
    expect(await ledgerOf(given.obligationId)).toMatchObject({ status: "settled", allocated: 100_000n, trustCash: 100_000n });

    const returned = await returnPayment(db, { obligationId: given.obligationId, reference: `PAY-${given.obligationId}`, reason: "cheque bounced: NSF", actor: "feed", channel: "api" });
    expect(returned).toMatchObject({ status: "due", outstanding: 100_000n, allocationsReversed: 2, reallocated: false, replayed: false });
    expect(await ledgerOf(given.obligationId)).toMatchObject({ status: "due", netCash: 0n, allocated: 0n, projected: 0n, lendersOwed: 0n, trustCash: 0n });
    const again = await returnPayment(db, { obligationId: given.obligationId, reference: `PAY-${given.obligationId}`, reason: "cheque bounced: NSF", actor: "feed", channel: "api" });
    expect(again).toMatchObject({ replayed: true, reversalEntryId: returned.reversalEntryId });

    // Before, the outstanding amount ignored the return: "exceeds the 0 cents outstanding".
    await receivePayment(db, { obligationId: given.obligationId, reference: `PAY2-${given.obligationId}`, amount: 100_000n, actor: "feed", channel: "api" });
    await heal();
    expect(await ledgerOf(given.obligationId)).toMatchObject({ status: "settled", netCash: 100_000n, allocated: 100_000n, projected: 100_000n, lendersOwed: 100_000n, trustCash: 100_000n });
    const [allocations] = await db.execute<{ n: number }>(sql`select count(distinct allocation)::int as n from dispersal_entries where obligation_id = ${given.obligationId}::uuid`);
    expect(allocations!.n).toBe(2);
  });

  it("a return another system writes by SQL makes the obligation an orphan; the healer takes the payables back", async () => {
    const given = await dispersed();
    await postCashReversalBySql(database, await cashEntryOf(given.obligationId));
    expect((await ledgerOf(given.obligationId)).dispersed).toBe(false);
    await heal();
    expect(await ledgerOf(given.obligationId)).toMatchObject({ netCash: 0n, allocated: 0n, projected: 0n, lendersOwed: 0n, trustCash: 0n });
  });

  it("a return of part of the cash (one of two payments) re-disperses the rest; entries paid out stay and the shortfall is named", async () => {
    const partial = await dispersed({ cashReceived: [60_000n, 40_000n] });
    const [second] = await db.execute<{ id: string }>(sql`
      select id::text from cash_journal_entries where obligation_id = ${partial.obligationId}::uuid and entry_type = 'CASH_RECEIVED' and amount = 40000`);
    await postCashReversalBySql(database, second!.id);
    await heal();
    expect(await ledgerOf(partial.obligationId)).toMatchObject({ netCash: 60_000n, allocated: 60_000n, projected: 60_000n, lendersOwed: 60_000n });

    const paid = await dispersed();
    const before = await readMoneyAtRisk(db);
    await db.execute(sql`update dispersal_entries set status = 'paid' where obligation_id = ${paid.obligationId}::uuid`);
    await postCashReversalBySql(database, await cashEntryOf(paid.obligationId));
    await heal();
    // Money at risk counts it as its own category, to the cent.
    const after = await readMoneyAtRisk(db);
    expect(after.shortfallCents - before.shortfallCents).toBe(100_000n);
    expect(after.shortfallObligations - before.shortfallObligations).toBe(1);
    // Paid entries are never reversed: the journal still allocates them, beyond the cash (a shortfall).
    expect(await ledgerOf(paid.obligationId)).toMatchObject({ netCash: 0n, allocated: 100_000n, projected: 100_000n });
    expect(await findingsFor(paid.obligationId)).toEqual(expect.arrayContaining(["overAllocated", "settledWithoutCash"]));
    expect(await findingsFor(partial.obligationId)).toEqual([]);
  });
});

describe("cash returned on a mortgage nobody holds units of: reversed first, the rest parked", () => {
  /** The healing row and the escalation's audited SUSPENSE posting of one obligation. */
  async function escalationOf(obligationId: string) {
    const [row] = await db.execute<{ status: string; last_error: string | null; parked: string | null }>(sql`
      select h.status, h.last_error,
             (select a.metadata->>'amount' from audit_log a where a.action = 'dispersal.self_healing_escalated' and a.resource_id = ${obligationId}
               order by a.created_at desc limit 1) as parked
        from dispersal_healing_attempts h where h.obligation_id = ${obligationId}::uuid`);
    return row;
  }
  const zeroPositions = (mortgageId: string) => db.execute(sql`update mortgage_positions set units = 0 where mortgage_id = ${mortgageId}::uuid`);
  const entryStatuses = async (obligationId: string) =>
    (await db.execute<{ status: string }>(sql`select status from dispersal_entries where obligation_id = ${obligationId}::uuid order by lender_id`)).map((r) => r.status);

  it("positions zeroed and part of the cash returned, both by SQL: the pending allocation is reversed, the 60,000 left is escalated into SUSPENSE", async () => {
    const given = await dispersed({ cashReceived: [60_000n, 40_000n] });
    await zeroPositions(given.mortgageId);
    const [second] = await db.execute<{ id: string }>(sql`
      select id::text from cash_journal_entries where obligation_id = ${given.obligationId}::uuid and entry_type = 'CASH_RECEIVED' and amount = 40000`);
    await postCashReversalBySql(database, second!.id); // the status stays theirs: settled
    await heal();
    expect(await escalationOf(given.obligationId)).toMatchObject({ status: "escalated", last_error: expect.stringMatching(/no active positions/), parked: "60000" });
    expect(await ledgerOf(given.obligationId)).toMatchObject({
      status: "settled", dispersed: false, netCash: 60_000n, allocated: 0n, projected: 0n, payables: 3, lendersOwed: 0n, suspense: 60_000n, trustCash: 60_000n,
    });
    expect(await entryStatuses(given.obligationId)).toEqual(["reversed", "reversed", "reversed"]);
    expect(await findingsFor(given.obligationId)).toEqual([]);

    // Positions back and requeued: allocation 2 of the 60,000, SUSPENSE released.
    await db.execute(sql`update mortgage_positions set units = 10000 where mortgage_id = ${given.mortgageId}::uuid`);
    await requestRequeue(ctx, given.obligationId, { actor: "alice", channel: "cli", reason: "positions restored by the servicer" });
    await waitFor(async () => (await escalationOf(given.obligationId))?.status === "resolved", { timeoutMs: 20_000, what: "the requeued round resolved" });
    expect(await ledgerOf(given.obligationId)).toMatchObject({ dispersed: true, netCash: 60_000n, allocated: 60_000n, projected: 60_000n, lendersOwed: 60_000n, suspense: 0n });
    expect(await findingsFor(given.obligationId)).toEqual([]);
  });

  it("through the intake: a return that leaves it settled reverses the allocation in the same transaction; the healer parks the rest", async () => {
    const given = await givenSettledObligation(database, { lenders: [5000, 3000, 2000], servicingFeeBps: 0, status: "due", cashReceived: [] });
    for (const [reference, amount] of [[`A-${given.obligationId}`, 60_000n], [`B-${given.obligationId}`, 40_000n]] as const) {
      await receivePayment(db, { obligationId: given.obligationId, reference, amount, actor: "feed", channel: "api" });
    }
    await heal();
    expect(await ledgerOf(given.obligationId)).toMatchObject({ status: "settled", dispersed: true, allocated: 100_000n });
    await zeroPositions(given.mortgageId);
    // The servicer corrects the amount down: the 60,000 left after the return still settles it.
    await db.execute(sql`update obligations set amount = 50000 where id = ${given.obligationId}::uuid`);
    const returned = await returnPayment(db, { obligationId: given.obligationId, reference: `B-${given.obligationId}`, reason: "cheque bounced: NSF", actor: "feed", channel: "api" });
    expect(returned).toMatchObject({ status: "settled", netReceived: 60_000n, allocationsReversed: 3, reallocated: false });
    expect(await ledgerOf(given.obligationId)).toMatchObject({ dispersed: false, netCash: 60_000n, allocated: 0n, projected: 0n, lendersOwed: 0n, trustCash: 60_000n });
    await heal();
    expect(await escalationOf(given.obligationId)).toMatchObject({ status: "escalated", parked: "60000" });
    expect(await ledgerOf(given.obligationId)).toMatchObject({ netCash: 60_000n, allocated: 0n, suspense: 60_000n, lendersOwed: 0n, trustCash: 60_000n });
    expect(await findingsFor(given.obligationId)).toEqual([]);
  });
});

describe("late cash is dispersed", () => {
  it("an amount lowered below the cash already received settles the obligation, and it is dispersed", async () => {
    const given = await givenSettledObligation(database, { lenders: [5000, 5000], servicingFeeBps: 0, status: "partially_settled", cashReceived: [80_000n] });
    await db.execute(sql`update obligations set amount = 75000 where id = ${given.obligationId}::uuid`);
    await heal();
    expect(await ledgerOf(given.obligationId)).toMatchObject({ status: "settled", dispersed: true, netCash: 80_000n, allocated: 80_000n });
    await expect(receivePayment(db, { obligationId: given.obligationId, reference: `LATE-${given.obligationId}`, amount: 1n, actor: "feed", channel: "api" })).rejects.toMatchObject({ code: "OBLIGATION_NOT_PAYABLE" });
  });

  it("a second CASH_RECEIVED after the dispersal is allocation 2 of only the difference", async () => {
    const given = await dispersed({ amount: 100_000n, cashReceived: [100_000n] });
    await postCashReceivedBySql(database, given.obligationId, 20_000n);
    expect((await ledgerOf(given.obligationId)).dispersed).toBe(false);
    await heal();
    expect(await ledgerOf(given.obligationId)).toMatchObject({ dispersed: true, netCash: 120_000n, allocated: 120_000n, projected: 120_000n, payables: 6 });
    expect(await findingsFor(given.obligationId)).toEqual([]);
  });
});

describe("SUSPENSE of an escalation holds its unallocated cash once", () => {
  async function escalate(obligationId: string) {
    return db.transaction((tx) => escalateToSuspense(tx, obligationId, { actor: "test", reason: "no active positions" }));
  }

  it("an escalated obligation moved to another mortgage is not parked twice", async () => {
    const given = await givenSettledObligation(database, { lenders: [0] });
    expect(await escalate(given.obligationId)).toBe("escalated");
    const other = await givenSettledObligation(database, { lenders: [0] });
    await db.execute(sql`update obligations set mortgage_id = ${other.mortgageId}::uuid where id = ${given.obligationId}::uuid`);
    await scanForOrphans(ctx);
    await scanForOrphans(ctx);
    expect((await ledgerOf(given.obligationId)).suspense).toBe(100_000n);
    expect(await findingsFor(given.obligationId)).toEqual([]);
  });

  it("amount corrected 100,000 → 90,000 → 100,000 → 90,000: SUSPENSE follows, 90,000 at the end, and later scans post nothing", async () => {
    const given = await givenSettledObligation(database, { lenders: [0], cashReceived: [] });
    expect(await escalate(given.obligationId)).toBe("escalated");
    for (const amount of [90_000n, 100_000n, 90_000n]) {
      await db.execute(sql`update obligations set amount = ${amount.toString()}::bigint where id = ${given.obligationId}::uuid`);
      await scanForOrphans(ctx);
      expect((await ledgerOf(given.obligationId)).suspense).toBe(amount);
    }
    const count = async () => {
      const [row] = await db.execute<{ n: number }>(sql`select count(*)::int as n from cash_journal_entries where obligation_id = ${given.obligationId}::uuid`);
      return row!.n;
    };
    const before = await count();
    await scanForOrphans(ctx);
    await scanForOrphans(ctx);
    expect(await count()).toBe(before);
  });
});

describe("an escalation whose obligation stops being settled is never stuck or hidden", () => {
  const slow = testPipeline(database, { HEALING_BACKOFF_MS: "1500" });
  beforeAll(() => {
    slow.startWorkers();
  });

  async function healingRow(obligationId: string) {
    const [row] = await db.execute<{ status: string; attempt_count: number; last_error: string | null }>(sql`
      select status, attempt_count, last_error from dispersal_healing_attempts where obligation_id = ${obligationId}::uuid`);
    return row;
  }

  it("a requeue of an escalation that was waived is refused (409), and it stays escalated and listed with its new status", async () => {
    const given = await givenSettledObligation(database, { lenders: [0] });
    await db.transaction((tx) => escalateToSuspense(tx, given.obligationId, { actor: "test", reason: "no active positions" }));
    await db.execute(sql`update obligations set status = 'waived' where id = ${given.obligationId}::uuid`);
    await expect(requestRequeue(ctx, given.obligationId, { actor: "alice", channel: "cli", reason: "positions were fixed" })).rejects.toBeInstanceOf(ObligationNotSettledError);
    expect(await healingRow(given.obligationId)).toMatchObject({ status: "escalated" });
    expect((await ledgerOf(given.obligationId)).suspense).toBe(100_000n);
  });

  it("a payment of an escalated obligation returned through the intake: it stays escalated, its SUSPENSE restated to what is left", async () => {
    const given = await givenSettledObligation(database, { lenders: [0], status: "due", cashReceived: [] });
    await receivePayment(db, { obligationId: given.obligationId, reference: `ESC-${given.obligationId}`, amount: 100_000n, actor: "feed", channel: "api" });
    await db.transaction((tx) => escalateToSuspense(tx, given.obligationId, { actor: "test", reason: "no active positions" }));
    expect((await ledgerOf(given.obligationId)).suspense).toBe(100_000n);
    await returnPayment(db, { obligationId: given.obligationId, reference: `ESC-${given.obligationId}`, reason: "charge-back from the bank", actor: "feed", channel: "api" });
    expect(await ledgerOf(given.obligationId)).toMatchObject({ status: "due", netCash: 0n, suspense: 0n, trustCash: 0n });
    expect(await healingRow(given.obligationId)).toMatchObject({ status: "escalated" });
    expect(await findingsFor(given.obligationId)).toEqual([]);
  });

  it("waived while its requeued round runs: the refused round goes back to escalated, SUSPENSE kept", async () => {
    const given = await givenSettledObligation(database, { lenders: [0] });
    await db.transaction((tx) => escalateToSuspense(tx, given.obligationId, { actor: "test", reason: "no active positions" }));
    await requestRequeue(slow.ctx, given.obligationId, { actor: "alice", channel: "cli", reason: "positions were fixed" });
    await waitFor(async () => (await healingRow(given.obligationId))?.attempt_count === 1, { timeoutMs: 10_000, what: "the round's first attempt failed" });
    expect((await healingRow(given.obligationId))?.status).toBe("requeued");
    await db.execute(sql`update obligations set status = 'waived' where id = ${given.obligationId}::uuid`);
    await waitFor(async () => (await healingRow(given.obligationId))?.status === "escalated", { timeoutMs: 15_000, what: "the refused round back to escalated" });
    expect(await healingRow(given.obligationId)).toMatchObject({ last_error: expect.stringMatching(/^refused: .*waived/) });
    expect((await ledgerOf(given.obligationId)).suspense).toBe(100_000n);
  });
});

describe("amounts anywhere in bigint's range", () => {
  it("an escalation whose posting would pass the bigint range is escalated without it and names why; money at risk sums exactly", async () => {
    const huge = await givenSettledObligation(database, { lenders: [0], amount: 5_000_000_000_000_000_000n });
    await expect(db.transaction((tx) => escalateToSuspense(tx, huge.obligationId, { actor: "test", reason: "no active positions" }))).resolves.toBe("escalated");
    const [row] = await db.execute<{ status: string; last_error: string }>(sql`
      select status, last_error from dispersal_healing_attempts where obligation_id = ${huge.obligationId}::uuid`);
    expect(row).toMatchObject({ status: "escalated", last_error: expect.stringMatching(/amount out of range/) });
    expect((await ledgerOf(huge.obligationId)).suspense).toBe(0n);
    await scanForOrphans(ctx); // the backstop's top-up meets the same range: no throw

    const before = (await readMoneyAtRisk(db)).suspenseCents;
    for (let i = 0; i < 3; i++) {
      const big = await givenSettledObligation(database, { lenders: [0], amount: 4_000_000_000_000_000_000n });
      await db.transaction((tx) => escalateToSuspense(tx, big.obligationId, { actor: "test", reason: "no active positions" }));
    }
    // 12,000,000,000,000,000,000 cents: past bigint, exact.
    expect((await readMoneyAtRisk(db)).suspenseCents - before).toBe(12_000_000_000_000_000_000n);
  });
});
