// givenOrphans(): many settled obligations without dispersal entries, written set-based in one transaction.
// Without CASH_RECEIVED postings the settled amount is the obligation's amount (DESIGN.md §3 step 3).
import { sql } from "drizzle-orm";
import type { Database } from "../../src/db/client.js";

export interface OrphanSet {
  obligationIds: string[];
  /** Obligations on mortgages whose positions are all zero: they can only be escalated. */
  unfixableIds: string[];
}

export async function givenOrphans(
  database: Database,
  /** status "due": open obligations instead (not settled, no settled_at), for tests that settle them. */
  options: { count: number; unfixable?: number; perMortgage?: number; lenderUnits?: number[]; amount?: bigint; status?: "settled" | "due" },
): Promise<OrphanSet> {
  const perMortgage = options.perMortgage ?? 50;
  const units = options.lenderUnits ?? [5000, 3000, 2000];
  const make = async (count: number, zeroUnits: boolean): Promise<string[]> => {
    if (count === 0) return [];
    const mortgages = Math.ceil(count / perMortgage);
    const rows = await database.db.transaction(async (tx) => {
      await tx.execute(sql`
        create temp table new_mortgages on commit drop as
        select gen_random_uuid() as id, n from generate_series(1, ${mortgages}) n`);
      await tx.execute(sql`
        insert into mortgages (id, reference, principal, servicing_fee_bps, payment_frequency)
        select id, 'ORPH-' || id::text, 30000000, 0, 'monthly' from new_mortgages`);
      await tx.execute(sql`
        create temp table new_lenders on commit drop as
        select m.id as mortgage_id, gen_random_uuid() as lender_id, u.units
          from new_mortgages m cross join unnest(${`{${units.join(",")}}`}::bigint[]) as u(units)`);
      await tx.execute(sql`insert into lenders (id, name) select lender_id, 'Lender ' || lender_id::text from new_lenders`);
      await tx.execute(sql`
        insert into mortgage_positions (mortgage_id, lender_id, units)
        select mortgage_id, lender_id, ${zeroUnits ? sql`0` : sql`units`} from new_lenders`);
      return tx.execute<{ id: string }>(sql`
        insert into obligations (mortgage_id, type, amount, status, due_date, settled_at)
        select m.id, 'principal_repayment', ${(options.amount ?? 100_000n).toString()}::bigint + (g % 997),
               ${options.status ?? "settled"}, current_date, ${options.status === "due" ? sql`null` : sql`now()`}
          from generate_series(0, ${count - 1}) g
          join new_mortgages m on m.n = (g / ${perMortgage}) + 1
        returning id`);
    });
    return rows.map((r) => r.id);
  };
  const unfixableIds = await make(options.unfixable ?? 0, true);
  const fixable = await make(options.count - unfixableIds.length, false);
  return { obligationIds: [...fixable, ...unfixableIds], unfixableIds };
}
