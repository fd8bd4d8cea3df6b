import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { NoActivePositionsError } from "../../src/domain/errors.js";
import { servicingFeeForPeriod, type ObligationType, type PaymentFrequency } from "../../src/domain/servicingFee.js";
import { splitProRata, type Position, type Share } from "../../src/domain/shares.js";

const MORTGAGE = "00000000-0000-4000-8000-00000000000m";

const total = (shares: Share[]) => shares.reduce((sum, s) => sum + s.amount, 0n);

/** Distinct lender ids (uuid-shaped, as in the database) and their units; some positions are zero. */
const positionsArb = (options: { minLength?: number; maxLength?: number; maxUnits?: bigint } = {}) =>
  fc
    .uniqueArray(fc.uuid(), { minLength: options.minLength ?? 1, maxLength: options.maxLength ?? 40 })
    .chain((ids) =>
      fc
        .array(fc.oneof({ weight: 1, arbitrary: fc.constant(0n) }, { weight: 6, arbitrary: fc.bigInt({ min: 1n, max: options.maxUnits ?? 10_000n }) }), {
          minLength: ids.length,
          maxLength: ids.length,
        })
        .map((units) => ids.map((lenderId, i) => ({ lenderId, units: units[i]! }))),
    )
    .filter((positions) => positions.some((p) => p.units > 0n));

/** The input in a different order, driven by a generated permutation key per position. */
const shuffledArb = (positions: Position[]) =>
  fc
    .array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: positions.length, maxLength: positions.length })
    .map((keys) => positions.map((p, i) => ({ p, k: keys[i]! })).sort((a, b) => a.k - b.k).map(({ p }) => p));

const distributableArb = fc.oneof(
  fc.bigInt({ min: 0n, max: 1_000n }),
  fc.bigInt({ min: 0n, max: 10n ** 9n }),
  fc.bigInt({ min: 2n ** 53n, max: 2n ** 80n }),
);

function ids(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `00000000-0000-4000-8000-${i.toString().padStart(12, "0")}`);
}

