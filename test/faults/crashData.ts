// The crash test's one data set, with fixed ids so that every run (each in its own database) holds
// the same obligations, and the money fingerprint that two runs of it are compared by.
import { sql } from "drizzle-orm";
import type { Database, Tx } from "../../src/db/client.js";
import { escalateToSuspense } from "../../src/db/healing.js";
import { postEntries } from "../../src/db/ledger.js";
import { receivePayment } from "../../src/db/payments.js";
import { postingAllocation } from "../../src/db/obligationAmounts.js";
import { idempotencyKeys } from "../../src/domain/ledgerRules.js";
import { accrualAndCash } from "../helpers/factories.js";

/** A fixed v4-shaped id: `group` names the kind of row, `n` numbers it. */
const id = (group: number, n: number) => `${group.toString(16).padStart(8, "0")}-0000-4000-8000-${n.toString(16).padStart(12, "0")}`;

export interface CrashData {
  /** Orphans that disperse (some on a mortgage with a servicing fee, one settled with partial cash). */
  fixable: string[];
  /** Orphans on a mortgage without positions: three failed attempts, then escalation. */
  unfixable: string[];
  /** Rounds that used their attempts whose escalation was lost: the scan's backstop escalates them. */
  exhausted: string[];
  /** Escalated earlier, the positions since repaired: an operator requeues them and they resolve. */
  escalated: string[];
  /** Escalated with part of their cash; the rest was posted since by another system: the backstop tops SUSPENSE up. */
  lateCash: string[];
}

interface MortgageSpec {
  id: string;
  units: number[];
  feeBps: number;
}

/** The mortgages, a lender per position (ids `lenderGroup + m`), and the positions. */
async function insertMortgages(tx: Tx, mortgages: readonly MortgageSpec[], label: string, lenderGroup: number): Promise<void> {
  for (const [m, spec] of mortgages.entries()) {
    await tx.execute(sql`insert into mortgages (id, reference, principal, servicing_fee_bps, payment_frequency)
      values (${spec.id}::uuid, ${`${label.toUpperCase()}-${m}`}, 40000000, ${spec.feeBps}, 'monthly')`);
    for (const [l, units] of spec.units.entries()) {
      const lender = id(lenderGroup + m, l + 1);
      await tx.execute(sql`insert into lenders (id, name) values (${lender}::uuid, ${`${label} lender ${m}.${l}`})`);
      await tx.execute(sql`insert into mortgage_positions (mortgage_id, lender_id, units) values (${spec.id}::uuid, ${lender}::uuid, ${units})`);
    }
  }
}

