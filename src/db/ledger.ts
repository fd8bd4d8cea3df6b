// The cash ledger: the one posting function (DESIGN.md §2 posting rules applied in SQL, inside the
// caller's transaction) and the accounts' balances. Postings are batched: one call posts every entry
// of one unit of money work in three round trips, however many entries it holds.
import { sql } from "drizzle-orm";
import {
  accountBalance,
  assertFamilyRule,
  assertPositiveAmount,
  normalizeAccount,
  sameAccount,
  skipsBalanceCheck,
  type AccountFamily,
  type AccountRef,
  type EntryType,
} from "../domain/ledgerRules.js";
import { AmountOutOfRangeError, IdempotencyConflictError, InfrastructureError, InsufficientBalanceError, LedgerRuleError } from "../domain/errors.js";
import { postgresErrorCode, type Executor, type Tx } from "./client.js";
import { SpanKind } from "@opentelemetry/api";
import { withSpan } from "../telemetry.js";

export interface PostingRequest {
  entryType: EntryType;
  amount: bigint;
  debit: AccountRef;
  credit: AccountRef;
  idempotencyKey: string;
  /** YYYY-MM-DD; today (UTC) when omitted. */
  effectiveDate?: string;
  mortgageId?: string | null;
  obligationId?: string | null;
  lenderId?: string | null;
  reversesEntryId?: string | null;
  reason?: string | null;
  metadata?: Record<string, unknown> | null;
  actor?: string | null;
  channel?: string | null;
}

export interface PostedEntry {
  id: string;
  sequence: bigint;
  entryType: EntryType;
  amount: bigint;
  debitAccountId: string;
  creditAccountId: string;
  idempotencyKey: string;
  /** True when the key had been posted before and this call changed nothing. */
  replayed: boolean;
}

export interface Account extends Required<AccountRef> {
  id: string;
  cumulativeDebits: bigint;
  cumulativeCredits: bigint;
  balance: bigint;
}

interface StoredEntryRow extends Record<string, unknown> {
  id: string;
  sequence: bigint;
  entry_type: EntryType;
  amount: bigint;
  debit_account_id: string;
  credit_account_id: string;
  idempotency_key: string;
  debit: AccountRef;
  credit: AccountRef;
}

export function today(): string {
  return new Date().toISOString().slice(0, 10);
}

export async function postEntry(tx: Tx, request: PostingRequest): Promise<PostedEntry> {
  const [posted] = await postEntries(tx, [request]);
  return posted!;
}

/**
 * Posts every request in the caller's transaction: validates each against the ledger rules,
 * replays keys already posted (a different payload under a key is an error), moves the accounts'
 * cumulative totals and refuses a result that leaves a non-exempt account negative. Any error
 * leaves the transaction to be rolled back by the caller: nothing is half-posted.
 */
export async function postEntries(tx: Tx, requests: readonly PostingRequest[]): Promise<PostedEntry[]> {
  if (requests.length === 0) return [];
  const entryTypes = [...new Set(requests.map((r) => r.entryType))].sort();
  return withSpan("ledger postings", { "ledger.entries": requests.length, "ledger.entry_types": entryTypes }, () => postEntriesNow(tx, requests), SpanKind.INTERNAL);
}

