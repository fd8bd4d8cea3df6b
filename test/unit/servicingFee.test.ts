import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  PERIODS_PER_YEAR,
  servicingFeeForPeriod,
  type FeeInput,
  type ObligationType,
  type PaymentFrequency,
} from "../../src/domain/servicingFee.js";

const FREQUENCIES: PaymentFrequency[] = ["monthly", "bi_weekly", "accelerated_bi_weekly", "weekly"];
const OTHER_TYPES: ObligationType[] = ["principal_repayment", "late_fee", "arrears_cure"];

function fee(overrides: Partial<FeeInput> = {}): bigint {
  return servicingFeeForPeriod({
    obligationType: "regular_interest",
    principal: 12_000_000n,
    servicingFeeBps: 100,
    paymentFrequency: "monthly",
    settledAmount: 10_000_000n,
    ...overrides,
  });
}

describe("servicingFeeForPeriod", () => {
  it("counts 12 periods a year for monthly, 26 for both bi-weekly kinds, 52 for weekly", () => {
    expect(PERIODS_PER_YEAR).toEqual({ monthly: 12n, bi_weekly: 26n, accelerated_bi_weekly: 26n, weekly: 52n });
  });

  it("takes principal × bps / 10,000 / periods for each frequency", () => {
    // 1% of $120,000.00 is $1,200.00 a year.
    expect(fee({ paymentFrequency: "monthly" })).toBe(10_000n); // 120,000 / 12
    expect(fee({ paymentFrequency: "bi_weekly" })).toBe(4_615n); // 120,000 / 26 = 4,615.38
    expect(fee({ paymentFrequency: "accelerated_bi_weekly" })).toBe(4_615n);
    expect(fee({ paymentFrequency: "weekly" })).toBe(2_308n); // 120,000 / 52 = 2,307.69
  });

  it("rounds an exact half cent up for each frequency", () => {
    for (const frequency of FREQUENCIES) {
      const denominator = 10_000n * PERIODS_PER_YEAR[frequency];
      // principal × 1 bps = denominator × 2.5 → 2.5 cents → 3
      const principal = (denominator * 5n) / 2n;
      expect(fee({ paymentFrequency: frequency, servicingFeeBps: 1, principal })).toBe(3n);
      // 0.5 cent exactly → 1
      expect(fee({ paymentFrequency: frequency, servicingFeeBps: 1, principal: denominator / 2n })).toBe(1n);
    }
  });

  it("rounds just below a half cent down and just above it up", () => {
    const denominator = 10_000n * 12n;
    expect(fee({ servicingFeeBps: 1, principal: denominator / 2n - 1n })).toBe(0n);
    expect(fee({ servicingFeeBps: 1, principal: denominator / 2n + 1n })).toBe(1n);
    expect(fee({ servicingFeeBps: 1, principal: (denominator * 3n) / 2n - 1n })).toBe(1n);
    expect(fee({ servicingFeeBps: 1, principal: (denominator * 3n) / 2n })).toBe(2n);
  });

  it("is round-half-up of the exact rational for any principal, rate and frequency", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 10n ** 14n }),
        fc.integer({ min: 0, max: 10_000 }),
        fc.constantFrom(...FREQUENCIES),
        (principal, bps, frequency) => {
          const result = fee({ principal, servicingFeeBps: bps, paymentFrequency: frequency, settledAmount: 10n ** 18n });
          const numerator = principal * BigInt(bps);
          const denominator = 10_000n * PERIODS_PER_YEAR[frequency];
          // result - 1/2 <= exact < result + 1/2, i.e. ties go up
          expect(2n * numerator >= (2n * result - 1n) * denominator).toBe(true);
          expect(2n * numerator < (2n * result + 1n) * denominator).toBe(true);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it("caps the fee at the settled amount", () => {
    expect(fee({ settledAmount: 9_999n })).toBe(9_999n);
    expect(fee({ settledAmount: 10_000n })).toBe(10_000n);
    expect(fee({ settledAmount: 10_001n })).toBe(10_000n);
    expect(fee({ settledAmount: 1n, servicingFeeBps: 10_000 })).toBe(1n);
    expect(fee({ settledAmount: 0n })).toBe(0n);
  });

  it("never exceeds the settled amount and is never negative", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 10n ** 15n }),
        fc.integer({ min: 0, max: 10_000 }),
        fc.constantFrom(...FREQUENCIES),
        fc.bigInt({ min: 0n, max: 10n ** 12n }),
        (principal, bps, frequency, settledAmount) => {
          const result = fee({ principal, servicingFeeBps: bps, paymentFrequency: frequency, settledAmount });
          expect(result >= 0n && result <= settledAmount).toBe(true);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it("is charged only on regular interest", () => {
    for (const obligationType of OTHER_TYPES) {
      for (const frequency of FREQUENCIES) {
        expect(fee({ obligationType, paymentFrequency: frequency, servicingFeeBps: 10_000 })).toBe(0n);
      }
    }
    expect(fee({ obligationType: "regular_interest" })).toBeGreaterThan(0n);
  });

  it("is zero at 0 bps and accepts the bounds 0 and 10,000", () => {
    expect(fee({ servicingFeeBps: 0 })).toBe(0n);
    expect(fee({ servicingFeeBps: 10_000, settledAmount: 10n ** 12n })).toBe(1_000_000n); // 100% of 120,000.00 / 12
  });

  it("is zero on a zero principal", () => {
    expect(fee({ principal: 0n, servicingFeeBps: 10_000 })).toBe(0n);
  });

  it("refuses a rate outside 0..10,000 bps or not a whole number of bps", () => {
    for (const servicingFeeBps of [-1, 10_001, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => fee({ servicingFeeBps })).toThrow(RangeError);
    }
    expect(() => fee({ servicingFeeBps: 10_001 })).toThrow(/servicing_fee_bps/);
  });

  it("refuses a negative principal or settled amount", () => {
    expect(() => fee({ principal: -1n })).toThrow(RangeError);
    expect(() => fee({ settledAmount: -1n })).toThrow(RangeError);
  });

  it("handles principals far beyond 2^53 cents exactly", () => {
    const principal = 2n ** 70n; // 1,180,591,620,717,411,303,424 cents
    const expected = (principal * 25n * 2n + 10_000n * 12n) / (10_000n * 12n * 2n);
    expect(fee({ principal, servicingFeeBps: 25, settledAmount: 2n ** 80n })).toBe(expected);
  });
});
