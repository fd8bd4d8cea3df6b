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

const formatters = new Map<string, Intl.NumberFormat>();

function formatterOf(currency: string): Intl.NumberFormat {
  let formatter = formatters.get(currency);
  if (!formatter) {
    formatter = new Intl.NumberFormat("en-US", { style: "currency", currency, minimumFractionDigits: 2, maximumFractionDigits: 2 });
    formatters.set(currency, formatter);
  }
  return formatter;
}

/**
 * Cents as an amount of `currency` for people (pages, CSV): "$1,334.09". Intl formats the decimal
 * string exactly, so no amount bigint holds loses a cent on the way through a float.
 */
export function formatMoney(cents: bigint, currency: string): string {
  const sign = cents < 0n ? "-" : "";
  const abs = cents < 0n ? -cents : cents;
  return formatterOf(currency).format(`${sign}${abs / 100n}.${(abs % 100n).toString().padStart(2, "0")}` as unknown as number); // Intl takes the decimal string; ES2022's types do not say so
}

/**
 * Why `code` cannot be the ledger's currency, or undefined when it can: an ISO 4217 code this
 * runtime knows, whose minor unit is the hundredth the ledger counts in (cents).
 */
export function currencyProblem(code: string): string | undefined {
  if (!/^[A-Z]{3}$/.test(code) || !Intl.supportedValuesOf("currency").includes(code)) return "must be an ISO 4217 currency code in capitals (e.g. USD, EUR, CAD, GBP)";
  const digits = new Intl.NumberFormat("en-US", { style: "currency", currency: code }).resolvedOptions().maximumFractionDigits;
  if (digits !== 2) return `must be a currency with cents: ${code} has ${digits} decimal places, and amounts are kept in hundredths`;
  return undefined;
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
