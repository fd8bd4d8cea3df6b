// Dispersal of one settled obligation (DESIGN.md §3): lock it, replay if already dispersed, else
// split the settled cash (domain/servicingFee + domain/shares) and write the entries, the fee entry
// and their postings in the caller's transaction.
import { sql } from "drizzle-orm";
import { ObligationNotFoundError, ObligationNotSettledError } from "../domain/errors.js";
import { idempotencyKeys } from "../domain/ledgerRules.js";
import { servicingFeeForPeriod, type ObligationType, type PaymentFrequency } from "../domain/servicingFee.js";
import { splitProRata } from "../domain/shares.js";
import { sumCents } from "../domain/money.js";
import type { Tx } from "./client.js";
import { failpoint } from "../failpoint.js";
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

/** Locks the obligation row and reads everything the split needs, in one round trip. */
async function lockObligation(tx: Tx, obligationId: string): Promise<LockedObligation | undefined> {
  const rows = await tx.execute<LockedObligation>(sql`
    select o.id, o.mortgage_id, o.type, o.amount, o.status, o.dispersed,
           m.principal, m.servicing_fee_bps, m.payment_frequency,
           (select coalesce(sum(j.amount), 0)::bigint from cash_journal_entries j
             where j.obligation_id = o.id and j.entry_type = 'CASH_RECEIVED') as cash_received,
           (select array_agg(p.lender_id::text order by p.lender_id) from mortgage_positions p
             where p.mortgage_id = o.mortgage_id and p.units > 0) as lender_ids,
           (select array_agg(p.units::text order by p.lender_id) from mortgage_positions p
             where p.mortgage_id = o.mortgage_id and p.units > 0) as units
      from obligations o join mortgages m on m.id = o.mortgage_id
     where o.id = ${obligationId}::uuid
       for update of o`);
  return rows[0];
}

/** Settled amount (§3 step 3): the CASH_RECEIVED postings if any, else the obligation's amount. */
export function settledAmountOf(row: { cash_received: bigint; amount: bigint }): bigint {
  const received = BigInt(row.cash_received);
  return received > 0n ? received : BigInt(row.amount);
}

export async function disperseObligation(tx: Tx, obligationId: string): Promise<DispersalResult> {
  const row = await lockObligation(tx, obligationId);
  if (!row) throw new ObligationNotFoundError(obligationId);
  if (row.status !== "settled") throw new ObligationNotSettledError(obligationId, row.status);
  const settledAmount = settledAmountOf(row);
  if (row.dispersed) return { ...(await loadDispersal(tx, row.id, row.mortgage_id, settledAmount)), replayed: true };

  const fee = servicingFeeForPeriod({
    obligationType: row.type,
    principal: BigInt(row.principal),
    servicingFeeBps: row.servicing_fee_bps,
    paymentFrequency: row.payment_frequency,
    settledAmount,
  });
  const positions = (row.lender_ids ?? []).map((lenderId, i) => ({ lenderId, units: BigInt(row.units![i]!) }));
  const shares = splitProRata(row.mortgage_id, settledAmount - fee, positions);
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

  const allocation = { family: "CONTROL", subaccount: "ALLOCATION", mortgageId: row.mortgage_id } as const;
  const postings: PostingRequest[] = shares.map((s) => ({
    entryType: "LENDER_PAYABLE_CREATED",
    amount: s.amount,
    debit: allocation,
    credit: { family: "LENDER_PAYABLE", mortgageId: row.mortgage_id, lenderId: s.lenderId },
    idempotencyKey: idempotencyKeys.lenderPayableCreated(entryIdByLender.get(s.lenderId)!),
    mortgageId: row.mortgage_id,
    obligationId: row.id,
    lenderId: s.lenderId,
    channel: "dispersal",
  }));
  if (fee > 0n) {
    await tx.execute(sql`
      insert into servicing_fee_entries (obligation_id, mortgage_id, amount, annual_rate_bps, principal_basis)
      values (${row.id}::uuid, ${row.mortgage_id}::uuid, ${fee.toString()}::bigint, ${row.servicing_fee_bps}, ${BigInt(row.principal).toString()}::bigint)`);
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
