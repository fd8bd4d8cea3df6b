import { describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { findOrphanedObligations, orphanPageQuery } from "../../src/db/healing.js";
import { givenOrphans } from "../helpers/orphans.js";
import { testDb } from "../helpers/testDb.js";

const database = await testDb();
const db = database.db;

interface PlanNode {
  "Node Type": string;
  "Index Name"?: string;
  "Actual Rows"?: number;
  Plans?: PlanNode[];
}

function nodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)];
}

describe("the orphan scan query", () => {
  it("reads only the orphans through the partial index, however many settled obligations are dispersed", async () => {
    // 60,000 settled obligations already dispersed (entries written, so the trigger marks them) and 25 orphans.
    const history = await givenOrphans(database, { count: 60_000, perMortgage: 1000, lenderUnits: [10_000] });
    await db.execute(sql`
      insert into dispersal_entries (obligation_id, mortgage_id, lender_id, amount, ownership_units, total_units, dispersal_date)
      select o.id, o.mortgage_id, p.lender_id, o.amount, 10000, 10000, current_date
        from obligations o join mortgage_positions p on p.mortgage_id = o.mortgage_id`);
    const orphans = await givenOrphans(database, { count: 25 });
    // As autovacuum would: the 60,000 rows that left the partial index when their entries were written
    // leave dead index entries behind until a vacuum, and a bitmap scan counts those too.
    await db.execute(sql`vacuum analyze obligations`);

    const page = await findOrphanedObligations(db, { limit: 1000 });
    expect(page.map((o) => o.obligationId).sort()).toEqual([...orphans.obligationIds].sort());
    expect(history.obligationIds).toHaveLength(60_000);

    const [explained] = await db.execute<{ "QUERY PLAN": [{ Plan: PlanNode }] }>(
      sql`explain (analyze, format json) ${orphanPageQuery({ limit: 1000 })}`,
    );
    const plan = nodes(explained!["QUERY PLAN"][0].Plan);
    const obligationScan = plan.find((n) => n["Index Name"] === "obligations_healing_scan_idx");
    expect(obligationScan, JSON.stringify(plan.map((n) => [n["Node Type"], n["Index Name"]]))).toBeDefined();
    expect(obligationScan!["Actual Rows"]).toBe(25);
    expect(plan.some((n) => n["Node Type"] === "Seq Scan" && JSON.stringify(n).includes('"obligations"'))).toBe(false);
  });
});
