import { describe, expect, it } from "vitest";
import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { disperseObligation, type DispersalResult } from "../../src/db/dispersals.js";
import { findAccount } from "../../src/db/ledger.js";
import {
  NoActivePositionsError,
  ObligationNotFoundError,
  ObligationNotSettledError,
} from "../../src/domain/errors.js";
import { idempotencyKeys } from "../../src/domain/ledgerRules.js";
import { servicingFeeForPeriod, type ObligationType, type PaymentFrequency } from "../../src/domain/servicingFee.js";
import { splitProRata } from "../../src/domain/shares.js";
import { givenMortgage, givenSettledObligation } from "../helpers/factories.js";
import { testDb } from "../helpers/testDb.js";

const database = await testDb({ max: 12 });

const disperse = (obligationId: string) => database.db.transaction((tx) => disperseObligation(tx, obligationId));

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (error: unknown) => error,
  );
}

interface WrittenDispersal {
  entries: Array<{ lenderId: string; amount: bigint }>;
  fee: { amount: bigint; annualRateBps: number; principalBasis: bigint } | undefined;
  postings: Array<{ entryType: string; amount: bigint; lenderId: string | null; idempotencyKey: string }>;
  dispersed: boolean;
}

async function written(obligationId: string): Promise<WrittenDispersal> {
  const entries = await database.db.execute<{ lender_id: string; amount: bigint }>(sql`
    select lender_id::text, amount from dispersal_entries where obligation_id = ${obligationId}::uuid order by lender_id`);
  const [fee] = await database.db.execute<{ amount: bigint; annual_rate_bps: number; principal_basis: bigint }>(sql`
    select amount, annual_rate_bps, principal_basis from servicing_fee_entries where obligation_id = ${obligationId}::uuid`);
  const postings = await database.db.execute<{ entry_type: string; amount: bigint; lender_id: string | null; idempotency_key: string }>(sql`
    select entry_type, amount, lender_id::text, idempotency_key from cash_journal_entries
     where obligation_id = ${obligationId}::uuid and entry_type in ('LENDER_PAYABLE_CREATED', 'SERVICING_FEE_RECOGNIZED')
     order by sequence`);
  const [obligation] = await database.db.execute<{ dispersed: boolean }>(sql`select dispersed from obligations where id = ${obligationId}::uuid`);
  return {
    entries: entries.map((e) => ({ lenderId: e.lender_id, amount: BigInt(e.amount) })),
    fee: fee ? { amount: BigInt(fee.amount), annualRateBps: fee.annual_rate_bps, principalBasis: BigInt(fee.principal_basis) } : undefined,
    postings: postings.map((p) => ({ entryType: p.entry_type, amount: BigInt(p.amount), lenderId: p.lender_id, idempotencyKey: p.idempotency_key })),
    dispersed: obligation!.dispersed,
  };
}

const nothingWritten: WrittenDispersal = { entries: [], fee: undefined, postings: [], dispersed: false };