export async function seedCrashData(database: Database): Promise<CrashData> {
  const mortgages: Record<"plain" | "fee" | "empty" | "emptyExhausted" | "repaired" | "stillEmpty", MortgageSpec> = {
    plain: { id: id(0xa1, 1), units: [5000, 3000, 2000], feeBps: 0 },
    fee: { id: id(0xa1, 2), units: [3333, 3333, 3334], feeBps: 75 },
    empty: { id: id(0xa1, 3), units: [0, 0], feeBps: 0 },
    emptyExhausted: { id: id(0xa1, 4), units: [0], feeBps: 0 },
    repaired: { id: id(0xa1, 5), units: [0, 0], feeBps: 0 },
    stillEmpty: { id: id(0xa1, 6), units: [0], feeBps: 0 },
  };
  const data: CrashData = {
    fixable: [1, 2, 3, 4, 5, 6, 7, 8, 9].map((n) => id(0xb1, n)),
    unfixable: [1, 2, 3].map((n) => id(0xb2, n)),
    exhausted: [1, 2].map((n) => id(0xb3, n)),
    escalated: [1, 2].map((n) => id(0xb4, n)),
    lateCash: [1, 2].map((n) => id(0xb5, n)),
  };
  const obligations: { id: string; mortgage: MortgageSpec; type: string; amount: bigint; cash: bigint[] }[] = [
    ...data.fixable.map((o, i) => ({
      id: o,
      mortgage: i < 6 ? mortgages.plain : mortgages.fee,
      type: i < 6 ? "principal_repayment" : "regular_interest",
      amount: 100_000n + BigInt(i * 7919),
      // One settled with less cash than its amount (another system's SQL settled it): the cash is what is split.
      cash: i === 1 ? [60_000n, 30_001n] : i === 2 ? [] : [100_000n + BigInt(i * 7919)],
    })),
    ...data.unfixable.map((o, i) => ({ id: o, mortgage: mortgages.empty, type: "principal_repayment", amount: 50_000n + BigInt(i), cash: [50_000n + BigInt(i)] })),
    ...data.exhausted.map((o, i) => ({ id: o, mortgage: mortgages.emptyExhausted, type: "late_fee", amount: 7_500n + BigInt(i), cash: [] })),
    ...data.escalated.map((o, i) => ({ id: o, mortgage: mortgages.repaired, type: "arrears_cure", amount: 20_000n + BigInt(i), cash: [20_000n + BigInt(i)] })),
    ...data.lateCash.map((o, i) => ({ id: o, mortgage: mortgages.stillEmpty, type: "principal_repayment", amount: 40_000n + BigInt(i), cash: [30_000n] })),
  ];

  await database.db.transaction(async (tx) => {
    await insertMortgages(tx, Object.values(mortgages), "Crash", 0xc0);
    for (const o of obligations) {
      await tx.execute(sql`insert into obligations (id, mortgage_id, type, amount, status, due_date, settled_at)
        values (${o.id}::uuid, ${o.mortgage.id}::uuid, ${o.type}, ${o.amount.toString()}::bigint, 'settled', '2026-11-01', now())`);
      await postEntries(tx, accrualAndCash({ obligationId: o.id, mortgageId: o.mortgage.id, amount: o.amount }, o.cash));
    }
    // A round that used its three attempts and whose final failure was never escalated (a lost event).
    for (const o of data.exhausted) {
      await tx.execute(sql`insert into dispersal_healing_attempts (obligation_id, attempt_count, status, last_error, last_attempt_at)
        values (${o}::uuid, 3, 'retrying', 'no active positions', now())`);
    }
    for (const o of [...data.escalated, ...data.lateCash]) {
      await escalateToSuspense(tx, o, { actor: "crash-test", reason: "no active positions", attemptCount: 3 });
    }
    // The rest of the cash, posted by another system after the escalation.
    for (const [i, o] of data.lateCash.entries()) {
      await postEntries(tx, [{
        entryType: "CASH_RECEIVED",
        amount: 10_000n + BigInt(i),
        debit: { family: "TRUST_CASH", mortgageId: mortgages.stillEmpty.id },
        credit: { family: "BORROWER_RECEIVABLE", obligationId: o },
        idempotencyKey: idempotencyKeys.cashReceived("other-system", `crash-late-${o}`),
        mortgageId: mortgages.stillEmpty.id,
        obligationId: o,
      }]);
    }
    // The positions were repaired after the escalation: a requeue now succeeds.
    await tx.execute(sql`update mortgage_positions set units = 5000 where mortgage_id = ${mortgages.repaired.id}::uuid`);
  });
  return data;
}

export function allObligations(data: CrashData): string[] {
  return [...data.fixable, ...data.unfixable, ...data.exhausted, ...data.escalated, ...data.lateCash];
}

/**
 * Everything money-bearing of a run, free of generated ids: dispersal and fee entries, every posting
 * (keys that name a dispersal entry or a reversed entry are rewritten to what those name), account
 * balances, healing statuses and how many escalations and resolutions the audit log holds.
 */
export async function moneyFingerprint(database: Database): Promise<Record<string, string[]>> {
  const rows = async (query: ReturnType<typeof sql>) => (await database.db.execute<{ line: string }>(query)).map((r) => r.line);
  const accountName = (alias: string) => sql.raw(`concat_ws('/', ${alias}.family, ${alias}.subaccount, ${alias}.mortgage_id, ${alias}.obligation_id, ${alias}.lender_id)`);
  return {
    dispersalEntries: await rows(sql`
      select concat_ws(' ', obligation_id, lender_id, allocation, status, amount, ownership_units, total_units) as line from dispersal_entries order by 1`),
    feeEntries: await rows(sql`select concat_ws(' ', obligation_id, allocation, status, amount, annual_rate_bps) as line from servicing_fee_entries order by 1`),
    postings: await rows(sql`
      select concat_ws(' ', j.entry_type, j.amount,
               case when j.entry_type = 'LENDER_PAYABLE_CREATED' then 'payable:' || j.obligation_id || '/' || j.lender_id || '/' || ${postingAllocation("j")}
                    when j.entry_type = 'REVERSAL' then 'reversal:' || r.idempotency_key
                    else j.idempotency_key end,
               ${accountName("da")}, ${accountName("ca")}) as line
        from cash_journal_entries j
        join cash_accounts da on da.id = j.debit_account_id
        join cash_accounts ca on ca.id = j.credit_account_id
        left join cash_journal_entries r on r.id = j.reverses_entry_id
       order by 1`),
    balances: await rows(sql`
      select ${accountName("a")} || ' ' || a.cumulative_debits || ' ' || a.cumulative_credits as line from cash_accounts a order by 1`),
    healing: await rows(sql`
      select concat_ws(' ', o.id, o.dispersed, h.status,
               (select count(*) from audit_log l where l.resource_id = o.id::text and l.action = 'dispersal.self_healing_escalated'),
               (select count(*) from audit_log l where l.resource_id = o.id::text and l.action = 'dispersal.self_healing_resolved'),
               (select count(*) from audit_log l where l.resource_id = o.id::text and l.action = 'dispersal.self_healing_requeued')) as line
        from obligations o left join dispersal_healing_attempts h on h.obligation_id = o.id order by 1`),
  };
}

