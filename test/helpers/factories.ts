// Arrange helpers: real rows in the test database, made the way the platform makes them.
import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import type { Database } from "../../src/db/client.js";
import { postEntries, type PostingRequest } from "../../src/db/ledger.js";
import { idempotencyKeys } from "../../src/domain/ledgerRules.js";
import type { ObligationType, PaymentFrequency } from "../../src/domain/servicingFee.js";
import type { ObligationStatus } from "../../src/db/schema.js";

export interface GivenObligation {
  /** Units per lender; [] gives a mortgage without positions, [0, 0] one whose positions are all zero. */
  lenders?: number[];
  amount?: bigint;
  /** CASH_RECEIVED postings; default one posting of `amount` for a settled obligation. */
  cashReceived?: bigint[];
  type?: ObligationType;
  status?: ObligationStatus;
  principal?: bigint;
  servicingFeeBps?: number;
  paymentFrequency?: PaymentFrequency;
  /** Reuse a mortgage (and its lenders) made by an earlier call. */
  mortgageId?: string;
  settledAt?: Date;
  /** Ids as another system would write them (any value Postgres's uuid accepts); random by default. */
  ids?: GivenIds;
}

export interface GivenIds {
  obligation?: string;
  mortgage?: string;
  /** One per entry of `lenders`. */
  lenders?: string[];
}

export interface GivenObligationResult {
  obligationId: string;
  mortgageId: string;
  lenderIds: string[];
  amount: bigint;
}

export async function givenMortgage(
  database: Database,
  options: { lenders?: number[]; principal?: bigint; servicingFeeBps?: number; paymentFrequency?: PaymentFrequency; ids?: GivenIds } = {},
): Promise<{ mortgageId: string; lenderIds: string[] }> {
  const { db } = database;
  // Postgres prints ids in lower case, so the returned ids are what a query would give back.
  const mortgageId = (options.ids?.mortgage ?? randomUUID()).toLowerCase();
  const units = options.lenders ?? [10_000];
  const lenderIds = units.map((_, i) => (options.ids?.lenders?.[i] ?? randomUUID()).toLowerCase());
  await db.transaction(async (tx) => {
    await tx.execute(sql`insert into mortgages (id, reference, principal, servicing_fee_bps, payment_frequency)
      values (${mortgageId}::uuid, ${`M-${mortgageId}`}, ${(options.principal ?? 50_000_000n).toString()}::bigint,
              ${options.servicingFeeBps ?? 0}, ${options.paymentFrequency ?? "monthly"})`);
    for (const [i, lenderId] of lenderIds.entries()) {
      await tx.execute(sql`insert into lenders (id, name) values (${lenderId}::uuid, ${`Lender ${i + 1}`})`);
      await tx.execute(sql`insert into mortgage_positions (mortgage_id, lender_id, units)
        values (${mortgageId}::uuid, ${lenderId}::uuid, ${units[i]!})`);
    }
  });
  return { mortgageId, lenderIds };
}

/**
 * The postings an obligation's own systems make before healing sees it: its accrual, and each
 * amount of cash received for it (several for a partial payment; none for one settled without cash).
 */
export function accrualAndCash(o: { obligationId: string; mortgageId: string; amount: bigint }, received: readonly bigint[]): PostingRequest[] {
  const { obligationId, mortgageId } = o;
  return [
    {
      entryType: "OBLIGATION_ACCRUED",
      amount: o.amount,
      debit: { family: "BORROWER_RECEIVABLE", obligationId },
      credit: { family: "CONTROL", subaccount: "ACCRUAL", mortgageId },
      idempotencyKey: idempotencyKeys.obligationAccrued(obligationId),
      mortgageId,
      obligationId,
    },
    ...received.map((cash, i) => ({
      entryType: "CASH_RECEIVED" as const,
      amount: cash,
      debit: { family: "TRUST_CASH" as const, mortgageId },
      credit: { family: "BORROWER_RECEIVABLE" as const, obligationId },
      idempotencyKey: idempotencyKeys.cashReceived("other-system", `${obligationId}-${i}`),
      mortgageId,
      obligationId,
      actor: "other-system",
    })),
  ];
}

export async function givenSettledObligation(database: Database, options: GivenObligation = {}): Promise<GivenObligationResult> {
  const { db } = database;
  const mortgage = options.mortgageId
    ? { mortgageId: options.mortgageId, lenderIds: [] as string[] }
    : await givenMortgage(database, options);
  const amount = options.amount ?? 100_000n;
  const status = options.status ?? "settled";
  const obligationId = (options.ids?.obligation ?? randomUUID()).toLowerCase();
  await db.transaction(async (tx) => {
    await tx.execute(sql`insert into obligations (id, mortgage_id, type, amount, status, due_date, settled_at)
      values (${obligationId}::uuid, ${mortgage.mortgageId}::uuid, ${options.type ?? "regular_interest"}, ${amount.toString()}::bigint,
              ${status}, current_date, ${status === "settled" ? (options.settledAt ?? new Date()).toISOString() : null}::timestamptz)`);
    const received = options.cashReceived ?? (status === "settled" ? [amount] : []);
    await postEntries(tx, accrualAndCash({ obligationId, mortgageId: mortgage.mortgageId, amount }, received));
  });
  return { obligationId, mortgageId: mortgage.mortgageId, lenderIds: mortgage.lenderIds, amount };
}
