// The allocation rule (DESIGN.md §3): the journal is the truth; a dispersal posts the difference
// between what the net settled cash calls for and what the journal already allocates. Pure: the
// db/ transaction reads the journal and the entries, this decides what to write.
import { DomainError, NoActivePositionsError, ObligationNotSettledError } from "./errors.js";
import { servicingFeeForPeriod, type FeeInput } from "./servicingFee.js";
import { splitProRata, type Position, type Share } from "./shares.js";

export type EntryStatus = "pending" | "paid" | "reversed";

/** One LENDER_PAYABLE_CREATED (`payable`) or SERVICING_FEE_RECOGNIZED (`fee`) posting of the obligation. */
export interface AllocationPosting {
  postingId: string;
  kind: "payable" | "fee";
  /** The payable's lender; null for the fee. */
  lenderId: string | null;
  /** Which allocation posted it (journals of before carry no number: allocation 1). */
  allocation: number;
  amount: bigint;
  /** The posting's own mortgage (a reversal moves the same accounts, wherever the obligation is filed now). */
  mortgageId: string;
  /** A REVERSAL of it exists. */
  reversed: boolean;
}

/** One row of the projection: a dispersal entry (`payable`) or a servicing fee entry (`fee`). */
export interface ProjectionEntry {
  entryId: string;
  kind: "payable" | "fee";
  lenderId: string | null;
  allocation: number;
  amount: bigint;
  status: EntryStatus;
}

export interface AllocationInput {
  obligationId: string;
  mortgageId: string;
  status: string;
  /** Net settled cash (db/obligationAmounts.ts: CASH_RECEIVED − their REVERSALs, else the amount). */
  netCash: bigint;
  postings: readonly AllocationPosting[];
  entries: readonly ProjectionEntry[];
  fee: Omit<FeeInput, "settledAmount">;
  positions: readonly Position[];
}

export interface NewAllocation {
  allocation: number;
  fee: bigint;
  shares: Share[];
}

export interface AllocationPlan {
  /** Postings to reverse (their entries become `reversed`): a pending allocation that the cash no longer covers. */
  reverse: AllocationPosting[];
  /** Entries the journal has and the projection lost (deleted by another system): written again, audited. */
  restore: AllocationPosting[];
  /** Entries still `pending` whose posting was reversed: marked `reversed`. */
  markReversed: ProjectionEntry[];
  allocate: NewAllocation | null;
  /**
   * The remainder that could not be allocated because nobody holds units (allocate is then null).
   * The rest of the plan (reversals, restores) is written all the same: undoing an allocation needs
   * no positions. The caller fails the obligation with `error` (retryable): the round escalates
   * with `amount` (net cash − allocated) in SUSPENSE.
   */
  unallocatable: { amount: bigint; error: NoActivePositionsError } | null;
  /** Cents allocated to entries already paid that the net cash no longer covers (money at risk). */
  shortfall: bigint;
  /** What the journal allocates once the plan is posted. */
  allocatedAfter: bigint;
}

/** The entries disagree with the journal in a way a restore cannot mend (an amount or lender edited, an extra row). */
export class EntriesDisagreeWithJournalError extends DomainError {
  readonly code = "ENTRIES_DISAGREE_WITH_JOURNAL";
  readonly retryable = true;
  constructor(readonly obligationId: string, readonly findings: readonly string[]) {
    super(`dispersal entries of obligation ${obligationId} disagree with the journal: ${findings.slice(0, 5).join("; ")}`);
  }
}

const keyOf = (p: { kind: string; lenderId: string | null; allocation: number }) => `${p.kind}|${p.lenderId ?? ""}|${p.allocation}`;

/**
 * Compares the projection with the journal. Entries the journal has and the projection lacks are
 * restored; anything else that disagrees stops the dispersal (never post again over it).
 */