/** Invariants every end state must hold on its own, whatever the baseline: by name, the offending rows. */
export async function crashInvariantViolations(database: Database): Promise<Record<string, string[]>> {
  const found: Record<string, string[]> = {};
  const check = async (name: string, query: ReturnType<typeof sql>) => {
    const ids = (await database.db.execute<{ id: string }>(query)).map((r) => r.id);
    if (ids.length > 0) found[name] = ids;
  };
  // At most one escalation per round: rounds = requeues + 1.
  await check("escalatedMoreThanOncePerRound", sql`
    select o.id::text as id from obligations o
     where (select count(*) from audit_log l where l.resource_id = o.id::text and l.action = 'dispersal.self_healing_escalated')
         > 1 + (select count(*) from audit_log l where l.resource_id = o.id::text and l.action = 'dispersal.self_healing_requeued')`);
  // A resolution's reversal of SUSPENSE without the dispersal it belongs to (a returned payment's
  // reversals of its cash and payables leave an obligation rightly not dispersed).
  await check("reversalWithoutDispersal", sql`
    select j.obligation_id::text as id from cash_journal_entries j
      join cash_journal_entries r on r.id = j.reverses_entry_id and r.entry_type = 'SUSPENSE_ESCALATED'
      join obligations o on o.id = j.obligation_id
     where j.entry_type = 'REVERSAL' and not o.dispersed`);
  await check("dispersedAndStillInSuspense", sql`
    select o.id::text as id from obligations o join cash_accounts a on a.family = 'SUSPENSE' and a.obligation_id = o.id
     where o.dispersed and a.cumulative_debits <> a.cumulative_credits`);
  await check("neitherDispersedNorEscalated", sql`
    select o.id::text as id from obligations o left join dispersal_healing_attempts h on h.obligation_id = o.id
     where o.status = 'settled' and not o.dispersed and h.status is distinct from 'escalated'`);
  // While escalated, SUSPENSE holds the settled amount (DESIGN.md §4), late cash included.
  await check("escalatedSuspenseNotSettledAmount", sql`
    select o.id::text as id from obligations o join dispersal_healing_attempts h on h.obligation_id = o.id
     where h.status = 'escalated'
       and coalesce((select a.cumulative_debits - a.cumulative_credits from cash_accounts a where a.family = 'SUSPENSE' and a.obligation_id = o.id), 0)
        <> coalesce(nullif((select sum(j.amount) from cash_journal_entries j where j.obligation_id = o.id and j.entry_type = 'CASH_RECEIVED'), 0), o.amount)`);
  return found;
}

/**
 * The listener scenario's data: a dozen obligations not yet settled (accrued, their cash received),
 * on two mortgages with positions (one with a servicing fee); the test settles them by SQL while a
 * worker with the settlement listener runs.
 */
export async function seedListenerData(database: Database): Promise<string[]> {
  const mortgages = [
    { id: id(0xa2, 1), units: [5000, 3000, 2000], feeBps: 0 },
    { id: id(0xa2, 2), units: [2500, 7500], feeBps: 75 },
  ];
  const obligations = Array.from({ length: 12 }, (_, i) => ({ id: id(0xb6, i + 1), mortgage: mortgages[i % 2]!, amount: 80_000n + BigInt(i * 6007) }));
  await database.db.transaction(async (tx) => {
    await insertMortgages(tx, mortgages, "Listener", 0xd0);
    for (const o of obligations) {
      await tx.execute(sql`insert into obligations (id, mortgage_id, type, amount, status, due_date)
        values (${o.id}::uuid, ${o.mortgage.id}::uuid, ${o.mortgage.feeBps > 0 ? "regular_interest" : "principal_repayment"}, ${o.amount.toString()}::bigint, 'due', '2026-11-01')`);
      await postEntries(tx, accrualAndCash({ obligationId: o.id, mortgageId: o.mortgage.id, amount: o.amount }, [o.amount]));
    }
  });
  return obligations.map((o) => o.id);
}

