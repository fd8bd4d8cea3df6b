// The cash ledger's rules as data: families, entry types and their debit/credit families, which
// postings skip the balance check, and the idempotency keys (DESIGN.md §2, a contract).
import { LedgerRuleError } from "./errors.js";

export const ACCOUNT_FAMILIES = [
  "BORROWER_RECEIVABLE",
  "TRUST_CASH",
  "CONTROL",
  "LENDER_PAYABLE",
  "SERVICING_REVENUE",
  "SUSPENSE",
] as const;
export type AccountFamily = (typeof ACCOUNT_FAMILIES)[number];

export const ENTRY_TYPES = [
  "OBLIGATION_ACCRUED",
  "CASH_RECEIVED",
  "LENDER_PAYABLE_CREATED",
  "SERVICING_FEE_RECOGNIZED",
  "SUSPENSE_ESCALATED",
  "REVERSAL",
] as const;
export type EntryType = (typeof ENTRY_TYPES)[number];

/** Which account an entry touches: a family plus the dimensions that make the account unique. */
export interface AccountRef {
  family: AccountFamily;
  subaccount?: "ACCRUAL" | "ALLOCATION" | null;
  mortgageId?: string | null;
  obligationId?: string | null;
  lenderId?: string | null;
}

interface AccountShape {
  family: AccountFamily;
  subaccount?: "ACCRUAL" | "ALLOCATION";
}

const RULES: Record<Exclude<EntryType, "REVERSAL">, { debit: AccountShape; credit: AccountShape }> = {
  OBLIGATION_ACCRUED: { debit: { family: "BORROWER_RECEIVABLE" }, credit: { family: "CONTROL", subaccount: "ACCRUAL" } },
  CASH_RECEIVED: { debit: { family: "TRUST_CASH" }, credit: { family: "BORROWER_RECEIVABLE" } },
  LENDER_PAYABLE_CREATED: { debit: { family: "CONTROL", subaccount: "ALLOCATION" }, credit: { family: "LENDER_PAYABLE" } },
  SERVICING_FEE_RECOGNIZED: { debit: { family: "CONTROL", subaccount: "ALLOCATION" }, credit: { family: "SERVICING_REVENUE" } },
  SUSPENSE_ESCALATED: { debit: { family: "SUSPENSE" }, credit: { family: "BORROWER_RECEIVABLE" } },
};

/** The dimensions each family's accounts are kept per (DESIGN.md §2). */
const FAMILY_DIMENSIONS: Record<AccountFamily, ReadonlyArray<"mortgageId" | "obligationId" | "lenderId">> = {
  BORROWER_RECEIVABLE: ["obligationId"],
  TRUST_CASH: ["mortgageId"],
  CONTROL: ["mortgageId"],
  LENDER_PAYABLE: ["mortgageId", "lenderId"],
  SERVICING_REVENUE: ["mortgageId"],
  SUSPENSE: ["mortgageId", "obligationId"],
};

const CREDIT_NORMAL: ReadonlySet<AccountFamily> = new Set(["LENDER_PAYABLE", "SERVICING_REVENUE"]);
const BALANCE_CHECK_EXEMPT_FAMILIES: ReadonlySet<AccountFamily> = new Set(["CONTROL", "BORROWER_RECEIVABLE"]);
const BALANCE_CHECK_EXEMPT_TYPES: ReadonlySet<EntryType> = new Set(["SUSPENSE_ESCALATED", "REVERSAL"]);

export function isCreditNormal(family: AccountFamily): boolean {
  return CREDIT_NORMAL.has(family);
}

/** Balance in the family's normal direction: debits − credits, or credits − debits for credit-normal families. */
export function accountBalance(family: AccountFamily, debits: bigint, credits: bigint): bigint {
  return isCreditNormal(family) ? credits - debits : debits - credits;
}

/** Whether a posting of this type may leave this account negative. */
export function skipsBalanceCheck(entryType: EntryType, family: AccountFamily): boolean {
  return BALANCE_CHECK_EXEMPT_TYPES.has(entryType) || BALANCE_CHECK_EXEMPT_FAMILIES.has(family);
}

/** Throws LedgerRuleError unless the accounts fit the entry type. A REVERSAL must mirror the entry it reverses. */
export function assertFamilyRule(
  entryType: EntryType,
  debit: AccountRef,
  credit: AccountRef,
  reversed?: { debit: AccountRef; credit: AccountRef },
): void {
  if (!(ENTRY_TYPES as readonly string[]).includes(entryType)) throw new LedgerRuleError(`unknown entry type ${entryType}`);
  assertAccountShape(debit);
  assertAccountShape(credit);
  if (entryType === "REVERSAL") {
    if (!reversed) throw new LedgerRuleError("a REVERSAL must name the entry it reverses");
    if (!sameAccount(debit, reversed.credit) || !sameAccount(credit, reversed.debit)) {
      throw new LedgerRuleError("a REVERSAL debits the reversed entry's credit account and credits its debit account");
    }
    return;
  }
  const rule = RULES[entryType];
  if (!matches(debit, rule.debit) || !matches(credit, rule.credit)) {
    throw new LedgerRuleError(
      `${entryType} must debit ${describe(rule.debit)} and credit ${describe(rule.credit)}, not ${describe(debit)} → ${describe(credit)}`,
    );
  }
}

export function assertPositiveAmount(amount: unknown): asserts amount is bigint {
  if (typeof amount !== "bigint") throw new LedgerRuleError(`amount must be a bigint number of cents, got ${typeof amount}`);
  if (amount <= 0n) throw new LedgerRuleError(`amount must be a positive number of cents, got ${amount}`);
}

