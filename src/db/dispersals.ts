// Dispersal of one settled obligation (DESIGN.md §3): lock it, replay if already dispersed, else
// split the settled cash (domain/servicingFee + domain/shares) and write the entries, the fee entry
// and their postings in the caller's transaction.
import { sql } from "drizzle-orm";
import { DomainError, ObligationNotFoundError, ObligationNotSettledError } from "../domain/errors.js";
import { failpoint } from "../failpoint.js";
import { idempotencyKeys } from "../domain/ledgerRules.js";
import { servicingFeeForPeriod, type ObligationType, type PaymentFrequency } from "../domain/servicingFee.js";
import { splitProRata, type Share } from "../domain/shares.js";
import { sumCents } from "../domain/money.js";
import type { Tx } from "./client.js";
import { postEntries, today, type PostingRequest } from "./ledger.js";
import type { ObligationStatus } from "./schema.js";

export interface DispersalEntry {
  id: string;
  lenderId: string;
  amount: bigint;
  ownershipUnits: bigint;
  totalUnits: bigint;
}

export interface DispersalResult {
  obligationId: string;
  mortgageId: string;
  settledAmount: bigint;
  fee: bigint;
  entries: DispersalEntry[];
  /** True when the entries already existed and nothing was written. */
  replayed: boolean;
}

interface LockedObligation extends Record<string, unknown> {
  id: string;
  mortgage_id: string;
  type: ObligationType;
  amount: bigint;
  status: ObligationStatus;
  dispersed: boolean;
  principal: bigint;
  servicing_fee_bps: number;
  payment_frequency: PaymentFrequency;
  cash_received: bigint;
  lender_ids: string[] | null;
  units: string[] | null;
}

/** Everything the split needs of an obligation, its mortgage, its cash received and its positions (one row each). */
const obligationsForTheSplit = sql`
    select o.id, o.mortgage_id, o.type, o.amount, o.status, o.dispersed,
           m.principal, m.servicing_fee_bps, m.payment_frequency,
           (select coalesce(sum(j.amount), 0)::bigint from cash_journal_entries j
             where j.obligation_id = o.id and j.entry_type = 'CASH_RECEIVED') as cash_received,
           (select array_agg(p.lender_id::text order by p.lender_id) from mortgage_positions p
             where p.mortgage_id = o.mortgage_id and p.units > 0) as lender_ids,
           (select array_agg(p.units::text order by p.lender_id) from mortgage_positions p
             where p.mortgage_id = o.mortgage_id and p.units > 0) as units
      from obligations o join mortgages m on m.id = o.mortgage_id`;

/** Locks the obligation row and reads everything the split needs, in one round trip. */
async function lockObligation(tx: Tx, obligationId: string): Promise<LockedObligation | undefined> {
  const rows = await tx.execute<LockedObligation>(sql`
    ${obligationsForTheSplit}
     where o.id = ${obligationId}::uuid
       for update of o`);
  return rows[0];
}

/** Settled amount (§3 step 3): the CASH_RECEIVED postings if any, else the obligation's amount. */
export function settledAmountOf(row: { cash_received: bigint; amount: bigint }): bigint {
  const received = BigInt(row.cash_received);
  return received > 0n ? received : BigInt(row.amount);
}

/** §3 steps 4–5 for one locked obligation: the servicing fee, then the lenders' pro-rata shares of the rest. */
function splitSettledCash(row: LockedObligation, settledAmount: bigint): { fee: bigint; shares: ReturnType<typeof splitProRata> } {
  const fee = servicingFeeForPeriod({
    obligationType: row.type,
    principal: BigInt(row.principal),
    servicingFeeBps: row.servicing_fee_bps,
    paymentFrequency: row.payment_frequency,
    settledAmount,
  });
  const positions = (row.lender_ids ?? []).map((lenderId, i) => ({ lenderId, units: BigInt(row.units![i]!) }));
  return { fee, shares: splitProRata(row.mortgage_id, settledAmount - fee, positions) };
}