/** A small deterministic generator, so that a failure of the random cases can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

describe("disperseObligation refuses what it cannot disperse", () => {
  it("throws ObligationNotFoundError (not retryable) for an unknown obligation", async () => {
    const obligationId = randomUUID();
    const error = await rejection(disperse(obligationId));
    expect(error).toBeInstanceOf(ObligationNotFoundError);
    expect(error).toMatchObject({ code: "OBLIGATION_NOT_FOUND", retryable: false, obligationId });
  });

  it("throws ObligationNotSettledError naming the status for every status but settled, and writes nothing", async () => {
    for (const status of ["upcoming", "due", "overdue", "partially_settled", "waived"] as const) {
      const given = await givenSettledObligation(database, { status });
      const error = await rejection(disperse(given.obligationId));
      expect(error).toBeInstanceOf(ObligationNotSettledError);
      expect(error).toMatchObject({ code: "OBLIGATION_NOT_SETTLED", retryable: false, status });
      expect((error as Error).message).toContain(`is ${status}, not settled`);
      expect(await written(given.obligationId)).toEqual(nothingWritten);
    }
  });

  it("throws NoActivePositionsError (retryable) when every position has zero units, and writes nothing", async () => {
    const given = await givenSettledObligation(database, { lenders: [0, 0, 0], servicingFeeBps: 100 });
    const error = await rejection(disperse(given.obligationId));
    expect(error).toBeInstanceOf(NoActivePositionsError);
    expect(error).toMatchObject({ code: "NO_ACTIVE_POSITIONS", retryable: true, mortgageId: given.mortgageId });
    expect(await written(given.obligationId)).toEqual(nothingWritten);
    expect(await findAccount(database.db, { family: "SERVICING_REVENUE", mortgageId: given.mortgageId })).toBeUndefined();
  });

  it("throws NoActivePositionsError for a mortgage without any position", async () => {
    const given = await givenSettledObligation(database, { lenders: [] });
    expect(await rejection(disperse(given.obligationId))).toBeInstanceOf(NoActivePositionsError);
  });
});

describe("disperseObligation splits the settled cash", () => {
  it("takes the servicing fee from regular interest: exact fee entry and SERVICING_FEE_RECOGNIZED posting", async () => {
    // 1% a year of $120,000.00, monthly: $100.00
    const given = await givenSettledObligation(database, {
      lenders: [5000, 3000, 2000],
      amount: 100_000n,
      type: "regular_interest",
      principal: 12_000_000n,
      servicingFeeBps: 100,
      paymentFrequency: "monthly",
    });
    const result = await disperse(given.obligationId);
    expect(result).toMatchObject({ settledAmount: 100_000n, fee: 10_000n, replayed: false });

    const rows = await written(given.obligationId);
    expect(rows.fee).toEqual({ amount: 10_000n, annualRateBps: 100, principalBasis: 12_000_000n });
    expect(rows.entries).toEqual(
      [
        { lenderId: given.lenderIds[0]!, amount: 45_000n },
        { lenderId: given.lenderIds[1]!, amount: 27_000n },
        { lenderId: given.lenderIds[2]!, amount: 18_000n },
      ].sort((a, b) => (a.lenderId < b.lenderId ? -1 : 1)),
    );
    expect(rows.postings.filter((p) => p.entryType === "SERVICING_FEE_RECOGNIZED")).toEqual([
      {
        entryType: "SERVICING_FEE_RECOGNIZED",
        amount: 10_000n,
        lenderId: null,
        idempotencyKey: idempotencyKeys.servicingFeeRecognized(given.obligationId, 1),
      },
    ]);
    for (const entry of result.entries) {
      expect(rows.postings).toContainEqual({
        entryType: "LENDER_PAYABLE_CREATED",
        amount: entry.amount,
        lenderId: entry.lenderId,
        idempotencyKey: idempotencyKeys.lenderPayableCreated(given.obligationId, entry.lenderId, 1),
      });
    }
    expect((await findAccount(database.db, { family: "SERVICING_REVENUE", mortgageId: given.mortgageId }))?.balance).toBe(10_000n);
    expect(
      (await findAccount(database.db, { family: "CONTROL", subaccount: "ALLOCATION", mortgageId: given.mortgageId }))?.cumulativeDebits,
    ).toBe(100_000n);
    expect(
      (await findAccount(database.db, { family: "LENDER_PAYABLE", mortgageId: given.mortgageId, lenderId: given.lenderIds[0]! }))?.balance,
    ).toBe(45_000n);
  });

  it("takes no fee from principal repayments, late fees and arrears cures", async () => {
    for (const type of ["principal_repayment", "late_fee", "arrears_cure"] as const) {
      const given = await givenSettledObligation(database, { type, amount: 100_000n, principal: 12_000_000n, servicingFeeBps: 500 });
      const result = await disperse(given.obligationId);
      expect(result.fee).toBe(0n);
      const rows = await written(given.obligationId);
      expect(rows.fee).toBeUndefined();
      expect(rows.postings.map((p) => p.entryType)).toEqual(["LENDER_PAYABLE_CREATED"]);
      expect(rows.entries).toEqual([{ lenderId: given.lenderIds[0]!, amount: 100_000n }]);
    }
  });

  it("disperses the sum of the CASH_RECEIVED postings when it differs from the obligation's amount", async () => {
    const given = await givenSettledObligation(database, {
      lenders: [6000, 4000],
      amount: 100_000n,
      cashReceived: [60_000n, 30_001n],
      type: "late_fee",
    });
    const result = await disperse(given.obligationId);
    expect(result.settledAmount).toBe(90_001n);
    const rows = await written(given.obligationId);
    expect(rows.entries.reduce((sum, e) => sum + e.amount, 0n)).toBe(90_001n);
    const byLender = new Map(rows.entries.map((e) => [e.lenderId, e.amount]));
    expect(byLender.get(given.lenderIds[0]!)).toBe(54_001n); // 54,000.6 takes the leftover cent
    expect(byLender.get(given.lenderIds[1]!)).toBe(36_000n); // 36,000.4
  });

  it("falls back to the obligation's amount when no cash was booked", async () => {
    const given = await givenSettledObligation(database, { amount: 77_777n, cashReceived: [], type: "arrears_cure" });
    const result = await disperse(given.obligationId);
    expect(result.settledAmount).toBe(77_777n);
    expect((await written(given.obligationId)).entries).toEqual([{ lenderId: given.lenderIds[0]!, amount: 77_777n }]);
  });

  it("marks the obligation dispersed with no entry when the fee takes the whole amount", async () => {
    // 100% of $1,000,000.00 monthly is far above the $5.00 settled
    const given = await givenSettledObligation(database, {
      lenders: [5000, 5000],
      amount: 500n,
      principal: 100_000_000n,
      servicingFeeBps: 10_000,
    });
    const result = await disperse(given.obligationId);
    expect(result).toMatchObject({ settledAmount: 500n, fee: 500n, entries: [], replayed: false });
    const rows = await written(given.obligationId);
    expect(rows).toMatchObject({ entries: [], dispersed: true });
    expect(rows.fee?.amount).toBe(500n);
    expect(rows.postings.map((p) => [p.entryType, p.amount])).toEqual([["SERVICING_FEE_RECOGNIZED", 500n]]);

    const replay = await disperse(given.obligationId);
    expect(replay).toMatchObject({ fee: 500n, entries: [], replayed: true });
    expect(await written(given.obligationId)).toEqual(rows);
  });

  it("writes one entry for each of 40 lenders, conserving the settled amount", async () => {
    const units = Array.from({ length: 40 }, (_, i) => 100 + i * 13);
    const given = await givenSettledObligation(database, { lenders: units, amount: 1_234_567n, type: "principal_repayment" });
    const result = await disperse(given.obligationId);
    expect(result.entries).toHaveLength(40);
    const rows = await written(given.obligationId);
    expect(rows.entries).toHaveLength(40);
    expect(rows.postings).toHaveLength(40);
    expect(rows.entries.reduce((sum, e) => sum + e.amount, 0n)).toBe(1_234_567n);
    const totalUnits = BigInt(units.reduce((a, b) => a + b, 0));
    for (const entry of result.entries) {
      expect(entry.totalUnits).toBe(totalUnits);
      expect(entry.ownershipUnits).toBe(BigInt(units[given.lenderIds.indexOf(entry.lenderId)]!));
    }
  });

  it("replays an obligation already dispersed: the same entries, nothing new written", async () => {
    const given = await givenSettledObligation(database, { lenders: [5000, 5000], amount: 10_001n, servicingFeeBps: 50, principal: 1_200_000n });
    const first = await disperse(given.obligationId);
    expect(first).toMatchObject({ fee: 500n, replayed: false });
    expect(first.entries.map((e) => e.amount)).toEqual([4_751n, 4_750n]); // 4,750.5 each: the lower lender id takes the cent
    const before = await written(given.obligationId);
    const again = await disperse(given.obligationId);
    expect(again).toEqual({ ...first, replayed: true, allocation: null });
    expect(await written(given.obligationId)).toEqual(before);
  });

  it("conserves Σ entries + fee = settled amount, matching the pure split, on 200 random obligations", async () => {
    const next = random(20_240_601);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
    const frequencies: PaymentFrequency[] = ["monthly", "bi_weekly", "accelerated_bi_weekly", "weekly"];
    const types: ObligationType[] = ["regular_interest", "regular_interest", "principal_repayment", "late_fee", "arrears_cure"];

    const mortgages = [];
    for (let m = 0; m < 20; m++) {
      const lenders = Array.from({ length: 1 + Math.floor(next() * 40) }, () => (next() < 0.1 ? 0 : 1 + Math.floor(next() * 5000)));
      if (!lenders.some((u) => u > 0)) lenders[0] = 1;
      const options = {
        lenders,
        principal: BigInt(1_000_000 + Math.floor(next() * 200_000_000)),
        servicingFeeBps: pick([0, 25, 50, 100, 150, 250, 10_000]),
        paymentFrequency: pick(frequencies),
      };
      mortgages.push({ ...options, ...(await givenMortgage(database, options)) });
    }
    const cases = [];
    for (let i = 0; i < 200; i++) {
      const mortgage = pick(mortgages);
      const amount = BigInt(1 + Math.floor(next() * (next() < 0.2 ? 100 : 5_000_000)));
      const cashReceived = next() < 0.2 ? [amount / 2n + 1n, BigInt(Math.floor(next() * 1000))].filter((c) => c > 0n) : [amount];
      const type = pick(types);
      const given = await givenSettledObligation(database, { mortgageId: mortgage.mortgageId, amount, cashReceived, type });
      cases.push({ ...given, mortgage, type, settled: cashReceived.reduce((a, b) => a + b, 0n) });
    }

    const results = new Map<string, DispersalResult>();
    for (let i = 0; i < cases.length; i += 10) {
      const batch = await Promise.all(cases.slice(i, i + 10).map((c) => disperse(c.obligationId)));
      for (const result of batch) results.set(result.obligationId, result);
    }

    for (const c of cases) {
      const fee = servicingFeeForPeriod({
        obligationType: c.type,
        principal: c.mortgage.principal,
        servicingFeeBps: c.mortgage.servicingFeeBps,
        paymentFrequency: c.mortgage.paymentFrequency,
        settledAmount: c.settled,
      });
      const positions = c.mortgage.lenderIds.map((lenderId, i) => ({ lenderId, units: BigInt(c.mortgage.lenders[i]!) }));
      const expected = splitProRata(c.mortgage.mortgageId, c.settled - fee, positions);
      const result = results.get(c.obligationId)!;
      expect(result.settledAmount).toBe(c.settled);
      expect(result.fee).toBe(fee);
      expect(result.entries.map((e) => ({ lenderId: e.lenderId, amount: e.amount }))).toEqual(
        expected.map((s) => ({ lenderId: s.lenderId, amount: s.amount })),
      );
    }

    // …and what is stored agrees: entries, fee entries and postings, per obligation, in one query
    const defects = await database.db.execute<{ id: string }>(sql`
      select o.id from obligations o
       where o.id in (select (jsonb_array_elements_text(${JSON.stringify(cases.map((c) => c.obligationId))}::jsonb))::uuid)
         and (not o.dispersed
              or coalesce((select sum(d.amount) from dispersal_entries d where d.obligation_id = o.id), 0)
               + coalesce((select f.amount from servicing_fee_entries f where f.obligation_id = o.id), 0)
              <> (select sum(j.amount) from cash_journal_entries j where j.obligation_id = o.id and j.entry_type = 'CASH_RECEIVED')
              or (select coalesce(sum(j.amount), 0) from cash_journal_entries j where j.obligation_id = o.id
                   and j.entry_type in ('LENDER_PAYABLE_CREATED', 'SERVICING_FEE_RECOGNIZED'))
              <> (select sum(j.amount) from cash_journal_entries j where j.obligation_id = o.id and j.entry_type = 'CASH_RECEIVED'))`);
    expect(defects).toEqual([]);
  });
});

describe("disperseObligation under concurrency", () => {
  it("writes one set of entries when 10 callers disperse the same obligation at once", async () => {
    const given = await givenSettledObligation(database, { lenders: [3333, 3333, 3334], amount: 100_000n, servicingFeeBps: 120, principal: 30_000_000n });
    const results = await Promise.all(Array.from({ length: 10 }, () => disperse(given.obligationId)));
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    const ids = results.map((r) => r.entries.map((e) => e.id).sort().join(","));
    expect(new Set(ids).size).toBe(1);
    expect(results.every((r) => r.fee === results[0]!.fee)).toBe(true);

    const rows = await written(given.obligationId);
    expect(rows.entries).toHaveLength(3);
    expect(rows.postings).toHaveLength(4); // three payables and the fee
    expect(rows.entries.reduce((sum, e) => sum + e.amount, 0n) + rows.fee!.amount).toBe(100_000n);
    expect(
      (await findAccount(database.db, { family: "CONTROL", subaccount: "ALLOCATION", mortgageId: given.mortgageId }))?.cumulativeDebits,
    ).toBe(100_000n);
  });
});
