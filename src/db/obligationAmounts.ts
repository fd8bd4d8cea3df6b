// The amounts of an obligation that every reader uses (DESIGN.md §3), each defined once in SQL
// (drizzle/0006_allocations.sql) and named here only: net settled cash, what the journal
// allocates, and its SUSPENSE over every account it is filed under; and the shortfall, over them.
// All numeric (exact, unbounded).
import { sql, type SQL } from "drizzle-orm";

/** CASH_RECEIVED − their REVERSALs; the obligation's amount only when it has no cash posting at all. */
export const netCashOf = (obligationId: SQL): SQL => sql`obligation_net_cash(${obligationId})`;

/** CASH_RECEIVED − their REVERSALs (0 without any): what the borrower has paid and not had returned. */
export const netReceivedOf = (obligationId: SQL): SQL => sql`obligation_net_received(${obligationId})`;

/** The obligation's LENDER_PAYABLE_CREATED and SERVICING_FEE_RECOGNIZED, net of their REVERSALs. */
export const allocatedOf = (obligationId: SQL): SQL => sql`obligation_allocated(${obligationId})`;

/** Debits − credits of every SUSPENSE account of the obligation, whichever mortgage it is filed under. */
export const suspenseOf = (obligationId: SQL): SQL => sql`obligation_suspense(${obligationId})`;

/**
 * The shortfall (DESIGN.md §3, delta < 0): cents of the entries a payout system marked `paid`
 * (payables and fee) beyond the net settled cash, 0 when the cash covers them. Paid entries are
 * never reversed, so this is money already paid out that the cash no longer backs. Defined here,
 * not in SQL: `paid` is the payout system's status on the projection, not a journal amount.
 */
export const shortfallOf = (obligationId: SQL): SQL => sql`greatest(
    coalesce((select sum(d.amount) from dispersal_entries d where d.obligation_id = ${obligationId} and d.status = 'paid'), 0)
  + coalesce((select sum(f.amount) from servicing_fee_entries f where f.obligation_id = ${obligationId} and f.status = 'paid'), 0)
  - ${netCashOf(obligationId)}, 0)`;

/** A numeric read as text, as bigint cents (throws RangeError past the bigint range: the caller decides). */
export function centsFromNumeric(value: string | bigint | number | null | undefined): bigint {
  if (value === null || value === undefined) return 0n;
  return BigInt(String(value));
}

/** Which allocation a payable or fee posting belongs to: its metadata's number; journals of before carry none (allocation 1). */
export const postingAllocation = (alias: string): SQL =>
  sql.raw(`(case when ${alias}.metadata->>'allocation' ~ '^[0-9]{1,9}$' then (${alias}.metadata->>'allocation')::int else 1 end)`);
