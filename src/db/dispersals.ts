// Dispersal of settled obligations (DESIGN.md §3), set-based, in the caller's transaction: lock the
// rows in id order, read the journal's allocations and the entries after the lock, decide per
// obligation with domain/allocation planAllocation, and write the reversals, restored entries, new
// allocation and their postings. One obligation alone is a batch of one.
import { sql } from "drizzle-orm";
import { DomainError, ObligationNotFoundError } from "../domain/errors.js";
import { idempotencyKeys, type AccountRef } from "../domain/ledgerRules.js";
import { planAllocation, type AllocationPlan, type AllocationPosting, type EntryStatus, type ProjectionEntry } from "../domain/allocation.js";
import type { ObligationType, PaymentFrequency } from "../domain/servicingFee.js";
import type { Share } from "../domain/shares.js";
import type { Tx } from "./client.js";
import { writeAudit } from "./audit.js";
import { postEntries, today, type PostingRequest } from "./ledger.js";
import { centsFromNumeric, netCashOf, postingAllocation } from "./obligationAmounts.js";
import type { ObligationStatus } from "./schema.js";

export interface DispersalEntry {
  id: string;
  lenderId: string;
  amount: bigint;
  ownershipUnits: bigint;
  totalUnits: bigint;
  allocation: number;
}

export interface DispersalResult {
  obligationId: string;
  mortgageId: string;
  /** Net settled cash. */
  settledAmount: bigint;
  /** The servicing fee the journal holds for it after this dispersal (all allocations). */
  fee: bigint;
  /** Its live (not reversed) dispersal entries after this dispersal, all allocations, by lender. */
  entries: DispersalEntry[];
  /** True when nothing was written: the journal already allocated the net settled cash. */
  replayed: boolean;
  /** The allocation this dispersal posted, if any. */
  allocation: number | null;
  /** Postings reversed (cash returned) and entries restored from the journal. */
  reversed: number;
  restored: number;
  /** Paid entries the net cash no longer covers. */
  shortfall: bigint;
}

interface LockedObligation extends Record<string, unknown> {
  id: string;
  mortgage_id: string;
  type: ObligationType;
  amount: bigint;
  status: ObligationStatus;
  principal: bigint;
  servicing_fee_bps: number;
  payment_frequency: PaymentFrequency;
  net_cash: string;
  lender_ids: string[] | null;
  units: string[] | null;
}

const idList = (ids: readonly string[]) => sql`select (jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb))::uuid`;

/**
 * Locks the obligation rows in id order (a fixed order: no deadlock between batches), then reads
 * what the plans need in statements of their own: rows of other tables read in the locking
 * statement would keep its snapshot from before the lock was granted (cash committed meanwhile unseen).
 */
async function lockAndRead(tx: Tx, ids: readonly string[]) {
  await tx.execute(sql`select o.id from obligations o where o.id in (${idList(ids)}) order by o.id for update of o`);
  const obligations = await tx.execute<LockedObligation>(sql`
    select o.id::text, o.mortgage_id::text, o.type, o.amount, o.status,
           m.principal, m.servicing_fee_bps, m.payment_frequency,
           ${netCashOf(sql`o.id`)}::text as net_cash,
           (select array_agg(p.lender_id::text order by p.lender_id) from mortgage_positions p
             where p.mortgage_id = o.mortgage_id and p.units > 0) as lender_ids,
           (select array_agg(p.units::text order by p.lender_id) from mortgage_positions p
             where p.mortgage_id = o.mortgage_id and p.units > 0) as units
      from obligations o join mortgages m on m.id = o.mortgage_id
     where o.id in (${idList(ids)})`);
  // The journal's allocations. Postings of before carry no allocation number: they are allocation 1.
  const postings = await tx.execute<{ id: string; obligation_id: string; entry_type: string; lender_id: string | null; amount: bigint; mortgage_id: string; allocation: number; reversed: boolean }>(sql`
    select p.id::text, p.obligation_id::text, p.entry_type, p.lender_id::text, p.amount, p.mortgage_id::text,
           ${postingAllocation("p")} as allocation,
           exists (select 1 from cash_journal_entries r where r.reverses_entry_id = p.id and r.entry_type = 'REVERSAL') as reversed
      from cash_journal_entries p
     where p.obligation_id in (${idList(ids)})
       and p.entry_type in ('LENDER_PAYABLE_CREATED', 'SERVICING_FEE_RECOGNIZED')
     order by p.sequence`);
  const entries = await tx.execute<{ id: string; obligation_id: string; kind: "payable" | "fee"; lender_id: string | null; allocation: number; amount: bigint; status: EntryStatus; ownership_units: bigint | null; total_units: bigint | null }>(sql`
    select d.id::text, d.obligation_id::text, 'payable' as kind, d.lender_id::text, d.allocation, d.amount, d.status, d.ownership_units, d.total_units
      from dispersal_entries d where d.obligation_id in (${idList(ids)})
    union all
    select f.id::text, f.obligation_id::text, 'fee', null, f.allocation, f.amount, f.status, null, null
      from servicing_fee_entries f where f.obligation_id in (${idList(ids)})`);
  return { obligations, postings, entries };
}