async function postEntriesNow(tx: Tx, requests: readonly PostingRequest[]): Promise<PostedEntry[]> {
  const keys = new Set<string>();
  for (const r of requests) {
    assertPositiveAmount(r.amount);
    if (typeof r.idempotencyKey !== "string" || r.idempotencyKey.length === 0 || r.idempotencyKey.length > 200) {
      throw new LedgerRuleError("idempotency key must be a non-empty string of at most 200 characters");
    }
    if (keys.has(r.idempotencyKey)) throw new LedgerRuleError(`idempotency key ${r.idempotencyKey} appears twice in one posting`);
    keys.add(r.idempotencyKey);
    if (r.entryType !== "REVERSAL") assertFamilyRule(r.entryType, r.debit, r.credit);
    if (r.effectiveDate !== undefined && !/^\d{4}-\d{2}-\d{2}$/.test(r.effectiveDate)) {
      throw new LedgerRuleError(`effective date must be YYYY-MM-DD, got ${r.effectiveDate}`);
    }
  }

  const stored = await loadEntries(tx, [...keys], requests.flatMap((r) => (r.reversesEntryId ? [r.reversesEntryId] : [])));
  const byKey = new Map(stored.map((row) => [row.idempotency_key, row]));
  const byId = new Map(stored.map((row) => [row.id, row]));

  const fresh: PostingRequest[] = [];
  for (const r of requests) {
    if (r.entryType === "REVERSAL") {
      const reversed = r.reversesEntryId ? byId.get(r.reversesEntryId) : undefined;
      if (!reversed) throw new LedgerRuleError(`REVERSAL names entry ${r.reversesEntryId ?? "(none)"}, which does not exist`);
      if (reversed.entry_type === "REVERSAL") throw new LedgerRuleError("a REVERSAL cannot itself be reversed");
      assertFamilyRule("REVERSAL", r.debit, r.credit, { debit: reversed.debit, credit: reversed.credit });
      if (r.amount !== reversed.amount) throw new LedgerRuleError(`a REVERSAL moves the reversed amount ${reversed.amount}, not ${r.amount}`);
    }
    const existing = byKey.get(r.idempotencyKey);
    if (existing) assertSamePayload(r, existing);
    else fresh.push(r);
  }

  let accounts = new Map<string, Account>();
  let inserted = new Map<string, StoredEntryRow>();
  try {
    if (fresh.length > 0) accounts = await moveAccountTotals(tx, fresh);
    if (fresh.length > 0) inserted = await insertEntries(tx, fresh, accounts);
  } catch (error) {
    // 22003: a cumulative total past bigint. A domain error, so the obligation is escalated and named.
    if (postgresErrorCode(error) === "22003") {
      throw new AmountOutOfRangeError(fresh.map((r) => `${r.entryType} of ${r.amount}`).slice(0, 3).join(", "));
    }
    throw error;
  }

  return requests.map((r) => {
    const row = inserted.get(r.idempotencyKey) ?? byKey.get(r.idempotencyKey)!;
    return {
      id: row.id,
      sequence: BigInt(row.sequence),
      entryType: row.entry_type,
      amount: BigInt(row.amount),
      debitAccountId: row.debit_account_id,
      creditAccountId: row.credit_account_id,
      idempotencyKey: row.idempotency_key,
      replayed: !inserted.has(r.idempotencyKey),
    };
  });
}

async function loadEntries(tx: Tx, keys: string[], ids: string[]): Promise<StoredEntryRow[]> {
  // One index probe per key or id (LATERAL … LIMIT 1 cannot be turned into a join), whatever the
  // planner estimates: a plain `key in (…) or id in (…)`, or a join the planner may run as a hash
  // join, reads the whole journal (and the accounts) on every posting once the tables are big
  // enough to matter and small enough to look cheap to scan.
  const rows = await tx.execute<StoredEntryRow>(sql`
    select e.id, e.sequence, e.entry_type, e.amount, e.debit_account_id, e.credit_account_id, e.idempotency_key,
           json_build_object('family', d.family, 'subaccount', d.subaccount, 'mortgageId', d.mortgage_id,
                             'obligationId', d.obligation_id, 'lenderId', d.lender_id) as debit,
           json_build_object('family', c.family, 'subaccount', c.subaccount, 'mortgageId', c.mortgage_id,
                             'obligationId', c.obligation_id, 'lenderId', c.lender_id) as credit
      from (select j.id, j.sequence, j.entry_type, j.amount, j.debit_account_id, j.credit_account_id, j.idempotency_key
              from jsonb_array_elements_text(${JSON.stringify(keys)}::jsonb) as k(key)
              cross join lateral (select * from cash_journal_entries where idempotency_key = k.key limit 1) j
            union
            select j.id, j.sequence, j.entry_type, j.amount, j.debit_account_id, j.credit_account_id, j.idempotency_key
              from jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb) as r(id)
              cross join lateral (select * from cash_journal_entries where id = r.id::uuid limit 1) j) e
      cross join lateral (select family, subaccount, mortgage_id, obligation_id, lender_id
                            from cash_accounts where id = e.debit_account_id limit 1) d
      cross join lateral (select family, subaccount, mortgage_id, obligation_id, lender_id
                            from cash_accounts where id = e.credit_account_id limit 1) c`);
  return rows.map((row) => ({ ...row, amount: BigInt(row.amount), sequence: BigInt(row.sequence) }));
}