function checkProjection(input: AllocationInput): Pick<AllocationPlan, "restore" | "markReversed"> {
  const entries = new Map(input.entries.map((e) => [keyOf(e), e]));
  const journalKeys = new Set<string>();
  const restore: AllocationPosting[] = [];
  const markReversed: ProjectionEntry[] = [];
  const findings: string[] = [];
  for (const posting of input.postings) {
    const key = keyOf(posting);
    journalKeys.add(key);
    const entry = entries.get(key);
    const what = posting.kind === "fee" ? `fee of allocation ${posting.allocation}` : `lender ${posting.lenderId} allocation ${posting.allocation}`;
    if (posting.reversed) {
      if (entry?.status === "pending") markReversed.push(entry);
      else if (entry?.status === "paid") findings.push(`${what}: entry paid, its posting reversed`);
      continue;
    }
    if (!entry) restore.push(posting);
    else if (entry.status === "reversed") findings.push(`${what}: entry reversed, its posting not`);
    else if (entry.amount !== posting.amount) findings.push(`${what}: entry ${entry.amount}, journal ${posting.amount}`);
  }
  for (const entry of input.entries) {
    if (!journalKeys.has(keyOf(entry))) {
      findings.push(`${entry.kind === "fee" ? "fee" : `lender ${entry.lenderId}`} allocation ${entry.allocation}: entry of ${entry.amount} has no posting`);
    }
  }
  if (findings.length > 0) throw new EntriesDisagreeWithJournalError(input.obligationId, findings);
  return { restore, markReversed };
}

const sum = (values: readonly AllocationPosting[]) => values.reduce((total, p) => total + p.amount, 0n);

/**
 * §3 step 3 for one obligation, its row locked: what to reverse, restore and allocate so that the
 * journal allocates exactly the net settled cash (or, when paid entries exceed it, the shortfall).
 * Throws ObligationNotSettledError when there is nothing to do for an obligation that is not settled.
 * Cash to split with nobody holding units is not an exception: what can be done (reverse, restore)
 * is planned, and the remainder is returned as `unallocatable`.
 */
export function planAllocation(input: AllocationInput): AllocationPlan {
  const checked = checkProjection(input);
  const { markReversed } = checked;
  let { restore } = checked;
  const live = input.postings.filter((p) => !p.reversed);
  const allocated = sum(live);
  const paidKeys = new Set(input.entries.filter((e) => e.status === "paid").map(keyOf));
  const pending = live.filter((p) => !paidKeys.has(keyOf(p)));
  const paid = live.filter((p) => paidKeys.has(keyOf(p)));
  const settled = input.status === "settled";
  const netCash = input.netCash > 0n ? input.netCash : 0n;

  if (!settled && (allocated === 0n || netCash >= allocated)) throw new ObligationNotSettledError(input.obligationId, input.status);
  const delta = netCash - allocated;
  if (delta === 0n) return { reverse: [], restore, markReversed, allocate: null, unallocatable: null, shortfall: 0n, allocatedAfter: allocated };

  let reverse: AllocationPosting[] = [];
  let allocatedBefore = allocated;
  let feeBefore = sum(live.filter((p) => p.kind === "fee"));
  if (delta < 0n) {
    // Cash returned: every pending allocation goes; what paid entries hold stays (a shortfall if uncovered).
    reverse = pending;
    allocatedBefore = sum(paid);
    feeBefore = sum(paid.filter((p) => p.kind === "fee"));
  }
  // A lost entry whose posting is being reversed needs no projection: a reversed posting may have none.
  const reversing = new Set(reverse);
  restore = restore.filter((p) => !reversing.has(p));
  const remaining = netCash - allocatedBefore;
  if (!settled || remaining <= 0n) {
    // Not settled: nothing new is allocated until it is settled again (its cash stays in TRUST_CASH).
    return { reverse, restore, markReversed, allocate: null, unallocatable: null, shortfall: remaining < 0n ? -remaining : 0n, allocatedAfter: allocatedBefore };
  }
  const feeDue = servicingFeeForPeriod({ ...input.fee, settledAmount: netCash });
  const feeUnpaid = feeDue > feeBefore ? feeDue - feeBefore : 0n;
  const fee = feeUnpaid < remaining ? feeUnpaid : remaining;
  if (remaining - fee > 0n && !input.positions.some((p) => p.units > 0n)) {
    // Only the new allocation needs positions: the reversals above are planned all the same, and
    // the whole remainder (fee included: one allocation, not half of one) waits for positions.
    const error = new NoActivePositionsError(input.mortgageId);
    return { reverse, restore, markReversed, allocate: null, unallocatable: { amount: remaining, error }, shortfall: 0n, allocatedAfter: allocatedBefore };
  }
  const shares = remaining - fee > 0n ? splitProRata(input.mortgageId, remaining - fee, input.positions) : [];
  const allocation = 1 + input.postings.reduce((n, p) => (p.allocation > n ? p.allocation : n), 0);
  return { reverse, restore, markReversed, allocate: { allocation, fee, shares }, unallocatable: null, shortfall: 0n, allocatedAfter: allocatedBefore + remaining };
}
