// The benchmark's history data set (bench/historyData.ts), built at a tiny scale: its ledger must
// be what the service itself would have left — reconciliation clean, every foreign key satisfied,
// the schema's indexes back as the migrations made them, and a dispersal of any of its obligations
// a replay (the journal already holds what the service would post, under the keys it would use).
import { describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { disperseObligations } from "../../src/db/dispersals.js";
import { findOrphanedObligations } from "../../src/db/healing.js";
import { runReconciliation } from "../../src/db/reconciliation.js";
import { buildHistory, emptyShape, historyShape, type HistoryCounts } from "../../bench/historyData.js";
import { testDb } from "../helpers/testDb.js";

const database = await testDb({ max: 6 });

const indexDefinitions = async () =>
  (await database.sql<{ def: string }[]>`select indexdef as def from pg_indexes where schemaname = 'public' order by 1`).map((r) => r.def);
const constraintDefinitions = async () =>
  (await database.sql<{ def: string }[]>`
    select conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) as def
      from pg_constraint where connamespace = 'public'::regnamespace order by 1`).map((r) => r.def);

const indexesBefore = await indexDefinitions();
const constraintsBefore = await constraintDefinitions();
// 200 mortgages (12,000 obligations, ~200,000 journal rows): the full shape at 1/250.
const shape = historyShape(0.004);
const counts: HistoryCounts = await buildHistory(database, shape);

describe("history data set (bench --history), tiny shape", () => {
  it("holds every kind of history the bench measures against", () => {
    expect(counts.obligations).toBe(shape.mortgages * shape.obligationsPerMortgage);
    expect(counts.dispersed).toBeGreaterThan(counts.obligations * 0.8);
    expect(counts.journalEntries).toBeGreaterThan(counts.obligations * 15);
    expect(counts.openEscalations).toBeGreaterThan(0);
    expect(counts.resolvedEscalations).toBeGreaterThan(0);
    expect(counts.returnedPayments).toBeGreaterThan(0);
    expect(counts.reconciliationRuns).toBe(shape.reconciliationRuns);
    expect(counts.auditRows).toBeGreaterThan(counts.dispersed);
  });

  it("leaves the schema as the migrations made it: every index and constraint back", async () => {
    expect(await indexDefinitions()).toEqual(indexesBefore);
    expect(await constraintDefinitions()).toEqual(constraintsBefore);
  });

  it("satisfies every foreign key (loaded without their triggers)", async () => {
    const keys = await database.sql<{ child: string; column: string; parent: string; parentColumn: string }[]>`
      select c.conrelid::regclass::text as child, a.attname as column, c.confrelid::regclass::text as parent, pa.attname as "parentColumn"
        from pg_constraint c
        join pg_attribute a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
        join pg_attribute pa on pa.attrelid = c.confrelid and pa.attnum = c.confkey[1]
       where c.contype = 'f' and c.connamespace = 'public'::regnamespace and cardinality(c.conkey) = 1`;
    expect(keys.length).toBeGreaterThan(10);
    const broken: string[] = [];
    for (const k of keys) {
      const [row] = await database.sql.unsafe<{ n: number }[]>(`
        select count(*)::int as n from ${k.child} c
         where c.${k.column} is not null and not exists (select 1 from ${k.parent} p where p.${k.parentColumn} = c.${k.column})`);
      if (row!.n > 0) broken.push(`${k.child}.${k.column}: ${row!.n}`);
    }
    expect(broken).toEqual([]);
  });

  it("reconciles clean (runReconciliation, every check)", async () => {
    // TODO(issue 22, incremental reconciliation): pass the scope (daily / full) here once runReconciliation takes one.
    const report = await runReconciliation(database.db, { orphanDeadlineMs: 3_600_000 });
    expect(report.findings.error).toBeUndefined();
    expect({ status: report.status, defects: report.defectCount }).toEqual({ status: "clean", defects: 0 });
  });

  it("leaves nothing for the healer: the only orphans are the open escalations", async () => {
    expect(await findOrphanedObligations(database.db, { limit: 10 })).toEqual([]);
    const [row] = await database.db.execute<{ orphans: number; escalated: number }>(sql`
      select (select count(*)::int from obligations where status = 'settled' and not dispersed) as orphans,
             (select count(*)::int from dispersal_healing_attempts where status = 'escalated') as escalated`);
    expect(row!.orphans).toBe(row!.escalated);
  });

  it("reads as the service's own journal: dispersing its obligations again writes nothing", async () => {
    const ids = (await database.db.execute<{ id: string }>(sql`
      (select o.id::text from obligations o where o.id in (select obligation_id from dispersal_entries where allocation = 2) limit 20)
      union all
      (select o.id::text from obligations o where o.dispersed and o.status = 'settled' order by o.id limit 40)
      union all
      (select obligation_id::text from dispersal_healing_attempts where status = 'resolved' and escalated_at is not null limit 10)`)).map((r) => r.id);
    expect(ids.length).toBeGreaterThan(40);
    const journalBefore = await database.sql<{ n: string }[]>`select count(*)::text as n from cash_journal_entries`;
    const outcomes = await database.db.transaction((tx) => disperseObligations(tx, ids));
    const notReplayed = [...outcomes.values()].filter((o) => o.outcome !== "dispersed" || !o.dispersal.replayed).map((o) => o.obligationId);
    expect(notReplayed).toEqual([]);
    expect(await database.sql<{ n: string }[]>`select count(*)::text as n from cash_journal_entries`).toEqual(journalBefore);
  });

  it("makes an empty shape with the same open escalations and no history", () => {
    const empty = emptyShape(historyShape(1));
    expect(empty.mortgages * empty.obligationsPerMortgage * empty.settledShare).toBeCloseTo(10_000, -2);
    expect(empty.returnedRepaidShare + empty.resolvedEscalationShare + empty.healedShare).toBe(0);
  });
});
