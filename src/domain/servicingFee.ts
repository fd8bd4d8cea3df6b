// The servicer's fee taken from one settled obligation before the lenders' split (DESIGN.md §3 step 4).
import { divideRoundHalfUp } from "./money.js";

export type PaymentFrequency = "monthly" | "bi_weekly" | "accelerated_bi_weekly" | "weekly";
export type ObligationType = "regular_interest" | "principal_repayment" | "late_fee" | "arrears_cure";

export const PERIODS_PER_YEAR: Record<PaymentFrequency, bigint> = {
  monthly: 12n,
  bi_weekly: 26n,
  accelerated_bi_weekly: 26n,
  weekly: 52n,
};

export interface FeeInput {
  obligationType: ObligationType;
  principal: bigint;
  servicingFeeBps: number;
  paymentFrequency: PaymentFrequency;
  settledAmount: bigint;
}

/** round-half-up(principal × bps / 10,000 / periods), only on regular interest, capped at the settled amount. */
export function servicingFeeForPeriod(input: FeeInput): bigint {
  if (input.obligationType !== "regular_interest") return 0n;
  if (!Number.isInteger(input.servicingFeeBps) || input.servicingFeeBps < 0 || input.servicingFeeBps > 10_000) {
    throw new RangeError(`servicing_fee_bps must be an integer in 0..10000, got ${input.servicingFeeBps}`);
  }
  if (input.principal < 0n || input.settledAmount < 0n) throw new RangeError("principal and settled amount must not be negative");
  const fee = divideRoundHalfUp(input.principal * BigInt(input.servicingFeeBps), 10_000n * PERIODS_PER_YEAR[input.paymentFrequency]);
  return fee < input.settledAmount ? fee : input.settledAmount;
}
