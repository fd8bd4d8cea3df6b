import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { currencyProblem, divideRoundHalfUp, formatCents, formatMoney, parseCents, sumCents } from "../../src/domain/money.js";
import { loadConfig } from "../../src/config.js";

describe("parseCents", () => {
  it("reads a string of digits as bigint cents", () => {
    expect(parseCents("0")).toBe(0n);
    expect(parseCents("12345")).toBe(12_345n);
    expect(parseCents("-5")).toBe(-5n);
    expect(parseCents("007")).toBe(7n);
  });

  it("keeps amounts beyond 2^53 exact", () => {
    expect(parseCents("9007199254740993")).toBe(2n ** 53n + 1n);
    expect(parseCents("123456789012345678901234567890")).toBe(123_456_789_012_345_678_901_234_567_890n);
  });

  it("passes a bigint through unchanged", () => {
    expect(parseCents(42n)).toBe(42n);
    expect(parseCents(-(2n ** 70n))).toBe(-(2n ** 70n));
  });

  it("refuses anything that is not a whole number of cents", () => {
    for (const text of ["", " 1", "1 ", "1.5", "1,000", "1e3", "+1", "--1", "0x10", "abc", "12.00", "-"]) {
      expect(() => parseCents(text), text).toThrow(RangeError);
    }
  });

  it("round-trips every bigint through its decimal string", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 96n), max: 2n ** 96n }), (cents) => {
        expect(parseCents(cents.toString())).toBe(cents);
      }),
      { numRuns: 1_000 },
    );
  });
});

describe("formatCents", () => {
  it("writes dollars with thousands separators and two decimals", () => {
    expect(formatCents(0n)).toBe("0.00");
    expect(formatCents(5n)).toBe("0.05");
    expect(formatCents(99n)).toBe("0.99");
    expect(formatCents(100n)).toBe("1.00");
    expect(formatCents(123_456n)).toBe("1,234.56");
    expect(formatCents(123_456_789n)).toBe("1,234,567.89");
    expect(formatCents(100_000_000n)).toBe("1,000,000.00");
  });

  it("puts the sign in front of negative amounts below and above one dollar", () => {
    expect(formatCents(-5n)).toBe("-0.05");
    expect(formatCents(-100n)).toBe("-1.00");
    expect(formatCents(-123_456_789n)).toBe("-1,234,567.89");
  });

  it("formats amounts beyond 2^53 exactly", () => {
    expect(formatCents(2n ** 64n)).toBe("184,467,440,737,095,516.16");
  });

  it("loses no digit: removing the separators and the point gives the cents back", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }), (cents) => {
        expect(BigInt(formatCents(cents).replace(/[,.]/g, ""))).toBe(cents);
        expect(formatCents(cents)).toMatch(/^-?\d{1,3}(,\d{3})*\.\d{2}$/);
      }),
      { numRuns: 1_000 },
    );
  });
});

describe("sumCents", () => {
  it("is zero for nothing", () => {
    expect(sumCents([])).toBe(0n);
  });

  it("adds any iterable of bigints exactly", () => {
    function* amounts() {
      yield 2n ** 62n;
      yield 2n ** 62n;
      yield -1n;
    }
    expect(sumCents(amounts())).toBe(2n ** 63n - 1n);
    expect(sumCents(new Set([1n, 2n, 3n]))).toBe(6n);
  });
});

describe("divideRoundHalfUp", () => {
  it("rounds halves up and everything else to the nearest", () => {
    expect(divideRoundHalfUp(5n, 2n)).toBe(3n);
    expect(divideRoundHalfUp(7n, 2n)).toBe(4n);
    expect(divideRoundHalfUp(1n, 2n)).toBe(1n);
    expect(divideRoundHalfUp(1n, 3n)).toBe(0n);
    expect(divideRoundHalfUp(2n, 3n)).toBe(1n);
    expect(divideRoundHalfUp(149n, 100n)).toBe(1n);
    expect(divideRoundHalfUp(150n, 100n)).toBe(2n);
    expect(divideRoundHalfUp(0n, 7n)).toBe(0n);
    expect(divideRoundHalfUp(12n, 4n)).toBe(3n);
  });

  it("is within half of the exact quotient, ties up, for any operands", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 90n }), fc.bigInt({ min: 1n, max: 2n ** 60n }), (n, d) => {
        const q = divideRoundHalfUp(n, d);
        expect(2n * n >= (2n * q - 1n) * d).toBe(true);
        expect(2n * n < (2n * q + 1n) * d).toBe(true);
      }),
      { numRuns: 2_000 },
    );
  });

  it("refuses a negative numerator or a non-positive denominator", () => {
    expect(() => divideRoundHalfUp(-1n, 2n)).toThrow(RangeError);
    expect(() => divideRoundHalfUp(1n, 0n)).toThrow(RangeError);
    expect(() => divideRoundHalfUp(1n, -2n)).toThrow(RangeError);
  });
});

describe("formatMoney", () => {
  it("shows cents in the currency, exactly, whatever the size", () => {
    expect(formatMoney(133_409n, "USD")).toBe("$1,334.09");
    expect(formatMoney(0n, "USD")).toBe("$0.00");
    expect(formatMoney(-5n, "USD")).toBe("-$0.05");
    expect(formatMoney(667_695n, "EUR")).toBe("€6,676.95");
    expect(formatMoney(667_695n, "CAD")).toBe("CA$6,676.95");
    // Past 2^53 a float would lose cents; the decimal string keeps them.
    expect(formatMoney(9_223_372_036_854_775_807n, "USD")).toBe("$92,233,720,368,547,758.07");
  });
});

describe("CURRENCY", () => {
  it("is an ISO 4217 code with cents, USD by default", () => {
    expect(loadConfig({}).CURRENCY).toBe("USD");
    expect(loadConfig({ CURRENCY: "EUR" }).CURRENCY).toBe("EUR");
    expect(currencyProblem("GBP")).toBeUndefined();
    expect(() => loadConfig({ CURRENCY: "usd" })).toThrow(/CURRENCY must be an ISO 4217 currency code/);
    expect(() => loadConfig({ CURRENCY: "XYZ" })).toThrow(/CURRENCY must be an ISO 4217 currency code/);
    expect(() => loadConfig({ CURRENCY: "JPY" })).toThrow(/CURRENCY must be a currency with cents: JPY has 0 decimal places/);
  });
});