/** What became of one obligation of a batch: dispersed (or replayed), or left out with the error it fails with alone. */
export type BatchDispersal =
  | { obligationId: string; outcome: "dispersed"; dispersal: DispersalResult }
  /**
   * Left out with this error. Nothing of it is written, except when its remainder could not be
   * allocated (no active positions): its reversals and restored entries are written all the same,
   * and `dispersal` says what stands after them.
   */
  | { obligationId: string; outcome: "rejected"; error: DomainError; dispersal?: DispersalResult };

interface Planned {
  row: LockedObligation;
  plan: AllocationPlan;
  postings: AllocationPosting[];
  entries: Array<ProjectionEntry & { ownershipUnits: bigint | null; totalUnits: bigint | null }>;
}

/**
 * Everything of a batch's dispersal but its postings, in the caller's transaction: for each
 * obligation, what the net settled cash calls for minus what the journal already allocates
 * (domain/allocation), its entries written, and the postings to make returned. An obligation that
 * cannot be dispersed (unknown, not settled, entries that disagree with the journal) is left out
 * with its error and nothing of it is written. One whose remainder nobody holds units for is left
 * out with NoActivePositionsError after its reversals are written (undoing an allocation needs no
 * positions): it stays an orphan, and its escalation parks the remainder. Any other error rolls the
 * caller's transaction back. The caller posts `postings` last (db/dispersalBatch.ts): the account
 * rows they lock (a mortgage's CONTROL and LENDER_PAYABLE, shared by all its obligations) are then
 * held only from there to the commit.
 */
