import { describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { cp, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { randomBytes, randomUUID } from "node:crypto";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { sql } from "drizzle-orm";
import { findAccount, postEntries, postEntry, type PostingRequest } from "../../src/db/ledger.js";
import { MIGRATIONS_FOLDER, migrateDatabase } from "../../src/db/migrate.js";
import { IdempotencyConflictError, InfrastructureError, InsufficientBalanceError, LedgerRuleError } from "../../src/domain/errors.js";
import { idempotencyKeys, type AccountRef, type EntryType } from "../../src/domain/ledgerRules.js";
import { TEST_ADMIN_URL, databaseUrl } from "../helpers/env.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { testDb } from "../helpers/testDb.js";

const database = await testDb();
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const run = promisify(execFile);
const DRIZZLE_KIT = join(ROOT, "node_modules/.bin/drizzle-kit");

interface LedgerTotals {
  entries: bigint;
  accounts: bigint;
  debits: bigint;
  credits: bigint;
}

async function ledgerTotals(): Promise<LedgerTotals> {
  const [row] = await database.db.execute<{ entries: bigint; accounts: bigint; debits: bigint; credits: bigint }>(sql`
    select (select count(*) from cash_journal_entries) as entries,
           (select count(*) from cash_accounts) as accounts,
           (select coalesce(sum(cumulative_debits), 0) from cash_accounts)::bigint as debits,
           (select coalesce(sum(cumulative_credits), 0) from cash_accounts)::bigint as credits`);
  return { entries: BigInt(row!.entries), accounts: BigInt(row!.accounts), debits: BigInt(row!.debits), credits: BigInt(row!.credits) };
}

/** Posts in a transaction of its own and returns what it threw; the ledger must look untouched afterwards. */
async function refusedPosting(requests: PostingRequest[]): Promise<unknown> {
  const before = await ledgerTotals();
  const error = await database.db.transaction((tx) => postEntries(tx, requests)).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, "the posting should have been refused").toBeDefined();
  expect(await ledgerTotals()).toEqual(before);
  return error;
}

/** A due obligation (accrued, no cash yet) on a mortgage of its own, and the accounts a payment touches. */
async function givenDueObligation(options: { amount?: bigint; lenders?: number[] } = {}) {
  const given = await givenSettledObligation(database, { status: "due", amount: options.amount ?? 100_000n, lenders: options.lenders });
  const receivable: AccountRef = { family: "BORROWER_RECEIVABLE", obligationId: given.obligationId };
  const trustCash: AccountRef = { family: "TRUST_CASH", mortgageId: given.mortgageId };
  const cashReceived = (amount: bigint, paymentRef = randomUUID()): PostingRequest => ({
    entryType: "CASH_RECEIVED",
    amount,
    debit: trustCash,
    credit: receivable,
    idempotencyKey: idempotencyKeys.cashReceived("other-system", paymentRef),
    mortgageId: given.mortgageId,
    obligationId: given.obligationId,
  });
  return { ...given, receivable, trustCash, cashReceived };
}

async function balanceOf(ref: AccountRef): Promise<bigint | undefined> {
  return (await findAccount(database.db, ref))?.balance;
}

async function journalCount(where: { obligationId: string }): Promise<number> {
  const [row] = await database.db.execute<{ n: bigint }>(sql`
    select count(*) as n from cash_journal_entries where obligation_id = ${where.obligationId}::uuid`);
  return Number(row!.n);
}

describe("migrations", () => {
  it("apply to an empty database, create every table of the design, and apply again as a no-op", async () => {
    const name = `dispersal_test_fresh_${randomBytes(5).toString("hex")}`;
    const url = databaseUrl(name);
    const admin = postgres(TEST_ADMIN_URL, { max: 1, onnotice: () => {} });
    try {
      await migrateDatabase(url); // creates the database, then migrates it
      const fresh = postgres(url, { max: 1, onnotice: () => {} });
      try {
        const tables = await fresh<{ table_name: string }[]>`
          select table_name from information_schema.tables where table_schema = 'public' order by table_name`;
        expect(tables.map((t) => t.table_name)).toEqual([
          "audit_log",
          "cash_accounts",
          "cash_journal_entries",
          "dispersal_entries",
          "dispersal_healing_attempts",
          "ledger_changes",
          "lenders",
          "mortgage_positions",
          "mortgages",
          "obligations",
          "ops_policy",
          "reconciliation_runs",
          "requeue_requests",
          "servicing_fee_entries",
        ]);
        const triggers = await fresh<{ tgname: string }[]>`
          select tgname from pg_trigger where not tgisinternal order by tgname`;
        expect(triggers.map((t) => t.tgname)).toEqual([
          "audit_log_append_only",
          "cash_journal_entries_append_only",
          "cash_journal_entries_ledger_changes",
          "cash_journal_entries_mark_obligations",
          "dispersal_entries_ledger_changes_delete",
          "dispersal_entries_ledger_changes_insert",
          "dispersal_entries_ledger_changes_update",
          "dispersal_entries_mark_obligations_delete",
          "dispersal_entries_mark_obligations_edit",
          "dispersal_entries_mark_obligations_insert",
          "dispersal_healing_attempts_ledger_changes_delete",
          "dispersal_healing_attempts_ledger_changes_insert",
          "dispersal_healing_attempts_ledger_changes_update",
          "mortgage_positions_ledger_changes_delete",
          "mortgage_positions_ledger_changes_insert",
          "mortgage_positions_ledger_changes_update",
          "obligations_ledger_changes_insert",
          "obligations_ledger_changes_update",
          "obligations_notify_settled_insert",
          "obligations_notify_settled_update",
          "obligations_settle_when_paid",
          "servicing_fee_entries_ledger_changes_delete",
          "servicing_fee_entries_ledger_changes_insert",
          "servicing_fee_entries_ledger_changes_update",
          "servicing_fee_entries_mark_obligations_delete",
          "servicing_fee_entries_mark_obligations_edit",
        ]);
        const indexes = await fresh<{ indexname: string }[]>`select indexname from pg_indexes where schemaname = 'public'`;
        expect(indexes.map((i) => i.indexname)).toEqual(
          expect.arrayContaining([
            "obligations_healing_scan_idx",
            "cash_journal_entries_idempotency_key_unique",
            "dispersal_entries_obligation_lender_allocation_unique",
            "cash_accounts_dimensions_unique",
          ]),
        );
        const sqlFiles = (await readdir(MIGRATIONS_FOLDER)).filter((f) => f.endsWith(".sql"));
        const [applied] = await fresh<{ n: bigint }[]>`select count(*)::int as n from drizzle.__drizzle_migrations`;
        expect(Number(applied!.n)).toBe(sqlFiles.length);

        await migrateDatabase(url);
        const [again] = await fresh<{ n: bigint }[]>`select count(*)::int as n from drizzle.__drizzle_migrations`;
        expect(Number(again!.n)).toBe(sqlFiles.length);
      } finally {
        await fresh.end();
      }
    } finally {
      await admin.unsafe(`drop database if exists "${name}" with (force)`);
      await admin.end();
    }
  });

  it("match the Drizzle schema: drizzle-kit check passes and generate finds nothing to migrate", async () => {
    // generate into a copy of drizzle/, so that a difference could never leave a file in the real folder
    const scratch = await mkdtemp(join(tmpdir(), "dispersal-drizzle-"));
    try {
      const out = join(scratch, "drizzle");
      await cp(MIGRATIONS_FOLDER, out, { recursive: true });
      const before = (await readdir(out, { recursive: true })).sort();
      // drizzle-kit prefixes "./" to --out, so it has to be relative to the working directory
      const [check, generated] = await Promise.all([
        run(DRIZZLE_KIT, ["check"], { cwd: ROOT }),
        run(DRIZZLE_KIT, ["generate", "--dialect", "postgresql", "--schema", "./src/db/schema.ts", "--out", relative(ROOT, out)], { cwd: ROOT }),
      ]);
      expect(check.stdout + check.stderr).toMatch(/Everything's fine/);
      expect(generated.stdout + generated.stderr).toMatch(/No schema changes, nothing to migrate/);
      expect((await readdir(out, { recursive: true })).sort()).toEqual(before);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });
});

describe("postEntry rules", () => {
  it("refuses a zero, negative, fractional or non-bigint amount and writes nothing", async () => {
    const due = await givenDueObligation();
    for (const amount of [0n, -100n, 100, 1.5, "100"] as unknown as bigint[]) {
      const error = await refusedPosting([due.cashReceived(amount)]);
      expect(error).toBeInstanceOf(LedgerRuleError);
      expect((error as Error).message).toMatch(/amount must be a (positive|bigint)/);
    }
  });

  it("refuses a wrong pairing of families and names the rule", async () => {
    const due = await givenDueObligation();
    const error = await refusedPosting([
      { ...due.cashReceived(100n), debit: { family: "LENDER_PAYABLE", mortgageId: due.mortgageId, lenderId: due.lenderIds[0] } },
    ]);
    expect(error).toBeInstanceOf(LedgerRuleError);
    expect((error as Error).message).toContain("CASH_RECEIVED must debit TRUST_CASH and credit BORROWER_RECEIVABLE");
  });

  it("refuses an unknown entry type", async () => {
    const due = await givenDueObligation();
    const error = await refusedPosting([{ ...due.cashReceived(100n), entryType: "CASH_WITHDRAWN" as EntryType }]);
    expect(error).toBeInstanceOf(LedgerRuleError);
    expect((error as Error).message).toContain("unknown entry type CASH_WITHDRAWN");
  });

  it("refuses an account missing one of its family's dimensions", async () => {
    const due = await givenDueObligation();
    const error = await refusedPosting([{ ...due.cashReceived(100n), credit: { family: "BORROWER_RECEIVABLE" } }]);
    expect(error).toBeInstanceOf(LedgerRuleError);
    expect((error as Error).message).toContain("BORROWER_RECEIVABLE accounts are kept per obligationId");
  });

  it("refuses a CONTROL account without its subaccount", async () => {
    const due = await givenDueObligation();
    const error = await refusedPosting([
      {
        entryType: "LENDER_PAYABLE_CREATED",
        amount: 10n,
        debit: { family: "CONTROL", mortgageId: due.mortgageId },
        credit: { family: "LENDER_PAYABLE", mortgageId: due.mortgageId, lenderId: due.lenderIds[0] },
        idempotencyKey: idempotencyKeys.lenderPayableCreated(randomUUID(), randomUUID(), 1),
      },
    ]);
    expect(error).toBeInstanceOf(LedgerRuleError);
    expect((error as Error).message).toContain("subaccount");
  });

  it("refuses an empty idempotency key and a key twice in one batch", async () => {
    const due = await givenDueObligation();
    expect(await refusedPosting([{ ...due.cashReceived(10n), idempotencyKey: "" }])).toBeInstanceOf(LedgerRuleError);
    const posting = due.cashReceived(10n);
    const twice = await refusedPosting([posting, posting]);
    expect(twice).toBeInstanceOf(LedgerRuleError);
    expect((twice as Error).message).toContain("appears twice");
  });

  it("writes nothing of a batch when any posting in it breaks a rule", async () => {
    const due = await givenDueObligation();
    const error = await refusedPosting([due.cashReceived(60_000n), due.cashReceived(-1n)]);
    expect(error).toBeInstanceOf(LedgerRuleError);
    expect(await balanceOf(due.trustCash)).toBeUndefined();
  });

  it("rolls back the caller's other writes in the same transaction", async () => {
    const due = await givenDueObligation();
    await database.db
      .transaction(async (tx) => {
        await tx.execute(sql`update obligations set status = 'settled', settled_at = now() where id = ${due.obligationId}::uuid`);
        await postEntry(tx, due.cashReceived(0n));
      })
      .catch(() => undefined);
    const [row] = await database.db.execute<{ status: string }>(sql`select status from obligations where id = ${due.obligationId}::uuid`);
    expect(row!.status).toBe("due");
  });
});

describe("postEntry totals and idempotency", () => {
  it("moves both accounts' cumulative totals and keeps debit-normal and credit-normal balances", async () => {
    const due = await givenDueObligation({ amount: 100_000n, lenders: [10_000] });
    expect(await balanceOf(due.receivable)).toBe(100_000n); // accrued
    const before = await ledgerTotals();

    const posted = await database.db.transaction((tx) => postEntry(tx, due.cashReceived(60_000n)));
    expect(posted).toMatchObject({ entryType: "CASH_RECEIVED", amount: 60_000n, replayed: false });
    expect(await balanceOf(due.trustCash)).toBe(60_000n);
    expect(await balanceOf(due.receivable)).toBe(40_000n);
    await database.db.transaction((tx) => postEntry(tx, due.cashReceived(40_000n)));
    expect(await balanceOf(due.trustCash)).toBe(100_000n);
    expect(await balanceOf(due.receivable)).toBe(0n);

    const after = await ledgerTotals();
    expect(after.entries - before.entries).toBe(2n);
    expect(after.debits - before.debits).toBe(100_000n);
    expect(after.credits - before.credits).toBe(100_000n);

    const lender = { family: "LENDER_PAYABLE", mortgageId: due.mortgageId, lenderId: due.lenderIds[0]! } as const;
    await database.db.transaction((tx) =>
      postEntry(tx, {
        entryType: "LENDER_PAYABLE_CREATED",
        amount: 25_000n,
        debit: { family: "CONTROL", subaccount: "ALLOCATION", mortgageId: due.mortgageId },
        credit: lender,
        idempotencyKey: idempotencyKeys.lenderPayableCreated(randomUUID(), randomUUID(), 1),
      }),
    );
    const payable = await findAccount(database.db, lender);
    expect(payable).toMatchObject({ cumulativeDebits: 0n, cumulativeCredits: 25_000n, balance: 25_000n }); // credit-normal
    const allocation = await findAccount(database.db, { family: "CONTROL", subaccount: "ALLOCATION", mortgageId: due.mortgageId });
    expect(allocation).toMatchObject({ cumulativeDebits: 25_000n, cumulativeCredits: 0n, balance: 25_000n });
  });

  it("keeps every account's cumulative totals equal to the sum of its journal lines", async () => {
    const [mismatch] = await database.db.execute<{ n: bigint }>(sql`
      select count(*) as n from cash_accounts a
       where a.cumulative_debits <> coalesce((select sum(amount) from cash_journal_entries where debit_account_id = a.id), 0)
          or a.cumulative_credits <> coalesce((select sum(amount) from cash_journal_entries where credit_account_id = a.id), 0)`);
    expect(Number(mismatch!.n)).toBe(0);
  });

  it("replays the same key: returns the same entry with replayed=true and changes no total", async () => {
    const due = await givenDueObligation();
    const posting = due.cashReceived(70_000n);
    const first = await database.db.transaction((tx) => postEntry(tx, posting));
    const before = await ledgerTotals();
    const again = await database.db.transaction((tx) => postEntry(tx, posting));
    expect(again).toEqual({ ...first, replayed: true });
    expect(await ledgerTotals()).toEqual(before);
    expect(await balanceOf(due.trustCash)).toBe(70_000n);
  });

  it("replays a key inside a batch and posts only the new entries of it", async () => {
    const due = await givenDueObligation();
    const first = due.cashReceived(10_000n);
    await database.db.transaction((tx) => postEntry(tx, first));
    const results = await database.db.transaction((tx) => postEntries(tx, [first, due.cashReceived(5_000n)]));
    expect(results.map((r) => r.replayed)).toEqual([true, false]);
    expect(await balanceOf(due.trustCash)).toBe(15_000n);
  });

  it("refuses the same key with another amount (IdempotencyConflictError) and writes nothing", async () => {
    const due = await givenDueObligation();
    const posting = due.cashReceived(70_000n);
    await database.db.transaction((tx) => postEntry(tx, posting));
    const error = await refusedPosting([{ ...posting, amount: 70_001n }]);
    expect(error).toBeInstanceOf(IdempotencyConflictError);
    expect(error).toMatchObject({ code: "IDEMPOTENCY_CONFLICT", idempotencyKey: posting.idempotencyKey });
    expect((error as Error).message).toContain("amount 70000 ≠ 70001");
    expect(await balanceOf(due.trustCash)).toBe(70_000n);
  });

  it("refuses the same key on other accounts or another entry type", async () => {
    const due = await givenDueObligation();
    const other = await givenDueObligation();
    const posting = due.cashReceived(1_000n);
    await database.db.transaction((tx) => postEntry(tx, posting));
    const elsewhere = await refusedPosting([{ ...posting, debit: other.trustCash }]);
    expect(elsewhere).toBeInstanceOf(IdempotencyConflictError);
    expect((elsewhere as Error).message).toContain("debit account differs");
    const retyped = await refusedPosting([
      { ...posting, entryType: "SUSPENSE_ESCALATED", debit: { family: "SUSPENSE", mortgageId: due.mortgageId, obligationId: due.obligationId } },
    ]);
    expect(retyped).toBeInstanceOf(IdempotencyConflictError);
    expect((retyped as Error).message).toContain("entry type CASH_RECEIVED ≠ SUSPENSE_ESCALATED");
  });

  it("posts a key once when many transactions post it at the same time", async () => {
    const due = await givenDueObligation();
    const posting = due.cashReceived(12_345n);
    const outcomes = await Promise.allSettled(Array.from({ length: 4 }, () => database.db.transaction((tx) => postEntry(tx, posting))));
    const posted = outcomes.flatMap((o) => (o.status === "fulfilled" ? [o.value] : []));
    expect(posted.length).toBeGreaterThanOrEqual(1);
    expect(new Set(posted.map((p) => p.id)).size).toBe(1);
    // a loser of the race is told to retry (retryable), and its retry replays the winner's entry
    for (const outcome of outcomes) if (outcome.status === "rejected") expect(outcome.reason).toBeInstanceOf(InfrastructureError);
    const retried = await database.db.transaction((tx) => postEntry(tx, posting));
    expect(retried).toMatchObject({ id: posted[0]!.id, replayed: true });
    expect(await balanceOf(due.trustCash)).toBe(12_345n);
    expect(await journalCount({ obligationId: due.obligationId })).toBe(2); // accrual + this payment
  });
});

describe("balance check", () => {
  /** An account whose stored totals already leave it below zero (a state only a past defect could produce). */
  async function givenNegativeAccount(ref: AccountRef & { family: "TRUST_CASH" | "LENDER_PAYABLE" }, balance: bigint): Promise<void> {
    // TRUST_CASH is debit-normal (too many credits), LENDER_PAYABLE credit-normal (too many debits).
    const [debits, credits] = ref.family === "TRUST_CASH" ? [0n, -balance] : [-balance, 0n];
    await database.db.execute(sql`
      insert into cash_accounts (family, mortgage_id, lender_id, cumulative_debits, cumulative_credits)
      values (${ref.family}, ${ref.mortgageId!}::uuid, ${ref.lenderId ?? null}::uuid, ${debits.toString()}::bigint, ${credits.toString()}::bigint)`);
    expect(await balanceOf(ref)).toBe(balance);
  }

  it("refuses a posting that leaves trust cash negative (InsufficientBalanceError) and writes nothing", async () => {
    const due = await givenDueObligation();
    await givenNegativeAccount({ family: "TRUST_CASH", mortgageId: due.mortgageId }, -500n);
    const error = await refusedPosting([due.cashReceived(499n)]);
    expect(error).toBeInstanceOf(InsufficientBalanceError);
    expect(error).toMatchObject({ code: "INSUFFICIENT_BALANCE" });
    expect((error as Error).message).toMatch(/TRUST_CASH account .* would have balance -1/);
    expect(await balanceOf(due.trustCash)).toBe(-500n);
    expect(await balanceOf(due.receivable)).toBe(100_000n);

    await database.db.transaction((tx) => postEntry(tx, due.cashReceived(500n)));
    expect(await balanceOf(due.trustCash)).toBe(0n); // exactly zero is allowed
  });

  it("refuses a posting that leaves a lender payable negative, counting it credit-normal", async () => {
    const due = await givenDueObligation();
    const lender = { family: "LENDER_PAYABLE", mortgageId: due.mortgageId, lenderId: due.lenderIds[0]! } as const;
    await givenNegativeAccount(lender, -300n);
    const payable = (amount: bigint): PostingRequest => ({
      entryType: "LENDER_PAYABLE_CREATED",
      amount,
      debit: { family: "CONTROL", subaccount: "ALLOCATION", mortgageId: due.mortgageId },
      credit: lender,
      idempotencyKey: idempotencyKeys.lenderPayableCreated(randomUUID(), randomUUID(), 1),
    });
    expect(await refusedPosting([payable(299n)])).toBeInstanceOf(InsufficientBalanceError);
    await database.db.transaction((tx) => postEntry(tx, payable(301n)));
    expect(await balanceOf(lender)).toBe(1n);
  });

  it("lets the exempt families go negative: CONTROL on accrual, BORROWER_RECEIVABLE on an overpayment", async () => {
    const due = await givenDueObligation({ amount: 100_000n });
    expect(await balanceOf({ family: "CONTROL", subaccount: "ACCRUAL", mortgageId: due.mortgageId })).toBe(-100_000n);
    await database.db.transaction((tx) => postEntry(tx, due.cashReceived(100_250n)));
    expect(await balanceOf(due.receivable)).toBe(-250n);
    expect(await balanceOf(due.trustCash)).toBe(100_250n);
  });
});

describe("suspense and reversal", () => {
  async function givenPaidObligation() {
    const due = await givenDueObligation({ amount: 80_000n });
    await database.db.transaction((tx) => postEntry(tx, due.cashReceived(80_000n)));
    const suspense: AccountRef = { family: "SUSPENSE", mortgageId: due.mortgageId, obligationId: due.obligationId };
    const escalation: PostingRequest = {
      entryType: "SUSPENSE_ESCALATED",
      amount: 80_000n,
      debit: suspense,
      credit: due.receivable,
      idempotencyKey: idempotencyKeys.suspenseEscalated(due.obligationId),
      mortgageId: due.mortgageId,
      obligationId: due.obligationId,
    };
    return { ...due, suspense, escalation };
  }

  it("allows SUSPENSE_ESCALATED to credit the receivable again after CASH_RECEIVED emptied it", async () => {
    const paid = await givenPaidObligation();
    expect(await balanceOf(paid.receivable)).toBe(0n);
    const posted = await database.db.transaction((tx) => postEntry(tx, paid.escalation));
    expect(posted.replayed).toBe(false);
    expect(await balanceOf(paid.suspense)).toBe(80_000n);
    expect(await balanceOf(paid.receivable)).toBe(-80_000n);
  });

  it("allows the REVERSAL of the escalation, which clears suspense", async () => {
    const paid = await givenPaidObligation();
    const escalated = await database.db.transaction((tx) => postEntry(tx, paid.escalation));
    const reversal: PostingRequest = {
      entryType: "REVERSAL",
      amount: 80_000n,
      debit: paid.receivable,
      credit: paid.suspense,
      idempotencyKey: idempotencyKeys.reversal(escalated.id),
      reversesEntryId: escalated.id,
      mortgageId: paid.mortgageId,
      obligationId: paid.obligationId,
    };
    const reversed = await database.db.transaction((tx) => postEntry(tx, reversal));
    expect(reversed).toMatchObject({ entryType: "REVERSAL", replayed: false });
    expect(await balanceOf(paid.suspense)).toBe(0n);
    expect(await balanceOf(paid.receivable)).toBe(0n);
    const [row] = await database.db.execute<{ reverses_entry_id: string }>(sql`
      select reverses_entry_id from cash_journal_entries where id = ${reversed.id}::uuid`);
    expect(row!.reverses_entry_id).toBe(escalated.id);
    expect((await database.db.transaction((tx) => postEntry(tx, reversal))).replayed).toBe(true);
  });

  it("refuses a REVERSAL that does not mirror the reversed entry, moves another amount, names no entry, or reverses a reversal", async () => {
    const paid = await givenPaidObligation();
    const escalated = await database.db.transaction((tx) => postEntry(tx, paid.escalation));
    const reversal: PostingRequest = {
      entryType: "REVERSAL",
      amount: 80_000n,
      debit: paid.receivable,
      credit: paid.suspense,
      idempotencyKey: idempotencyKeys.reversal(escalated.id),
      reversesEntryId: escalated.id,
    };
    const sameDirection = await refusedPosting([{ ...reversal, debit: paid.suspense, credit: paid.receivable }]);
    expect(sameDirection).toBeInstanceOf(LedgerRuleError);
    expect((sameDirection as Error).message).toContain("debits the reversed entry's credit account");

    const otherAccount = await refusedPosting([{ ...reversal, debit: paid.trustCash }]);
    expect(otherAccount).toBeInstanceOf(LedgerRuleError);

    const otherAmount = await refusedPosting([{ ...reversal, amount: 79_999n }]);
    expect(otherAmount).toBeInstanceOf(LedgerRuleError);
    expect((otherAmount as Error).message).toContain("moves the reversed amount 80000");

    const unnamed = await refusedPosting([{ ...reversal, reversesEntryId: null }]);
    expect(unnamed).toBeInstanceOf(LedgerRuleError);
    const missing = await refusedPosting([{ ...reversal, reversesEntryId: randomUUID() }]);
    expect((missing as Error).message).toContain("which does not exist");

    const done = await database.db.transaction((tx) => postEntry(tx, reversal));
    const ofReversal = await refusedPosting([
      { ...reversal, debit: paid.suspense, credit: paid.receivable, reversesEntryId: done.id, idempotencyKey: idempotencyKeys.reversal(done.id) },
    ]);
    expect((ofReversal as Error).message).toContain("cannot itself be reversed");
  });
});

describe("journal", () => {
  it("is append-only: UPDATE and DELETE of an entry raise and change nothing", async () => {
    const due = await givenDueObligation();
    const posted = await database.db.transaction((tx) => postEntry(tx, due.cashReceived(5_000n)));
    await expect(
      database.db.execute(sql`update cash_journal_entries set amount = 1 where id = ${posted.id}::uuid`),
    ).rejects.toMatchObject({ cause: expect.objectContaining({ message: expect.stringContaining("append-only") }) });
    await expect(database.db.execute(sql`delete from cash_journal_entries where id = ${posted.id}::uuid`)).rejects.toMatchObject({
      cause: expect.objectContaining({ code: "42501" }),
    });
    const [row] = await database.db.execute<{ amount: bigint }>(sql`select amount from cash_journal_entries where id = ${posted.id}::uuid`);
    expect(BigInt(row!.amount)).toBe(5_000n);
  });

  it("the audit log is append-only too", async () => {
    await database.db.execute(sql`insert into audit_log (action, actor, resource_type) values ('test.append_only', 'test', 'test')`);
    await expect(database.db.execute(sql`delete from audit_log where action = 'test.append_only'`)).rejects.toBeDefined();
    await expect(database.db.execute(sql`update audit_log set actor = 'x' where action = 'test.append_only'`)).rejects.toBeDefined();
  });

  it("numbers the postings of a batch in the order they were asked for", async () => {
    const due = await givenDueObligation();
    const posted = await database.db.transaction((tx) => postEntries(tx, [1n, 2n, 3n, 4n].map((amount) => due.cashReceived(amount))));
    const sequences = posted.map((p) => p.sequence);
    expect([...sequences].sort((a, b) => (a < b ? -1 : 1))).toEqual(sequences);
    expect(new Set(sequences).size).toBe(4);
  });
});