function assertSamePayload(request: PostingRequest, stored: StoredEntryRow): void {
  const differences: string[] = [];
  if (request.entryType !== stored.entry_type) differences.push(`entry type ${stored.entry_type} ≠ ${request.entryType}`);
  if (request.amount !== stored.amount) differences.push(`amount ${stored.amount} ≠ ${request.amount}`);
  if (!sameAccount(normalizeAccount(request.debit), stored.debit)) differences.push("debit account differs");
  if (!sameAccount(normalizeAccount(request.credit), stored.credit)) differences.push("credit account differs");
  if (differences.length > 0) throw new IdempotencyConflictError(request.idempotencyKey, differences.join(", "));
}

function accountKey(a: Required<AccountRef>): string {
  return [a.family, a.subaccount ?? "", a.mortgageId ?? "", a.obligationId ?? "", a.lenderId ?? ""].join("|");
}

/**
 * Get-or-create every account the postings touch and move its cumulative totals, in one upsert.
 * Rows are taken in a fixed order so that two transactions touching the same accounts cannot deadlock.
 */
async function moveAccountTotals(tx: Tx, requests: readonly PostingRequest[]): Promise<Map<string, Account>> {
  const deltas = new Map<string, { ref: Required<AccountRef>; debits: bigint; credits: bigint; checked: boolean }>();
  const touch = (ref: AccountRef, side: "debits" | "credits", amount: bigint, entryType: EntryType) => {
    const normalized = normalizeAccount(ref);
    const key = accountKey(normalized);
    const delta = deltas.get(key) ?? { ref: normalized, debits: 0n, credits: 0n, checked: false };
    delta[side] += amount;
    delta.checked ||= !skipsBalanceCheck(entryType, normalized.family);
    deltas.set(key, delta);
  };
  for (const r of requests) {
    touch(r.debit, "debits", r.amount, r.entryType);
    touch(r.credit, "credits", r.amount, r.entryType);
  }
  const ordered = [...deltas.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const payload = ordered.map(([, d]) => ({
    family: d.ref.family,
    subaccount: d.ref.subaccount,
    mortgage_id: d.ref.mortgageId,
    obligation_id: d.ref.obligationId,
    lender_id: d.ref.lenderId,
    debits: d.debits.toString(),
    credits: d.credits.toString(),
  }));
  const rows = await tx.execute<{
    id: string;
    family: AccountFamily;
    subaccount: "ACCRUAL" | "ALLOCATION" | null;
    mortgage_id: string | null;
    obligation_id: string | null;
    lender_id: string | null;
    cumulative_debits: bigint;
    cumulative_credits: bigint;
  }>(sql`
    insert into cash_accounts as a (family, subaccount, mortgage_id, obligation_id, lender_id, cumulative_debits, cumulative_credits)
    select family, subaccount, mortgage_id, obligation_id, lender_id, debits, credits
      from rows from (jsonb_to_recordset(${JSON.stringify(payload)}::jsonb)
           as (family text, subaccount text, mortgage_id uuid, obligation_id uuid, lender_id uuid, debits bigint, credits bigint))
           with ordinality as t(family, subaccount, mortgage_id, obligation_id, lender_id, debits, credits, n)
     order by n
    on conflict on constraint cash_accounts_dimensions_unique do update
       set cumulative_debits = a.cumulative_debits + excluded.cumulative_debits,
           cumulative_credits = a.cumulative_credits + excluded.cumulative_credits
    returning a.id, a.family, a.subaccount, a.mortgage_id, a.obligation_id, a.lender_id, a.cumulative_debits, a.cumulative_credits`);

  const accounts = new Map<string, Account>();
  for (const row of rows) {
    const account = toAccount(row);
    const key = accountKey(account);
    accounts.set(key, account);
    if (deltas.get(key)?.checked && account.balance < 0n) {
      throw new InsufficientBalanceError(
        `posting refused: ${account.family} account ${account.id} would have balance ${account.balance} (< 0)`,
      );
    }
  }
  if (accounts.size !== deltas.size) throw new Error(`ledger invariant: upserted ${accounts.size} of ${deltas.size} accounts`);
  return accounts;
}

async function insertEntries(tx: Tx, requests: readonly PostingRequest[], accounts: Map<string, Account>): Promise<Map<string, StoredEntryRow>> {
  const date = today();
  const payload = requests.map((r) => ({
    entry_type: r.entryType,
    effective_date: r.effectiveDate ?? date,
    amount: r.amount.toString(),
    debit_account_id: accounts.get(accountKey(normalizeAccount(r.debit)))!.id,
    credit_account_id: accounts.get(accountKey(normalizeAccount(r.credit)))!.id,
    idempotency_key: r.idempotencyKey,
    mortgage_id: r.mortgageId ?? null,
    obligation_id: r.obligationId ?? null,
    lender_id: r.lenderId ?? null,
    reverses_entry_id: r.reversesEntryId ?? null,
    reason: r.reason ?? null,
    metadata: r.metadata ?? null,
    actor: r.actor ?? null,
    channel: r.channel ?? null,
  }));
  const rows = await tx.execute<StoredEntryRow>(sql`
    insert into cash_journal_entries (entry_type, effective_date, amount, debit_account_id, credit_account_id, idempotency_key,
                                      mortgage_id, obligation_id, lender_id, reverses_entry_id, reason, metadata, actor, channel)
    select entry_type, effective_date, amount, debit_account_id, credit_account_id, idempotency_key,
           mortgage_id, obligation_id, lender_id, reverses_entry_id, reason, metadata, actor, channel
      from rows from (jsonb_to_recordset(${JSON.stringify(payload)}::jsonb)
           as (entry_type text, effective_date date, amount bigint, debit_account_id uuid, credit_account_id uuid,
               idempotency_key text, mortgage_id uuid, obligation_id uuid, lender_id uuid, reverses_entry_id uuid,
               reason text, metadata jsonb, actor text, channel text))
           with ordinality as t(entry_type, effective_date, amount, debit_account_id, credit_account_id, idempotency_key,
                                mortgage_id, obligation_id, lender_id, reverses_entry_id, reason, metadata, actor, channel, n)
     order by n
    on conflict (idempotency_key) do nothing
    returning id, sequence, entry_type, amount, debit_account_id, credit_account_id, idempotency_key`);
  if (rows.length !== requests.length) {
    // Another transaction posted one of these keys after we looked: our totals already moved, so the
    // whole transaction must roll back and be tried again (it will then replay).
    throw new InfrastructureError("concurrent posting of the same idempotency key; retry the transaction");
  }
  return new Map(rows.map((row) => [row.idempotency_key, row]));
}

function toAccount(row: {
  id: string;
  family: AccountFamily;
  subaccount: "ACCRUAL" | "ALLOCATION" | null;
  mortgage_id: string | null;
  obligation_id: string | null;
  lender_id: string | null;
  cumulative_debits: bigint;
  cumulative_credits: bigint;
}): Account {
  const debits = BigInt(row.cumulative_debits);
  const credits = BigInt(row.cumulative_credits);
  return {
    id: row.id,
    family: row.family,
    subaccount: row.subaccount,
    mortgageId: row.mortgage_id,
    obligationId: row.obligation_id,
    lenderId: row.lender_id,
    cumulativeDebits: debits,
    cumulativeCredits: credits,
    balance: accountBalance(row.family, debits, credits),
  };
}

/** Equality on every dimension, written so that the unique index serves it (IS NULL is indexable, IS NOT DISTINCT FROM is not). */
function sameDimensions(a: Required<AccountRef>) {
  const eq = (column: string, value: string | null, cast = "") =>
    value === null ? sql.raw(`${column} is null`) : sql`${sql.raw(column)} = ${value}${sql.raw(cast)}`;
  return sql.join(
    [eq("family", a.family), eq("subaccount", a.subaccount), eq("mortgage_id", a.mortgageId, "::uuid"),
     eq("obligation_id", a.obligationId, "::uuid"), eq("lender_id", a.lenderId, "::uuid")],
    sql` and `,
  );
}

/** Balances of the accounts matching a family and some dimensions (for checks and the API). */
export async function findAccount(db: Executor, ref: AccountRef): Promise<Account | undefined> {
  const a = normalizeAccount(ref);
  const rows = await db.execute<Parameters<typeof toAccount>[0]>(sql`
    select id, family, subaccount, mortgage_id, obligation_id, lender_id, cumulative_debits, cumulative_credits
      from cash_accounts
     where ${sameDimensions(a)}`);
  return rows[0] ? toAccount(rows[0]) : undefined;
}