export async function allocateObligations(tx: Tx, obligationIds: readonly string[]): Promise<{ outcomes: Map<string, BatchDispersal>; postings: PostingRequest[] }> {
  const outcomes = new Map<string, BatchDispersal>();
  const ids = [...new Set(obligationIds)].sort();
  const read = ids.length === 0 ? { obligations: [], postings: [], entries: [] } : await lockAndRead(tx, ids);
  const rows = new Map(read.obligations.map((row) => [row.id, row]));

  const planned: Planned[] = [];
  for (const obligationId of obligationIds) {
    if (outcomes.has(obligationId) || planned.some((p) => p.row.id === obligationId)) continue;
    const row = rows.get(obligationId);
    if (!row) {
      outcomes.set(obligationId, { obligationId, outcome: "rejected", error: new ObligationNotFoundError(obligationId) });
      continue;
    }
    const postings: AllocationPosting[] = read.postings
      .filter((p) => p.obligation_id === obligationId)
      .map((p) => ({
        postingId: p.id,
        kind: p.entry_type === "SERVICING_FEE_RECOGNIZED" ? "fee" : "payable",
        lenderId: p.entry_type === "SERVICING_FEE_RECOGNIZED" ? null : p.lender_id,
        allocation: Number(p.allocation),
        amount: BigInt(p.amount),
        mortgageId: p.mortgage_id,
        reversed: p.reversed,
      }));
    const entries = read.entries
      .filter((e) => e.obligation_id === obligationId)
      .map((e) => ({
        entryId: e.id, kind: e.kind, lenderId: e.lender_id, allocation: Number(e.allocation), amount: BigInt(e.amount), status: e.status,
        ownershipUnits: e.ownership_units === null ? null : BigInt(e.ownership_units), totalUnits: e.total_units === null ? null : BigInt(e.total_units),
      }));
    try {
      const plan = planAllocation({
        obligationId,
        mortgageId: row.mortgage_id,
        status: row.status,
        netCash: centsFromNumeric(row.net_cash),
        postings,
        entries,
        fee: { obligationType: row.type, principal: BigInt(row.principal), servicingFeeBps: row.servicing_fee_bps, paymentFrequency: row.payment_frequency },
        positions: (row.lender_ids ?? []).map((lenderId, i) => ({ lenderId, units: BigInt(row.units![i]!) })),
      });
      planned.push({ row, plan, postings, entries });
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      outcomes.set(obligationId, { obligationId, outcome: "rejected", error });
    }
  }

  const ledger: PostingRequest[] = [];
  const written = await writeProjection(tx, planned, ledger);
  // An obligation whose remainder waits for positions is not dispersed: it stays an orphan.
  const settledIds = planned.filter((p) => p.row.status === "settled" && !p.plan.unallocatable).map((p) => p.row.id);
  if (settledIds.length > 0) {
    // The journal now allocates what the net cash calls for (entries inserted set it too, by trigger).
    await tx.execute(sql`update obligations set dispersed = true where id in (${idList(settledIds)}) and not dispersed`);
  }
  for (const p of planned) {
    const dispersal = written.get(p.row.id)!;
    const blocked = p.plan.unallocatable;
    outcomes.set(p.row.id, blocked ? { obligationId: p.row.id, outcome: "rejected", error: blocked.error, dispersal } : { obligationId: p.row.id, outcome: "dispersed", dispersal });
  }
  return { outcomes, postings: ledger };
}

/** allocateObligations, then its postings: the dispersal of obligations outside the healing rounds (a returned payment's, tests'). */
export async function disperseObligations(tx: Tx, obligationIds: readonly string[]): Promise<Map<string, BatchDispersal>> {
  const { outcomes, postings } = await allocateObligations(tx, obligationIds);
  // postEntries takes the account rows in a fixed order, so concurrent batches cannot deadlock.
  await postEntries(tx, postings);
  return outcomes;
}

/**
 * disperseObligations for one obligation: its dispersal, or throws the error it was left out with
 * (a caller that lets it roll its transaction back also undoes the reversals written for an
 * obligation nobody holds units for: the healing rounds and the intake use disperseObligations).
 */
export async function disperseObligation(tx: Tx, obligationId: string): Promise<DispersalResult> {
  const outcome = (await disperseObligations(tx, [obligationId])).get(obligationId)!;
  if (outcome.outcome === "rejected") throw outcome.error;
  return outcome.dispersal;
}

const controlAllocation = (mortgageId: string): AccountRef => ({ family: "CONTROL", subaccount: "ALLOCATION", mortgageId });
const accountOf = (p: { kind: "payable" | "fee"; lenderId: string | null }, mortgageId: string): AccountRef =>
  p.kind === "fee" ? { family: "SERVICING_REVENUE", mortgageId } : { family: "LENDER_PAYABLE", mortgageId, lenderId: p.lenderId! };

/**
 * Writes every plan's rows (entries reversed, restored, new allocation) in a few statements for the
 * whole batch, and queues their postings in `ledger`. Returns each obligation's dispersal as it stands after.
 */
