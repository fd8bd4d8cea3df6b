// One obligation's error never stops the scan's page loop, its backstop or a bulk requeue: it is
// logged, counted, reported by reconciliation, and the rest goes on. The errors are made real with
// Postgres triggers that refuse one obligation's writes.
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { findAccount } from "../../src/db/ledger.js";
import { runReconciliation } from "../../src/db/reconciliation.js";
import { requeueMany } from "../../src/dashboard/requeueMany.js";
import { scanAndWait } from "../../src/jobs/scanAndWait.js";
import { scanForOrphans } from "../../src/jobs/scan.js";
import { givenMortgage, givenSettledObligation } from "../helpers/factories.js";
import { postCashReceivedBySql } from "../helpers/otherSystems.js";
import { testPipeline } from "../helpers/pipeline.js";
import { testDb } from "../helpers/testDb.js";

const database = await testDb();
// Pages of 2: the poisoned obligation sits on the first page, the others on later ones.
const pipeline = testPipeline(database, { HEALING_SCAN_PAGE_SIZE: "2" });
const { ctx } = pipeline;
const db = database.db;

beforeAll(() => {
  pipeline.startWorkers();
});

afterEach(async () => {
  await db.execute(sql`drop trigger if exists poison on dispersal_healing_attempts`);
  await db.execute(sql`drop trigger if exists poison on cash_journal_entries`);
});

/** Makes every write of `table` that concerns one obligation fail with a plain SQL error (not an outage). */
async function poison(table: "dispersal_healing_attempts" | "cash_journal_entries", obligationId: string, when: string) {
  await db.execute(sql.raw(`
    create or replace function poison_${table}() returns trigger language plpgsql as $$
    begin
      if new.obligation_id = '${obligationId}'::uuid and (${when}) then
        raise exception 'poisoned obligation ${obligationId}';
      end if;
      return new;
    end $$`));
  await db.execute(sql.raw(`create trigger poison before insert or update on ${table} for each row execute function poison_${table}()`));
}

async function status(obligationId: string) {
  const [row] = await db.execute<{ status: string }>(sql`select status from dispersal_healing_attempts where obligation_id = ${obligationId}::uuid`);
  return row?.status;
}

describe("one obligation's error", () => {
  it("does not stop the scan: the poisoned one is counted and reported, every orphan on later pages is healed", async () => {
    // Lowest id: the first row of the first page. Its round used its attempts and no job is live,
    // so the backstop escalates it; the trigger makes that fail.
    const poisoned = await givenSettledObligation(database, { lenders: [0], amount: 9_000n, settledAt: new Date(Date.now() - 2 * 3600_000), ids: { obligation: "00000000-0000-0000-0000-0000000000a1" } });
    await db.execute(sql`
      insert into dispersal_healing_attempts (obligation_id, attempt_count, status, last_error, last_attempt_at)
      values (${poisoned.obligationId}::uuid, 3, 'retrying', 'no active positions', now() - interval '2 hours')`);
    const mortgage = await givenMortgage(database, { lenders: [7000, 3000] });
    const others = await Promise.all(Array.from({ length: 5 }, () => givenSettledObligation(database, { mortgageId: mortgage.mortgageId, amount: 10_000n })));
    await poison("dispersal_healing_attempts", poisoned.obligationId, "new.status = 'escalated'");

    const summary = await scanAndWait(ctx, { timeoutMs: 20_000 });
    expect(summary).toMatchObject({ found: 6, enqueued: 5, dispersed: 5, escalatedByBackstop: 0, obligationErrors: 1 });
    const [dispersed] = await db.execute<{ n: bigint }>(sql`
      select count(*) as n from obligations where dispersed and id in ${sql.raw(`(${others.map((o) => `'${o.obligationId}'`).join(",")})`)}`);
    expect(dispersed!.n).toBe(5n);
    const scan = await scanForOrphans(ctx);
    expect(scan).toMatchObject({ found: 1, obligationErrors: 1, escalatedByBackstop: 0 });
    expect(await status(poisoned.obligationId)).toBe("retrying");
    // Reported: an orphan past its deadline that nobody escalated.
    const report = await runReconciliation(db, { orphanDeadlineMs: 60_000 });
    expect(report.findings.staleOrphans?.sample).toContain(poisoned.obligationId);

    // The cause removed, the next scan's backstop escalates it: a round that used its attempts ends escalated.
    await db.execute(sql`drop trigger poison on dispersal_healing_attempts`);
    expect(await scanForOrphans(ctx)).toMatchObject({ escalatedByBackstop: 1, obligationErrors: 0 });
    expect(await status(poisoned.obligationId)).toBe("escalated");
    expect((await findAccount(db, { family: "SUSPENSE", mortgageId: poisoned.mortgageId, obligationId: poisoned.obligationId }))?.balance).toBe(9_000n);
  });

  it("does not stop the backstop's top-ups: the other short escalation is topped up, the poisoned one reported", async () => {
    const a = await givenSettledObligation(database, { lenders: [0], amount: 20_000n, cashReceived: [15_000n] });
    const b = await givenSettledObligation(database, { lenders: [0], amount: 20_000n, cashReceived: [15_000n] });
    await scanAndWait(ctx, { timeoutMs: 20_000 });
    expect([await status(a.obligationId), await status(b.obligationId)]).toEqual(["escalated", "escalated"]);
    await postCashReceivedBySql(database, a.obligationId, 5_000n);
    await postCashReceivedBySql(database, b.obligationId, 5_000n);
    await poison("cash_journal_entries", a.obligationId, "new.entry_type = 'SUSPENSE_ESCALATED'");

    expect(await scanForOrphans(ctx)).toMatchObject({ suspenseToppedUp: 1, obligationErrors: 1 });
    const suspense = async (o: typeof a) => (await findAccount(db, { family: "SUSPENSE", mortgageId: o.mortgageId, obligationId: o.obligationId }))?.balance;
    expect([await suspense(a), await suspense(b)]).toEqual([15_000n, 20_000n]);
    const report = await runReconciliation(db, { orphanDeadlineMs: 60_000 });
    expect(report.findings.escalatedSuspenseMismatch?.sample).toEqual([a.obligationId]);

    await db.execute(sql`drop trigger poison on cash_journal_entries`);
    expect(await scanForOrphans(ctx)).toMatchObject({ suspenseToppedUp: 1, obligationErrors: 0 });
    expect(await suspense(a)).toBe(20_000n);
  });

  it("does not stop a bulk requeue: the others are requeued, the failed one answered with 500", async () => {
    const escalated = await Promise.all(Array.from({ length: 3 }, () => givenSettledObligation(database, { lenders: [0], amount: 4_000n })));
    await scanAndWait(ctx, { timeoutMs: 20_000 });
    const [first, poisoned, last] = escalated.map((o) => o.obligationId) as [string, string, string];
    await poison("dispersal_healing_attempts", poisoned, "new.status = 'requeued'");

    const summary = await requeueMany(ctx, [first, poisoned, last], { actor: "olga", channel: "api", reason: "positions fixed" });
    expect(summary).toMatchObject({ requested: 3, requeued: 2, refused: 1, interrupted: false });
    expect(summary.results.map((r) => [r.obligationId, r.outcome])).toEqual([
      [first, "requeued"],
      [poisoned, "refused"],
      [last, "requeued"],
    ]);
    expect(summary.results[1]).toMatchObject({ status: 500 });
    expect(await status(poisoned)).toBe("escalated");
  });
});