export async function disperseObligation(tx: Tx, obligationId: string): Promise<DispersalResult> {
  const row = await lockObligation(tx, obligationId);
  if (!row) throw new ObligationNotFoundError(obligationId);
  if (row.status !== "settled") throw new ObligationNotSettledError(obligationId, row.status);
  const settledAmount = settledAmountOf(row);
  if (row.dispersed) return { ...(await loadDispersal(tx, row.id, row.mortgage_id, settledAmount)), replayed: true };

  const { fee, shares } = splitSettledCash(row, settledAmount);
  const date = today();

  const entries = shares.length === 0 ? [] : await tx.execute<{ id: string; lender_id: string }>(sql`
    insert into dispersal_entries (obligation_id, mortgage_id, lender_id, amount, ownership_units, total_units, dispersal_date)
    select ${row.id}::uuid, ${row.mortgage_id}::uuid, lender_id, amount, ownership_units, total_units, ${date}::date
      from jsonb_to_recordset(${JSON.stringify(
        shares.map((s) => ({ lender_id: s.lenderId, amount: s.amount.toString(), ownership_units: s.ownershipUnits.toString(), total_units: s.totalUnits.toString() })),
      )}::jsonb) as t(lender_id uuid, amount bigint, ownership_units bigint, total_units bigint)
    returning id, lender_id::text`);
  const entryIdByLender = new Map(entries.map((e) => [e.lender_id, e.id]));
  failpoint("dispersal.after-entries");

  if (fee > 0n) {
    await tx.execute(sql`
      insert into servicing_fee_entries (obligation_id, mortgage_id, amount, annual_rate_bps, principal_basis)
      values (${row.id}::uuid, ${row.mortgage_id}::uuid, ${fee.toString()}::bigint, ${row.servicing_fee_bps}, ${BigInt(row.principal).toString()}::bigint)`);
  }
  const postings = dispersalPostings(row, fee, shares, (lenderId) => entryIdByLender.get(lenderId)!);
  await postEntries(tx, postings);
  failpoint("dispersal.after-postings");
  if (shares.length === 0) {
    // The fee took the whole settled amount: no entry can exist, so mark the dispersal done here.
    await tx.execute(sql`update obligations set dispersed = true where id = ${row.id}::uuid`);
  }

  if (sumCents(shares.map((s) => s.amount)) + fee !== settledAmount) {
    throw new Error(`conservation violated for obligation ${row.id}: shares + fee ≠ ${settledAmount}`);
  }
  return {
    obligationId: row.id,
    mortgageId: row.mortgage_id,
    settledAmount,
    fee,
    entries: shares.map((s) => ({ id: entryIdByLender.get(s.lenderId)!, lenderId: s.lenderId, amount: s.amount, ownershipUnits: s.ownershipUnits, totalUnits: s.totalUnits })),
    replayed: false,
  };
}

/** The postings of one dispersal: LENDER_PAYABLE_CREATED per entry, then SERVICING_FEE_RECOGNIZED (both paths use this). */
function dispersalPostings(row: LockedObligation, fee: bigint, shares: readonly Share[], entryIdOf: (lenderId: string) => string): PostingRequest[] {
  const allocation = { family: "CONTROL", subaccount: "ALLOCATION", mortgageId: row.mortgage_id } as const;
  const postings: PostingRequest[] = shares.map((s) => ({
    entryType: "LENDER_PAYABLE_CREATED",
    amount: s.amount,
    debit: allocation,
    credit: { family: "LENDER_PAYABLE", mortgageId: row.mortgage_id, lenderId: s.lenderId },
    idempotencyKey: idempotencyKeys.lenderPayableCreated(entryIdOf(s.lenderId)),
    mortgageId: row.mortgage_id,
    obligationId: row.id,
    lenderId: s.lenderId,
    channel: "dispersal",
  }));
  if (fee > 0n) {
    postings.push({
      entryType: "SERVICING_FEE_RECOGNIZED",
      amount: fee,
      debit: allocation,
      credit: { family: "SERVICING_REVENUE", mortgageId: row.mortgage_id },
      idempotencyKey: idempotencyKeys.servicingFeeRecognized(row.id),
      mortgageId: row.mortgage_id,
      obligationId: row.id,
      channel: "dispersal",
    });
  }
  return postings;
}