async function writeProjection(tx: Tx, planned: readonly Planned[], ledger: PostingRequest[]): Promise<Map<string, DispersalResult>> {
  const date = today();
  const entryRows: Array<Record<string, string | number>> = [];
  const feeRows: Array<Record<string, string | number>> = [];
  const toReverse: string[] = [];
  for (const { row, plan, entries } of planned) {
    const keyed = new Map(entries.map((e) => [`${e.kind}|${e.lenderId ?? ""}|${e.allocation}`, e]));
    for (const posting of plan.reverse) {
      const entry = keyed.get(`${posting.kind}|${posting.lenderId ?? ""}|${posting.allocation}`);
      if (entry) toReverse.push(entry.entryId);
      ledger.push({
        entryType: "REVERSAL",
        amount: posting.amount,
        debit: accountOf(posting, posting.mortgageId),
        credit: controlAllocation(posting.mortgageId),
        idempotencyKey: idempotencyKeys.reversal(posting.postingId),
        reversesEntryId: posting.postingId,
        mortgageId: posting.mortgageId,
        obligationId: row.id,
        lenderId: posting.lenderId,
        reason: "net settled cash fell below what was allocated: pending allocation reversed",
        metadata: { allocation: posting.allocation },
        channel: "dispersal",
      });
    }
    toReverse.push(...plan.markReversed.map((e) => e.entryId));
    const positions = new Map((row.lender_ids ?? []).map((lenderId, i) => [lenderId, BigInt(row.units![i]!)]));
    const totalUnits = [...positions.values()].reduce((a, b) => a + b, 0n);
    for (const posting of plan.restore) {
      const base = { obligation_id: row.id, mortgage_id: posting.mortgageId, allocation: posting.allocation, amount: posting.amount.toString() };
      if (posting.kind === "fee") feeRows.push({ ...base, annual_rate_bps: row.servicing_fee_bps, principal_basis: BigInt(row.principal).toString() });
      else entryRows.push({ ...base, lender_id: posting.lenderId!, ownership_units: (positions.get(posting.lenderId!) ?? 0n).toString(), total_units: totalUnits.toString() });
    }
    const allocation = plan.allocate;
    if (!allocation) continue;
    for (const share of allocation.shares) {
      entryRows.push({
        obligation_id: row.id, mortgage_id: row.mortgage_id, allocation: allocation.allocation, amount: share.amount.toString(),
        lender_id: share.lenderId, ownership_units: share.ownershipUnits.toString(), total_units: share.totalUnits.toString(),
      });
    }
    if (allocation.fee > 0n) {
      feeRows.push({
        obligation_id: row.id, mortgage_id: row.mortgage_id, allocation: allocation.allocation, amount: allocation.fee.toString(),
        annual_rate_bps: row.servicing_fee_bps, principal_basis: BigInt(row.principal).toString(),
      });
    }
    ledger.push(...allocationPostings(row, allocation.allocation, allocation.fee, allocation.shares));
  }

  if (toReverse.length > 0) {
    await tx.execute(sql`update dispersal_entries set status = 'reversed' where id in (${idList(toReverse)}) and status = 'pending'`);
    await tx.execute(sql`update servicing_fee_entries set status = 'reversed' where id in (${idList(toReverse)}) and status = 'pending'`);
  }
  if (entryRows.length > 0) {
    await tx.execute(sql`
      insert into dispersal_entries (obligation_id, mortgage_id, lender_id, allocation, amount, ownership_units, total_units, dispersal_date)
      select obligation_id, mortgage_id, lender_id, allocation, amount, ownership_units, total_units, ${date}::date
        from jsonb_to_recordset(${JSON.stringify(entryRows)}::jsonb)
             as t(obligation_id uuid, mortgage_id uuid, lender_id uuid, allocation integer, amount bigint, ownership_units bigint, total_units bigint)`);
  }
  if (feeRows.length > 0) {
    await tx.execute(sql`
      insert into servicing_fee_entries (obligation_id, mortgage_id, allocation, amount, annual_rate_bps, principal_basis)
      select obligation_id, mortgage_id, allocation, amount, annual_rate_bps, principal_basis
        from jsonb_to_recordset(${JSON.stringify(feeRows)}::jsonb)
             as t(obligation_id uuid, mortgage_id uuid, allocation integer, amount bigint, annual_rate_bps integer, principal_basis bigint)`);
  }
  for (const { row, plan } of planned) {
    if (plan.restore.length === 0) continue;
    await writeAudit(tx, {
      action: "dispersal.entries_restored",
      actor: "dispersal-healing",
      resourceType: "obligation",
      resourceId: row.id,
      severity: "warning",
      metadata: { restored: plan.restore.map((p) => ({ kind: p.kind, lenderId: p.lenderId, allocation: p.allocation, amount: p.amount.toString(), postingId: p.postingId })) },
    });
  }
  return readDispersals(tx, planned);
}

