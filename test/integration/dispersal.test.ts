import { describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { disperseObligation } from "../../src/db/dispersals.js";
import { testDb } from "../helpers/testDb.js";
import { givenSettledObligation } from "../helpers/factories.js";

const database = await testDb();

describe("disperseObligation", () => {
  it("splits the settled amount pro rata with exact per-lender cents", async () => {
    const given = await givenSettledObligation(database, { lenders: [5000, 3000, 2000], amount: 100_001n, type: "late_fee" });
    const result = await database.db.transaction((tx) => disperseObligation(tx, given.obligationId));
    expect(result.replayed).toBe(false);
    const byLender = new Map(result.entries.map((e) => [e.lenderId, e.amount]));
    expect(given.lenderIds.map((id) => byLender.get(id))).toEqual([50_001n, 30_000n, 20_000n]);
    const [row] = await database.db.execute<{ dispersed: boolean }>(sql`select dispersed from obligations where id = ${given.obligationId}::uuid`);
    expect(row!.dispersed).toBe(true);
  });

  it("writes one set of entries when two callers disperse the same obligation at once", async () => {
    const given = await givenSettledObligation(database, { lenders: [7000, 3000], amount: 99_999n, servicingFeeBps: 100 });
    const results = await Promise.all([0, 1].map(() => database.db.transaction((tx) => disperseObligation(tx, given.obligationId))));
    expect(results.map((r) => r.replayed).sort()).toEqual([false, true]);
    const [count] = await database.db.execute<{ entries: bigint; postings: bigint }>(sql`
      select (select count(*) from dispersal_entries where obligation_id = ${given.obligationId}::uuid) as entries,
             (select count(*) from cash_journal_entries where obligation_id = ${given.obligationId}::uuid
               and entry_type in ('LENDER_PAYABLE_CREATED', 'SERVICING_FEE_RECOGNIZED')) as postings`);
    expect(count).toEqual({ entries: 2n, postings: 3n });
  });
});