async function loadDispersal(tx: Tx, obligationId: string, mortgageId: string, settledAmount: bigint): Promise<Omit<DispersalResult, "replayed">> {
  const rows = await tx.execute<{ id: string; lender_id: string; amount: bigint; ownership_units: bigint; total_units: bigint }>(sql`
    select d.id, d.lender_id::text, d.amount, d.ownership_units, d.total_units
      from dispersal_entries d where d.obligation_id = ${obligationId}::uuid order by d.lender_id`);
  // Read apart from the entries: when the fee took the whole settled amount there is no entry to join it to.
  const [fee] = await tx.execute<{ amount: bigint }>(sql`
    select amount from servicing_fee_entries where obligation_id = ${obligationId}::uuid`);
  return {
    obligationId,
    mortgageId,
    settledAmount,
    fee: BigInt(fee?.amount ?? 0n),
    entries: rows.map((r) => ({ id: r.id, lenderId: r.lender_id, amount: BigInt(r.amount), ownershipUnits: BigInt(r.ownership_units), totalUnits: BigInt(r.total_units) })),
  };
}

/** What became of one obligation of a batch: dispersed (or replayed), or left out with the error it fails with alone. */
export type BatchDispersal =
  | { obligationId: string; outcome: "dispersed"; dispersal: DispersalResult }
  | { obligationId: string; outcome: "rejected"; error: DomainError };

/** Locks the batch's obligation rows in id order (a fixed order: no deadlock between batches) and reads what the splits need. */
async function lockObligations(tx: Tx, obligationIds: readonly string[]): Promise<LockedObligation[]> {
  return tx.execute<LockedObligation>(sql`
    ${obligationsForTheSplit}
     where o.id in (select (jsonb_array_elements_text(${JSON.stringify(obligationIds)}::jsonb))::uuid)
     order by o.id
       for update of o`);
}

/**
 * Disperses a batch of obligations in the caller's transaction, set-based: one statement locks and
 * reads them all, the split of each is the same pure functions as disperseObligation's, and every
 * entry, fee entry and posting of the batch is written in a few statements. The ledger result of
 * each obligation is the one disperseObligation writes (cent for cent; test/integration
 * dispersalBatches.test.ts). An obligation that cannot be dispersed (unknown, not settled, no
 * active position) is left out with its error and nothing of it is written; any other error
 * rolls the caller's transaction back.
 */