export interface ReturnData {
  /** Payments the feed returns through the CLI (`return-payment`), each then sent again. */
  returns: Array<{ obligationId: string; reference: string }>;
  /** CASH_RECEIVED postings another system returns by SQL (a REVERSAL), after the feed's returns. */
  returnedBySql: string[];
  /** The obligations still settled at the end: dispersed to their net cash. */
  stillSettled: string[];
  /** Every obligation of the set. */
  all: string[];
}

/**
 * The payment-return scenario's data, due obligations paid through the intake (as `feed`) on two
 * mortgages with positions (one with a servicing fee), some with more cash from another system:
 * - R1, paid in full by one payment: its return leaves it `due`, its allocation reversed;
 * - R2, paid by two payments plus a duplicate from another system: returning the second leaves it
 *   settled, so its allocation is reversed and the net dispersed again in the return's transaction;
 * - R3 and R4, paid in full plus more cash from another system, which returns that by SQL: the
 *   trigger makes them orphans and the workers reverse their allocation and disperse the net again.
 * Not yet dispersed: the scenario's workers do that first.
 */
export async function seedReturnData(database: Database, feed: string): Promise<ReturnData> {
  const mortgages = [
    { id: id(0xa3, 1), units: [5000, 3000, 2000], feeBps: 0 },
    { id: id(0xa3, 2), units: [3333, 3333, 3334], feeBps: 75 },
  ];
  const [r1, r2, r3, r4] = [1, 2, 3, 4].map((n) => id(0xb8, n)) as [string, string, string, string];
  const obligations: { id: string; mortgage: MortgageSpec; amount: bigint; payments: bigint[]; extra?: bigint }[] = [
    { id: r1, mortgage: mortgages[0]!, amount: 100_000n, payments: [100_000n] },
    { id: r2, mortgage: mortgages[1]!, amount: 90_001n, payments: [50_000n, 40_001n], extra: 40_001n },
    { id: r3, mortgage: mortgages[0]!, amount: 70_003n, payments: [70_003n], extra: 30_000n },
    { id: r4, mortgage: mortgages[1]!, amount: 55_555n, payments: [55_555n], extra: 20_002n },
  ];
  await database.db.transaction(async (tx) => {
    await insertMortgages(tx, mortgages, "Return", 0xe0);
    for (const o of obligations) {
      await tx.execute(sql`insert into obligations (id, mortgage_id, type, amount, status, due_date)
        values (${o.id}::uuid, ${o.mortgage.id}::uuid, ${o.mortgage.feeBps > 0 ? "regular_interest" : "principal_repayment"}, ${o.amount.toString()}::bigint, 'due', '2026-11-01')`);
      await postEntries(tx, accrualAndCash({ obligationId: o.id, mortgageId: o.mortgage.id, amount: o.amount }, []));
    }
  });
  const returnedBySql: string[] = [];
  for (const o of obligations) {
    for (const [i, amount] of o.payments.entries()) {
      await receivePayment(database.db, { obligationId: o.id, reference: `PAY-${o.id}-${i + 1}`, amount, actor: feed, channel: "api" });
    }
    const extra = o.extra;
    if (extra === undefined) continue;
    // The same payment posted again by another system (its key, not the intake's).
    const [posted] = await database.db.transaction((tx) => postEntries(tx, [{
      entryType: "CASH_RECEIVED",
      amount: extra,
      debit: { family: "TRUST_CASH", mortgageId: o.mortgage.id },
      credit: { family: "BORROWER_RECEIVABLE", obligationId: o.id },
      idempotencyKey: idempotencyKeys.cashReceived("other-system", `crash-duplicate-${o.id}`),
      mortgageId: o.mortgage.id,
      obligationId: o.id,
      actor: "other-system",
    }]));
    if (o.id !== r2) returnedBySql.push(posted!.id);
  }
  return {
    returns: [{ obligationId: r1, reference: `PAY-${r1}-1` }, { obligationId: r2, reference: `PAY-${r2}-2` }],
    returnedBySql,
    stillSettled: [r2, r3, r4],
    all: [r1, r2, r3, r4],
  };
}
