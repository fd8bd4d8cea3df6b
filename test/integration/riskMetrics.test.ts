import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { sql } from "drizzle-orm";
import { disperseObligation } from "../../src/db/dispersals.js";
import { escalateToSuspense, recordFailedAttempt } from "../../src/db/healing.js";
import { runReconciliation } from "../../src/db/reconciliation.js";
import { orphanDeadlineMs } from "../../src/domain/orphanDeadline.js";
import { enqueueRetriggers } from "../../src/queues/retriggerJobs.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { postCashReversalBySql } from "../helpers/otherSystems.js";
import { givenRequeued } from "../helpers/healingRows.js";
import { testPipeline } from "../helpers/pipeline.js";
import { waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";
import { sample } from "../helpers/prometheusText.js";
import { formatMoney } from "../../src/domain/money.js";

const SCRAPER = { name: "prometheus", secret: "scrape-secret-0001" };

const database = await testDb();
const pipeline = testPipeline(database, { OPS_USERS: `${SCRAPER.name}:viewer:${SCRAPER.secret}` });
const { ctx, config } = pipeline;
let http: HttpServer;

const authorization = `Basic ${Buffer.from(`${SCRAPER.name}:${SCRAPER.secret}`).toString("base64")}`;

async function scrape(): Promise<string> {
  return get("/metrics");
}

async function get(path: string): Promise<string> {
  const response = await fetch(`${http.url}${path}`, { headers: { authorization } });
  expect(response.status, path).toBe(200);
  return response.text();
}

/** The gauges are cached for a second per scrape: wait until a scrape shows what is expected. */
async function scrapeUntil(check: (text: string) => boolean, what: string): Promise<string> {
  return waitFor(async () => {
    const text = await scrape();
    return check(text) ? text : undefined;
  }, { timeoutMs: 10_000, what, everyMs: 300 });
}

beforeAll(async () => {
  http = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
});

afterAll(async () => {
  await http?.close();
});

describe("money-at-risk metrics", () => {
  it("read zero when nothing is at risk, and the orphan deadline from the settings", async () => {
    const text = await scrape();
    expect(sample(text, "dispersal_suspense_cents")).toBe(0);
    expect(sample(text, "dispersal_shortfall_cents")).toBe(0);
    expect(sample(text, "dispersal_shortfall_obligations")).toBe(0);
    expect(sample(text, "dispersal_oldest_orphan_age_seconds")).toBe(0);
    expect(sample(text, "dispersal_escalation_oldest_age_seconds")).toBe(0);
    for (const state of ["new", "retrying", "requeued", "escalated"]) expect(sample(text, "dispersal_orphans", { state })).toBe(0);
    expect(sample(text, "dispersal_retrigger_backlog")).toBe(0);
    expect(sample(text, "dispersal_reconciliation_defects")).toBe(0);
    expect(sample(text, "dispersal_orphan_deadline_seconds")).toBe(
      orphanDeadlineMs({ scanEveryMs: config.HEALING_SCAN_EVERY_MS, backoffMs: config.HEALING_BACKOFF_MS, attempts: config.HEALING_ATTEMPTS }) / 1000,
    );
  });

  it("count orphans by state, age the oldest one not escalated, total SUSPENSE, and count the retrigger backlog", async () => {
    const hour = 3600 * 1000;
    const fresh = await givenSettledObligation(database, { settledAt: new Date(Date.now() - 2 * hour) });
    const retrying = await givenSettledObligation(database, { settledAt: new Date(Date.now() - 1 * hour) });
    await recordFailedAttempt(database.db, retrying.obligationId, 1, "no active positions");
    // Older than both, but escalated: it is in SUSPENSE, not a stuck orphan.
    const parked = await givenSettledObligation(database, { lenders: [0], amount: 12_345n, settledAt: new Date(Date.now() - 5 * hour) });
    await database.db.transaction((tx) => escalateToSuspense(tx, parked.obligationId, { actor: "test", reason: "no active positions", attemptCount: 3 }));
    // Settled 30 days ago, escalated, requeued just now: a new round, so its clock starts at the requeue.
    const requeued = await givenSettledObligation(database, { lenders: [0], amount: 500n, settledAt: new Date(Date.now() - 30 * 24 * hour) });
    await database.db.transaction((tx) => escalateToSuspense(tx, requeued.obligationId, { actor: "test", reason: "no active positions", attemptCount: 3 }));
    await givenRequeued(database, requeued.obligationId);
    await enqueueRetriggers(ctx.queues, ctx.settings, [fresh.obligationId, retrying.obligationId]);

    const text = await scrapeUntil((t) => sample(t, "dispersal_suspense_cents") > 0, "SUSPENSE in /metrics");
    expect(sample(text, "dispersal_suspense_cents")).toBe(12_345 + 500); // a requeued one stays in SUSPENSE until resolved
    expect(sample(text, "dispersal_orphans", { state: "new" })).toBe(1);
    expect(sample(text, "dispersal_orphans", { state: "retrying" })).toBe(1);
    expect(sample(text, "dispersal_orphans", { state: "escalated" })).toBe(1);
    expect(sample(text, "dispersal_orphans", { state: "requeued" })).toBe(1);
    const age = sample(text, "dispersal_oldest_orphan_age_seconds");
    expect(age).toBeGreaterThanOrEqual(2 * 3600);
    expect(age).toBeLessThan(2 * 3600 + 120);
    expect(sample(text, "dispersal_escalation_oldest_age_seconds")).toBeLessThan(120);
    // Reconciliation's clock for the same orphans: nothing older than the metric says.
    const { orphanAges } = await import("../../src/db/orphanAges.js");
    const oldestOnReconciliationClock = Math.max(...(await orphanAges(database.db)).filter((a) => a.state !== "escalated").map((a) => a.oldestAgeSeconds));
    expect(Math.abs(oldestOnReconciliationClock - age)).toBeLessThan(60);
    expect(sample(text, "dispersal_retrigger_backlog")).toBe(2);
  });

  it("report the latest reconciliation's defect count", async () => {
    const report = await runReconciliation(database.db, { scanIntervalMs: config.HEALING_SCAN_EVERY_MS });
    expect(report.defectCount).toBeGreaterThan(0); // the two-hour-old orphans are stale
    const text = await scrapeUntil((t) => sample(t, "dispersal_reconciliation_defects") > 0, "defects in /metrics");
    expect(sample(text, "dispersal_reconciliation_defects")).toBe(report.defectCount);
    expect(sample(text, "dispersal_reconciliation_failed")).toBe(0);
  });
});

describe("the shortfall: entries paid out of cash since returned", () => {
  const db = database.db;
  /** Dispersed, then (by SQL, as the payout system and the payments system write) its entries marked paid and some of its cash returned. */
  async function paidThenReturned(options: { amount: bigint; cash: bigint[]; returned: bigint[]; paid: boolean; feeBps?: number }) {
    const given = await givenSettledObligation(database, { lenders: [5000, 3000, 2000], amount: options.amount, cashReceived: options.cash, servicingFeeBps: options.feeBps ?? 0, principal: 12_000_000n });
    await db.transaction((tx) => disperseObligation(tx, given.obligationId));
    if (options.paid) {
      await db.execute(sql`update dispersal_entries set status = 'paid' where obligation_id = ${given.obligationId}::uuid`);
      await db.execute(sql`update servicing_fee_entries set status = 'paid' where obligation_id = ${given.obligationId}::uuid`);
    }
    for (const amount of options.returned) {
      const [cash] = await db.execute<{ id: string }>(sql`
        select id::text from cash_journal_entries where obligation_id = ${given.obligationId}::uuid and entry_type = 'CASH_RECEIVED' and amount = ${amount.toString()}::bigint`);
      await postCashReversalBySql(database, cash!.id);
    }
    return given;
  }

  it("sums, to the cent, what paid entries hold beyond the net cash, in the API, its CSV, /metrics and the /ops header", async () => {
    // 100,000 paid out (fee 10,000 included), 40,000 of it returned: 40,000 short.
    await paidThenReturned({ amount: 100_000n, cash: [60_000n, 40_000n], returned: [40_000n], paid: true, feeBps: 100 });
    // 12,345 paid out, all of it returned: 12,345 short.
    await paidThenReturned({ amount: 12_345n, cash: [12_345n], returned: [12_345n], paid: true });
    // Returned before the payout (entries still pending, the healer reverses them): nothing short.
    await paidThenReturned({ amount: 777n, cash: [700n, 77n], returned: [77n], paid: false });
    // Paid out, nothing returned: nothing short.
    await paidThenReturned({ amount: 5_000n, cash: [5_000n], returned: [], paid: true });

    const api = JSON.parse(await get("/api/money-at-risk"));
    expect(api).toMatchObject({ shortfallCents: "52345", shortfallObligations: 2 });
    expect(api.suspenseCents).toEqual(expect.any(String));
    const csv = (await get("/api/money-at-risk.csv")).split("\r\n");
    expect(csv[0]).toBe("category,cents,amount,obligations");
    expect(csv).toContain("shortfall,52345,$523.45,2");
    expect(csv.find((l) => l.startsWith("suspense,"))).toBe(`suspense,${api.suspenseCents},${formatMoney(BigInt(api.suspenseCents), "USD")},${api.openEscalations}`);

    const text = await scrapeUntil((t) => sample(t, "dispersal_shortfall_cents") > 0, "the shortfall in /metrics");
    expect(sample(text, "dispersal_shortfall_cents")).toBe(52_345);
    expect(sample(text, "dispersal_shortfall_obligations")).toBe(2);

    const ops = await get("/ops");
    expect(ops).toMatch(/data-risk="shortfall"[^>]*><div class="label">Shortfall<\/div><div class="value">\$523\.45</);
    expect(ops).toContain('href="/api/money-at-risk.csv"');
    expect(ops).toMatch(/data-risk="shortfall-obligations"><div class="label">Obligations short<\/div><div class="value">2</);
  });
});
