// Money is integer minor units (cents) held as bigint; these are the only conversions to and from text.

const CENTS = /^-?\d+$/;

export function parseCents(value: string | bigint): bigint {
  if (typeof value === "bigint") return value;
  if (!CENTS.test(value)) throw new RangeError(`not an integer amount of cents: ${JSON.stringify(value)}`);
  return BigInt(value);
}

export function formatCents(cents: bigint): string {
  const sign = cents < 0n ? "-" : "";
  const abs = cents < 0n ? -cents : cents;
  const whole = (abs / 100n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${sign}${whole}.${(abs % 100n).toString().padStart(2, "0")}`;
}

export function sumCents(values: Iterable<bigint>): bigint {
  let total = 0n;
  for (const v of values) total += v;
  return total;
}

/** round-half-up of numerator / denominator for non-negative operands. */
export function divideRoundHalfUp(numerator: bigint, denominator: bigint): bigint {
  if (denominator <= 0n || numerator < 0n) throw new RangeError("divideRoundHalfUp takes a non-negative numerator and a positive denominator");
  return (numerator * 2n + denominator) / (denominator * 2n);
}