/** The postings of one allocation: LENDER_PAYABLE_CREATED per share, then SERVICING_FEE_RECOGNIZED. */
function allocationPostings(row: LockedObligation, allocation: number, fee: bigint, shares: readonly Share[]): PostingRequest[] {
  const postings: PostingRequest[] = shares.map((s) => ({
    entryType: "LENDER_PAYABLE_CREATED",
    amount: s.amount,
    debit: controlAllocation(row.mortgage_id),
    credit: { family: "LENDER_PAYABLE", mortgageId: row.mortgage_id, lenderId: s.lenderId },
    idempotencyKey: idempotencyKeys.lenderPayableCreated(row.id, s.lenderId, allocation),
    mortgageId: row.mortgage_id,
    obligationId: row.id,
    lenderId: s.lenderId,
    metadata: { allocation, ownershipUnits: s.ownershipUnits.toString(), totalUnits: s.totalUnits.toString() },
    channel: "dispersal",
  }));
  if (fee > 0n) {
    postings.push({
      entryType: "SERVICING_FEE_RECOGNIZED",
      amount: fee,
      debit: controlAllocation(row.mortgage_id),
      credit: { family: "SERVICING_REVENUE", mortgageId: row.mortgage_id },
      idempotencyKey: idempotencyKeys.servicingFeeRecognized(row.id, allocation),
      mortgageId: row.mortgage_id,
      obligationId: row.id,
      metadata: { allocation },
      channel: "dispersal",
    });
  }
  return postings;
}

/** Each planned obligation's live entries and fee after the writes (one statement for the batch). */
async function readDispersals(tx: Tx, planned: readonly Planned[]): Promise<Map<string, DispersalResult>> {
  const results = new Map<string, DispersalResult>();
  if (planned.length === 0) return results;
  const ids = planned.map((p) => p.row.id);
  const rows = await tx.execute<{ id: string; obligation_id: string; kind: "payable" | "fee"; lender_id: string | null; amount: bigint; ownership_units: bigint | null; total_units: bigint | null; allocation: number }>(sql`
    select d.id::text, d.obligation_id::text, 'payable' as kind, d.lender_id::text, d.amount, d.ownership_units, d.total_units, d.allocation
      from dispersal_entries d where d.obligation_id in (${idList(ids)}) and d.status <> 'reversed'
    union all
    select f.id::text, f.obligation_id::text, 'fee', null, f.amount, null, null, f.allocation
      from servicing_fee_entries f where f.obligation_id in (${idList(ids)}) and f.status <> 'reversed'
    order by 2, 3, 4, 8`);
  for (const { row, plan } of planned) {
    const own = rows.filter((r) => r.obligation_id === row.id);
    results.set(row.id, {
      obligationId: row.id,
      mortgageId: row.mortgage_id,
      settledAmount: centsFromNumeric(row.net_cash),
      fee: own.filter((r) => r.kind === "fee").reduce((sum, r) => sum + BigInt(r.amount), 0n),
      entries: own
        .filter((r) => r.kind === "payable")
        .map((r) => ({ id: r.id, lenderId: r.lender_id!, amount: BigInt(r.amount), ownershipUnits: BigInt(r.ownership_units ?? 0n), totalUnits: BigInt(r.total_units ?? 0n), allocation: Number(r.allocation) })),
      replayed: plan.reverse.length === 0 && plan.restore.length === 0 && plan.markReversed.length === 0 && plan.allocate === null,
      allocation: plan.allocate?.allocation ?? null,
      reversed: plan.reverse.length,
      restored: plan.restore.length,
      shortfall: plan.shortfall,
    });
  }
  return results;
}