describe("splitProRata", () => {
  it("conserves the distributable amount to the cent", () => {
    fc.assert(
      fc.property(distributableArb, positionsArb(), (distributable, positions) => {
        expect(total(splitProRata(MORTGAGE, distributable, positions))).toBe(distributable);
      }),
      { numRuns: 5_000 },
    );
  });

  it("never gives a negative or zero share, and gives nothing to a zero-unit position", () => {
    fc.assert(
      fc.property(distributableArb, positionsArb(), (distributable, positions) => {
        const zero = new Set(positions.filter((p) => p.units === 0n).map((p) => p.lenderId));
        for (const share of splitProRata(MORTGAGE, distributable, positions)) {
          expect(share.amount > 0n).toBe(true);
          expect(zero.has(share.lenderId)).toBe(false);
        }
      }),
      { numRuns: 3_000 },
    );
  });

  it("gives each lender the floor of its exact share or one cent more, the extra cents to the largest remainders (ties: lender id ascending)", () => {
    fc.assert(
      fc.property(distributableArb, positionsArb(), (distributable, positions) => {
        const active = positions.filter((p) => p.units > 0n);
        const totalUnits = active.reduce((sum, p) => sum + p.units, 0n);
        const byLender = new Map(splitProRata(MORTGAGE, distributable, positions).map((s) => [s.lenderId, s]));
        const parts = active.map((p) => {
          const floor = (distributable * p.units) / totalUnits;
          const amount = byLender.get(p.lenderId)?.amount ?? 0n;
          expect(amount === floor || amount === floor + 1n).toBe(true);
          const share = byLender.get(p.lenderId);
          if (share) expect({ units: share.ownershipUnits, total: share.totalUnits }).toEqual({ units: p.units, total: totalUnits });
          return { id: p.lenderId, remainder: (distributable * p.units) % totalUnits, bumped: amount === floor + 1n };
        });
        // Every lender given an extra cent ranks before every lender who was not.
        const ranks = (a: (typeof parts)[number], b: (typeof parts)[number]) =>
          a.remainder > b.remainder || (a.remainder === b.remainder && a.id < b.id);
        for (const winner of parts.filter((p) => p.bumped)) {
          for (const loser of parts.filter((p) => !p.bumped)) expect(ranks(winner, loser)).toBe(true);
        }
      }),
      { numRuns: 3_000 },
    );
  });

  it("does not depend on the order of the positions", () => {
    fc.assert(
      fc.property(
        distributableArb,
        positionsArb().chain((positions) => fc.tuple(fc.constant(positions), shuffledArb(positions))),
        (distributable, [positions, shuffled]) => {
          expect(splitProRata(MORTGAGE, distributable, shuffled)).toEqual(splitProRata(MORTGAGE, distributable, positions));
        },
      ),
      { numRuns: 3_000 },
    );
  });

  it("returns the shares ordered by lender id", () => {
    fc.assert(
      fc.property(distributableArb, positionsArb(), (distributable, positions) => {
        const lenderIds = splitProRata(MORTGAGE, distributable, positions).map((s) => s.lenderId);
        expect(lenderIds).toEqual([...lenderIds].sort());
      }),
      { numRuns: 1_000 },
    );
  });

  it("conserves the settled amount once the servicing fee is taken (Σ shares + fee = settled)", () => {
    const frequencyArb = fc.constantFrom<PaymentFrequency>("monthly", "bi_weekly", "accelerated_bi_weekly", "weekly");
    const typeArb = fc.constantFrom<ObligationType>("regular_interest", "principal_repayment", "late_fee", "arrears_cure");
    fc.assert(
      fc.property(
        fc.bigInt({ min: 1n, max: 10n ** 10n }),
        fc.bigInt({ min: 0n, max: 10n ** 11n }),
        fc.integer({ min: 0, max: 10_000 }),
        frequencyArb,
        typeArb,
        positionsArb(),
        (settledAmount, principal, bps, frequency, obligationType, positions) => {
          const fee = servicingFeeForPeriod({ obligationType, principal, servicingFeeBps: bps, paymentFrequency: frequency, settledAmount });
          const shares = splitProRata(MORTGAGE, settledAmount - fee, positions);
          expect(total(shares) + fee).toBe(settledAmount);
        },
      ),
      { numRuns: 5_000 },
    );
  });

  it("gives one lender everything", () => {
    expect(splitProRata(MORTGAGE, 123_457n, [{ lenderId: "a", units: 7n }])).toEqual([
      { lenderId: "a", amount: 123_457n, ownershipUnits: 7n, totalUnits: 7n },
    ]);
  });

  it("gives one active lender everything when the others hold zero units", () => {
    const shares = splitProRata(MORTGAGE, 1_000n, [
      { lenderId: "a", units: 0n },
      { lenderId: "b", units: 10_000n },
      { lenderId: "c", units: 0n },
    ]);
    expect(shares).toEqual([{ lenderId: "b", amount: 1_000n, ownershipUnits: 10_000n, totalUnits: 10_000n }]);
  });

  it("splits exactly when the amount divides evenly", () => {
    const shares = splitProRata(MORTGAGE, 100_000n, [
      { lenderId: "a", units: 5_000n },
      { lenderId: "b", units: 3_000n },
      { lenderId: "c", units: 2_000n },
    ]);
    expect(shares.map((s) => s.amount)).toEqual([50_000n, 30_000n, 20_000n]);
  });

  it("gives the leftover cent to the largest remainder", () => {
    // 100,001 × 5000/10000 = 50,000.5; × 3000 = 30,000.3; × 2000 = 20,000.2 → the half wins
    const shares = splitProRata(MORTGAGE, 100_001n, [
      { lenderId: "c", units: 2_000n },
      { lenderId: "a", units: 5_000n },
      { lenderId: "b", units: 3_000n },
    ]);
    expect(shares.map((s) => [s.lenderId, s.amount])).toEqual([
      ["a", 50_001n],
      ["b", 30_000n],
      ["c", 20_000n],
    ]);
  });

  it("breaks equal remainders by lender id ascending, whatever the input order", () => {
    const [a, b, c] = ids(3) as [string, string, string];
    const positions = [
      { lenderId: c, units: 1n },
      { lenderId: a, units: 1n },
      { lenderId: b, units: 1n },
    ];
    expect(splitProRata(MORTGAGE, 100n, positions).map((s) => [s.lenderId, s.amount])).toEqual([
      [a, 34n],
      [b, 33n],
      [c, 33n],
    ]);
    expect(splitProRata(MORTGAGE, 101n, positions).map((s) => [s.lenderId, s.amount])).toEqual([
      [a, 34n],
      [b, 34n],
      [c, 33n],
    ]);
    expect(splitProRata(MORTGAGE, 2n, [...positions].reverse()).map((s) => [s.lenderId, s.amount])).toEqual([
      [a, 1n],
      [b, 1n],
    ]);
  });

  it("orders ids by their characters, as Postgres orders uuids", () => {
    const low = "0fffffff-ffff-4fff-bfff-ffffffffffff";
    const high = "a0000000-0000-4000-8000-000000000000";
    const shares = splitProRata(MORTGAGE, 1n, [
      { lenderId: high, units: 1n },
      { lenderId: low, units: 1n },
    ]);
    expect(shares).toEqual([{ lenderId: low, amount: 1n, ownershipUnits: 1n, totalUnits: 2n }]);
  });

  it("splits over 40 lenders with every cent accounted for", () => {
    const lenderIds = ids(40);
    const positions = lenderIds.map((lenderId, i) => ({ lenderId, units: BigInt(i * 7 + 13) }));
    const totalUnits = positions.reduce((sum, p) => sum + p.units, 0n);
    const shares = splitProRata(MORTGAGE, 987_654_321n, positions);
    expect(shares).toHaveLength(40);
    expect(total(shares)).toBe(987_654_321n);
    for (const [i, share] of shares.entries()) {
      const exactFloor = (987_654_321n * positions[i]!.units) / totalUnits;
      expect(share.amount - exactFloor).toBeGreaterThanOrEqual(0n);
      expect(share.amount - exactFloor).toBeLessThanOrEqual(1n);
      expect(share.totalUnits).toBe(totalUnits);
    }
  });

  it("leaves out lenders whose share rounds to zero", () => {
    const lenderIds = ids(40);
    const shares = splitProRata(MORTGAGE, 3n, lenderIds.map((lenderId) => ({ lenderId, units: 250n })));
    expect(shares.map((s) => [s.lenderId, s.amount])).toEqual([
      [lenderIds[0], 1n],
      [lenderIds[1], 1n],
      [lenderIds[2], 1n],
    ]);
  });

  it("writes no share at all when there is nothing to distribute", () => {
    expect(splitProRata(MORTGAGE, 0n, [{ lenderId: "a", units: 10_000n }])).toEqual([]);
  });

  it("keeps amounts beyond 2^53 cents exact as bigint", () => {
    const distributable = 2n ** 64n + 12_345n;
    const shares = splitProRata(MORTGAGE, distributable, [
      { lenderId: "a", units: 1n },
      { lenderId: "b", units: 2n },
    ]);
    // (2^64 + 12,345) / 3: 2^64 ≡ 1 (mod 3), 12,345 ≡ 0 → remainders 1/3 and 2/3 → b takes the cent
    const third = distributable / 3n;
    expect(shares).toEqual([
      { lenderId: "a", amount: third, ownershipUnits: 1n, totalUnits: 3n },
      { lenderId: "b", amount: distributable - third, ownershipUnits: 2n, totalUnits: 3n },
    ]);
    expect(shares[1]!.amount > BigInt(Number.MAX_SAFE_INTEGER)).toBe(true);
  });

  it("accepts unit counts beyond 2^53", () => {
    const shares = splitProRata(MORTGAGE, 1_000_001n, [
      { lenderId: "a", units: 2n ** 60n },
      { lenderId: "b", units: 2n ** 60n },
    ]);
    expect(shares.map((s) => s.amount)).toEqual([500_001n, 500_000n]);
  });

  it("throws NoActivePositionsError naming the mortgage when no position has units", () => {
    for (const positions of [[], [{ lenderId: "a", units: 0n }], [{ lenderId: "a", units: 0n }, { lenderId: "b", units: 0n }]]) {
      let caught: unknown;
      try {
        splitProRata(MORTGAGE, 100n, positions);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(NoActivePositionsError);
      expect(caught).toMatchObject({ code: "NO_ACTIVE_POSITIONS", retryable: true, mortgageId: MORTGAGE });
      expect((caught as Error).message).toMatch(/no active positions/);
    }
  });

  it("throws NoActivePositionsError even when there is nothing to distribute", () => {
    expect(() => splitProRata(MORTGAGE, 0n, [{ lenderId: "a", units: 0n }])).toThrow(NoActivePositionsError);
  });

  it("refuses a negative distributable amount or negative units", () => {
    expect(() => splitProRata(MORTGAGE, -1n, [{ lenderId: "a", units: 1n }])).toThrow(RangeError);
    expect(() => splitProRata(MORTGAGE, 1n, [{ lenderId: "a", units: -1n }, { lenderId: "b", units: 2n }])).toThrow(RangeError);
  });

  it("does not change its input", () => {
    const positions = [
      { lenderId: "b", units: 1n },
      { lenderId: "a", units: 2n },
    ];
    const copy = structuredClone(positions);
    splitProRata(MORTGAGE, 10n, positions);
    expect(positions).toEqual(copy);
  });
});