export async function disperseObligations(
  tx: Tx,
  obligationIds: readonly string[],
  options: { beforePostings?: (outcomes: ReadonlyMap<string, BatchDispersal>) => Promise<void> } = {},
): Promise<Map<string, BatchDispersal>> {
  const outcomes = new Map<string, BatchDispersal>();
  const rows = new Map((await lockObligations(tx, obligationIds)).map((row) => [row.id, row]));
  failpoint("batch.after-lock");

  interface Split { row: LockedObligation; settledAmount: bigint; fee: bigint; shares: Share[] }
  const splits: Split[] = [];
  for (const obligationId of obligationIds) {
    const row = rows.get(obligationId);
    if (!row) {
      outcomes.set(obligationId, { obligationId, outcome: "rejected", error: new ObligationNotFoundError(obligationId) });
      continue;
    }
    if (row.status !== "settled") {
      outcomes.set(obligationId, { obligationId, outcome: "rejected", error: new ObligationNotSettledError(obligationId, row.status) });
      continue;
    }
    const settledAmount = settledAmountOf(row);
    if (row.dispersed) {
      outcomes.set(obligationId, { obligationId, outcome: "dispersed", dispersal: { ...(await loadDispersal(tx, row.id, row.mortgage_id, settledAmount)), replayed: true } });
      continue;
    }
    try {
      splits.push({ row, settledAmount, ...splitSettledCash(row, settledAmount) });
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      outcomes.set(obligationId, { obligationId, outcome: "rejected", error });
    }
  }
  if (splits.length === 0) {
    await options.beforePostings?.(outcomes);
    return outcomes;
  }

  const date = today();
  const entryRows = splits.flatMap(({ row, shares }) =>
    shares.map((s) => ({ obligation_id: row.id, mortgage_id: row.mortgage_id, lender_id: s.lenderId, amount: s.amount.toString(), ownership_units: s.ownershipUnits.toString(), total_units: s.totalUnits.toString() })),
  );
  const entries = entryRows.length === 0 ? [] : await tx.execute<{ id: string; obligation_id: string; lender_id: string }>(sql`
    insert into dispersal_entries (obligation_id, mortgage_id, lender_id, amount, ownership_units, total_units, dispersal_date)
    select obligation_id, mortgage_id, lender_id, amount, ownership_units, total_units, ${date}::date
      from jsonb_to_recordset(${JSON.stringify(entryRows)}::jsonb)
           as t(obligation_id uuid, mortgage_id uuid, lender_id uuid, amount bigint, ownership_units bigint, total_units bigint)
    returning id, obligation_id::text, lender_id::text`);
  const entryId = new Map(entries.map((e) => [`${e.obligation_id}|${e.lender_id}`, e.id]));

  const feeRows = splits.filter((s) => s.fee > 0n).map(({ row, fee }) => ({
    obligation_id: row.id, mortgage_id: row.mortgage_id, amount: fee.toString(), annual_rate_bps: row.servicing_fee_bps, principal_basis: BigInt(row.principal).toString(),
  }));
  if (feeRows.length > 0) {
    await tx.execute(sql`
      insert into servicing_fee_entries (obligation_id, mortgage_id, amount, annual_rate_bps, principal_basis)
      select obligation_id, mortgage_id, amount, annual_rate_bps, principal_basis
        from jsonb_to_recordset(${JSON.stringify(feeRows)}::jsonb)
             as t(obligation_id uuid, mortgage_id uuid, amount bigint, annual_rate_bps integer, principal_basis bigint)`);
  }
  const feeOnly = splits.filter((s) => s.shares.length === 0).map((s) => s.row.id);
  if (feeOnly.length > 0) {
    // The fee took the whole settled amount: no entry can exist, so mark the dispersal done here.
    await tx.execute(sql`update obligations set dispersed = true
                          where id in (select (jsonb_array_elements_text(${JSON.stringify(feeOnly)}::jsonb))::uuid)`);
  }

  const postings: PostingRequest[] = [];
  for (const { row, settledAmount, fee, shares } of splits) {
    postings.push(...dispersalPostings(row, fee, shares, (lenderId) => entryId.get(`${row.id}|${lenderId}`)!));
    if (sumCents(shares.map((s) => s.amount)) + fee !== settledAmount) {
      throw new Error(`conservation violated for obligation ${row.id}: shares + fee ≠ ${settledAmount}`);
    }
    outcomes.set(row.id, {
      obligationId: row.id,
      outcome: "dispersed",
      dispersal: {
        obligationId: row.id,
        mortgageId: row.mortgage_id,
        settledAmount,
        fee,
        entries: shares.map((s) => ({ id: entryId.get(`${row.id}|${s.lenderId}`)!, lenderId: s.lenderId, amount: s.amount, ownershipUnits: s.ownershipUnits, totalUnits: s.totalUnits })),
        replayed: false,
      },
    });
  }
  // The caller's per-obligation work runs before the postings: the account rows the postings lock
  // (a mortgage's CONTROL and LENDER_PAYABLE, shared by all its obligations) are then held only
  // from here to the commit, so batches that meet on one mortgage wait on each other briefly.
  await options.beforePostings?.(outcomes);
  // postEntries takes the account rows in a fixed order, so concurrent batches cannot deadlock.
  await postEntries(tx, postings);
  return outcomes;
}