function assertAccountShape(account: AccountRef): void {
  if (!(ACCOUNT_FAMILIES as readonly string[]).includes(account.family)) {
    throw new LedgerRuleError(`unknown account family ${String(account.family)}`);
  }
  for (const dimension of FAMILY_DIMENSIONS[account.family]) {
    if (!account[dimension]) throw new LedgerRuleError(`${account.family} accounts are kept per ${dimension}: it is missing`);
  }
  if ((account.family === "CONTROL") !== Boolean(account.subaccount)) {
    throw new LedgerRuleError(`only CONTROL accounts have a subaccount (ACCRUAL or ALLOCATION); got ${describe(account)}`);
  }
}

function matches(account: AccountRef, shape: AccountShape): boolean {
  return account.family === shape.family && (account.subaccount ?? undefined) === shape.subaccount;
}

export function sameAccount(a: AccountRef, b: AccountRef): boolean {
  return (
    a.family === b.family &&
    (a.subaccount ?? null) === (b.subaccount ?? null) &&
    (a.mortgageId ?? null) === (b.mortgageId ?? null) &&
    (a.obligationId ?? null) === (b.obligationId ?? null) &&
    (a.lenderId ?? null) === (b.lenderId ?? null)
  );
}

function describe(account: AccountShape | AccountRef): string {
  return account.subaccount ? `${account.family}:${account.subaccount}` : account.family;
}

/** Only the dimensions the family is kept per, so that the same account is always found again. */
export function normalizeAccount(account: AccountRef): Required<AccountRef> {
  const dims = FAMILY_DIMENSIONS[account.family];
  return {
    family: account.family,
    subaccount: account.family === "CONTROL" ? (account.subaccount ?? null) : null,
    mortgageId: dims.includes("mortgageId") ? (account.mortgageId ?? null) : null,
    obligationId: dims.includes("obligationId") ? (account.obligationId ?? null) : null,
    lenderId: dims.includes("lenderId") ? (account.lenderId ?? null) : null,
  };
}

export const idempotencyKeys = {
  obligationAccrued: (obligationId: string) => `cash-ledger:obligation-accrued:${obligationId}`,
  /**
   * A payment reference is unique per service account and compared ignoring case (DESIGN.md §5).
   * Journals of before used `…:<reference>` as sent, one namespace for every account
   * (cashReceivedBefore): still read, for replays and returns of those payments.
   */
  cashReceived: (account: string, paymentRef: string) => `cash-ledger:cash-received:${account}:${paymentRef.toLowerCase()}`,
  cashReceivedBefore: (paymentRef: string) => `cash-ledger:cash-received:${paymentRef}`,
  /** Keyed by the allocation (DESIGN.md §3): posted once whoever runs it. Journals of before used `…:<dispersal entry id>` (allocation 1). */
  lenderPayableCreated: (obligationId: string, lenderId: string, allocation: number) =>
    `cash-ledger:lender-payable-created:${obligationId}:${lenderId}:${allocation}`,
  /** Journals of before used `…:<obligation>` (allocation 1). */
  servicingFeeRecognized: (obligationId: string, allocation: number) => `cash-ledger:servicing-fee-recognized:${obligationId}:${allocation}`,
  /** The first escalation of an obligation parks what is unallocated under this key. */
  suspenseEscalated: (obligationId: string) => `suspense-escalation:${obligationId}`,
  /** The n-th SUSPENSE_ESCALATED posting of the obligation (n = 2, 3, …): keyed by sequence, never by an amount. */
  suspenseTopUp: (obligationId: string, n: number) => `suspense-escalation:${obligationId}:${n}`,
  reversal: (reversedEntryId: string) => `cash-ledger:reversal:${reversedEntryId}`,
};

/**
 * What to post so that an escalated obligation's SUSPENSE equals its net settled cash − what the
 * journal allocates (the target; DESIGN.md §4):
 * - `park`: nothing was ever parked: the target, under `suspense-escalation:<obligation>`;
 * - `top-up`: the target rose (late cash): the difference, under `suspense-escalation:<obligation>:<n>`;
 * - `restate`: the target fell below what SUSPENSE holds (a payment returned, an amount corrected). A
 *   posting cannot be negative and a REVERSAL moves a whole entry, so every suspense posting still
 *   standing is reversed and the target parked again (when it is above 0) under the next sequence key;
 * - `none`: SUSPENSE already holds the target.
 * `postedBefore` is how many SUSPENSE_ESCALATED postings the obligation has ever had: the next one is
 * number postedBefore + 1, so no key is ever reused whatever the amounts do.
 */
export type SuspensePlan =
  | { kind: "none" }
  | { kind: "park" | "top-up"; amount: bigint; idempotencyKey: string }
  | { kind: "restate"; amount: bigint; idempotencyKey: string | null };

export function planSuspense(obligationId: string, state: { target: bigint; suspenseBalance: bigint; postedBefore: number }): SuspensePlan {
  const target = state.target > 0n ? state.target : 0n;
  const { suspenseBalance, postedBefore } = state;
  if (suspenseBalance === target) return { kind: "none" };
  if (postedBefore === 0) {
    if (suspenseBalance !== 0n) throw new LedgerRuleError(`SUSPENSE of ${obligationId} holds ${suspenseBalance} with no suspense posting`);
    return { kind: "park", amount: target, idempotencyKey: idempotencyKeys.suspenseEscalated(obligationId) };
  }
  const next = idempotencyKeys.suspenseTopUp(obligationId, postedBefore + 1);
  if (suspenseBalance < target) return { kind: "top-up", amount: target - suspenseBalance, idempotencyKey: next };
  return { kind: "restate", amount: target, idempotencyKey: target > 0n ? next : null };
}
