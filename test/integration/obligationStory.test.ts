import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { writeAudit } from "../../src/db/audit.js";
import { readMoneyAtRisk } from "../../src/db/moneyAtRisk.js";
import { scanAndWait } from "../../src/jobs/scanAndWait.js";
import { givenSettledObligation, type GivenObligationResult } from "../helpers/factories.js";
import { testPipeline } from "../helpers/pipeline.js";
import { waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";
import { httpCall } from "../helpers/http.js";

const OLGA = { name: "olga", secret: "olga-operator-secret" };
const VICTOR = { name: "victor", secret: "victor-viewer-secret" };

const database = await testDb();
const pipeline = testPipeline(database, { OPS_USERS: `${OLGA.name}:operator:${OLGA.secret},${VICTOR.name}:viewer:${VICTOR.secret}` });
const { ctx, config } = pipeline;
const db = database.db;

let http: HttpServer;
let escalated: GivenObligationResult;
let olderEscalations: GivenObligationResult[];
let dispersed: GivenObligationResult;
const LENDER_NAME = "Harbour & <Co> Pension Fund";

async function get(path: string, as: { name: string; secret: string } | null = VICTOR) {
  return httpCall(http.url, "GET", path, as ? { as } : {});
}

beforeAll(async () => {
  pipeline.startWorkers();
  escalated = await givenSettledObligation(database, { lenders: [0], amount: 667_695n });
  olderEscalations = [
    await givenSettledObligation(database, { lenders: [0], amount: 1_000n }),
    await givenSettledObligation(database, { lenders: [0], amount: 2_000n }),
  ];
  // 1% a year on 12,000,000.00 monthly: a fee of 10,000.00 — below the amount, so lenders get the rest.
  dispersed = await givenSettledObligation(database, { lenders: [6000, 4000], amount: 5_000_000n, servicingFeeBps: 100, principal: 1_200_000_000n });
  await db.execute(sql`update lenders set name = ${LENDER_NAME} where id = ${dispersed.lenderIds[0]!}::uuid`);
  const summary = await scanAndWait(ctx, { timeoutMs: 30_000 });
  expect(summary).toMatchObject({ found: 4, dispersed: 1, escalated: 3 });
  // Age buckets: one escalation 3 days old, one 10 days old.
  await db.execute(sql`update dispersal_healing_attempts set escalated_at = now() - interval '3 days' where obligation_id = ${olderEscalations[0]!.obligationId}::uuid`);
  await db.execute(sql`update dispersal_healing_attempts set escalated_at = now() - interval '10 days' where obligation_id = ${olderEscalations[1]!.obligationId}::uuid`);
  // What the four-eyes requeue (another branch) writes: the story must show any audit action as it is.
  await writeAudit(db, {
    action: "dispersal.self_healing_requeue_requested",
    actor: "olga",
    resourceType: "obligation",
    resourceId: escalated.obligationId,
    severity: "warning",
    metadata: { reason: "positions corrected in <the> servicing system", channel: "api" },
  });
  http = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
});

afterAll(async () => {
  await http?.close();
});

describe("GET /api/obligations/:obligationId", () => {
  it("tells an escalation's whole story: postings with both accounts, healing row, failed job, timeline with audit actions", async () => {
    const { status, json } = await get(`/api/obligations/${escalated.obligationId}`);
    expect(status).toBe(200);
    expect(json.obligation).toMatchObject({ id: escalated.obligationId, amount: "667695", status: "settled", dispersed: false });
    expect(json.mortgage).toMatchObject({ id: escalated.mortgageId, reference: `M-${escalated.mortgageId}` });
    expect(json.suspenseBalance).toBe("667695");
    expect(json.postings.map((p: any) => p.entryType)).toEqual(["OBLIGATION_ACCRUED", "CASH_RECEIVED", "SUSPENSE_ESCALATED"]);
    const suspense = json.postings[2];
    expect(suspense).toMatchObject({
      amount: "667695",
      idempotencyKey: `suspense-escalation:${escalated.obligationId}`,
      actor: "dispersal-healing",
      debit: { family: "SUSPENSE", mortgageId: escalated.mortgageId, obligationId: escalated.obligationId, lenderId: null },
      credit: { family: "BORROWER_RECEIVABLE", obligationId: escalated.obligationId },
    });
    expect(suspense.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(json.dispersalEntries).toEqual([]);
    expect(json.healing).toMatchObject({ status: "escalated", attemptCount: 3, lastError: expect.stringMatching(/no active positions/i) });
    expect(json.job).toMatchObject({ state: "failed", attemptsMade: 3, attempts: 3, failedReason: expect.stringMatching(/no active positions/i) });

    const actions = json.timeline.map((t: any) => t.action);
    expect(actions).toEqual(expect.arrayContaining(["obligation.settled", "ledger.suspense_escalated", "dispersal.self_healing_escalated", "dispersal.self_healing_requeue_requested", "job.failed"]));
    const requested = json.timeline.find((t: any) => t.action === "dispersal.self_healing_requeue_requested");
    expect(requested).toMatchObject({ kind: "audit", actor: "olga", reason: "positions corrected in <the> servicing system" });
    const escalation = json.timeline.find((t: any) => t.action === "dispersal.self_healing_escalated");
    expect(escalation).toMatchObject({ kind: "audit", actor: "dispersal-healing", reason: expect.stringMatching(/no active positions/i) });
    const times = json.timeline.map((t: any) => t.at);
    expect([...times].sort()).toEqual(times);
  });

  it("shows who was paid how much, the fee, and that they add up to the settled amount", async () => {
    const { status, json } = await get(`/api/obligations/${dispersed.obligationId}`, OLGA);
    expect(status).toBe(200);
    expect(json.servicingFees).toEqual([expect.objectContaining({ allocation: 1, amount: "1000000", annualRateBps: 100, status: "pending" })]);
    expect(json.dispersalEntries.map((e: any) => [e.allocation, e.lenderName, e.amount, e.ownershipUnits, e.totalUnits, e.status])).toEqual([
      [1, LENDER_NAME, "2400000", "6000", "10000", "pending"],
      [1, "Lender 2", "1600000", "4000", "10000", "pending"],
    ]);
    expect(json.positions.map((p: any) => [p.lenderName, p.units])).toEqual([[LENDER_NAME, "6000"], ["Lender 2", "4000"]]);
    expect(json.amounts).toEqual({ netCash: json.obligation.amount, netReceived: expect.any(String), allocated: json.obligation.amount });
    expect(json.dispersal).toEqual({ toLenders: "4000000", fee: "1000000", total: "5000000" });
    expect(json.dispersal).toEqual({ toLenders: "4000000", fee: "1000000", total: "5000000" });
    expect(json.postings.filter((p: any) => p.entryType === "LENDER_PAYABLE_CREATED").map((p: any) => p.credit)).toEqual(
      expect.arrayContaining([expect.objectContaining({ family: "LENDER_PAYABLE", lenderId: dispersed.lenderIds[0] })]),
    );
    expect(json.healing).toMatchObject({ status: "resolved" });
    expect(json.suspenseBalance).toBe("0");
  });

  it("answers 400 for a malformed id, 404 for an unknown one, and accepts any uuid-shaped id in any case", async () => {
    const bad = await get("/api/obligations/not-a-uuid");
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatch(/obligationId/);
    const unknown = await get("/api/obligations/30000000-0000-0000-0000-000000000001");
    expect(unknown.status).toBe(404);
    expect(unknown.json).toMatchObject({ code: "OBLIGATION_NOT_FOUND" });
    const upper = await get(`/api/obligations/${escalated.obligationId.toUpperCase()}`);
    expect(upper.status).toBe(200);
    expect(upper.json.obligation.id).toBe(escalated.obligationId);
  });

  it("answers 401 without credentials or with a wrong secret", async () => {
    expect((await get(`/api/obligations/${escalated.obligationId}`, null)).status).toBe(401);
    expect((await get(`/api/obligations/${escalated.obligationId}`, { name: "victor", secret: "wrong-secret-123" })).status).toBe(401);
  });
});

describe("GET /api/search", () => {
  it("finds an obligation by its id, by the first 8 characters of it, by mortgage reference and by lender name", async () => {
    const byId = await get(`/api/search?q=${escalated.obligationId}`);
    expect(byId.status).toBe(200);
    expect(byId.json.obligations.map((o: any) => o.obligationId)).toEqual([escalated.obligationId]);
    expect(byId.json.obligations[0]).toMatchObject({ matchedBy: "obligation", healingStatus: "escalated", amount: "667695" });

    const byPrefix = await get(`/api/search?q=${escalated.obligationId.slice(0, 8)}`);
    expect(byPrefix.json.obligations.map((o: any) => o.obligationId)).toContain(escalated.obligationId);

    const byReference = await get(`/api/search?q=${encodeURIComponent(`m-${escalated.mortgageId.slice(0, 13)}`)}`);
    expect(byReference.json.obligations).toEqual([expect.objectContaining({ obligationId: escalated.obligationId, matchedBy: "mortgage" })]);

    const byLender = await get(`/api/search?q=${encodeURIComponent("harbour & <co>")}`);
    expect(byLender.json.obligations).toEqual([expect.objectContaining({ obligationId: dispersed.obligationId, matchedBy: "lender", lenderName: LENDER_NAME })]);
  });

  it("takes LIKE wildcards literally and refuses an empty or too short query", async () => {
    expect((await get(`/api/search?q=${encodeURIComponent("%%%")}`)).json.obligations).toEqual([]);
    expect((await get(`/api/search?q=${encodeURIComponent("___")}`)).json.obligations).toEqual([]);
    expect((await get("/api/search?q=")).status).toBe(400);
    expect((await get("/api/search?q=ha")).status).toBe(400);
    expect((await get("/api/search")).status).toBe(400);
    expect((await get("/api/search?q=x", null)).status).toBe(401);
  });
});

describe("GET /api/escalations.csv", () => {
  it("hands finance every open escalation as CSV, amounts in cents and formatted, formulas defused", async () => {
    await db.execute(sql`update dispersal_healing_attempts set last_error = ${'=HYPERLINK("http://x", "click"), then +1'} where obligation_id = ${olderEscalations[0]!.obligationId}::uuid`);
    const { status, headers, text } = await get("/api/escalations.csv");
    expect(status).toBe(200);
    expect(headers.get("content-type")).toMatch(/^text\/csv/);
    const lines = text.split("\r\n");
    expect(lines[0]).toBe("obligation_id,mortgage_reference,obligation_type,amount_cents,amount,suspense_cents,suspense,attempts,requeues,escalated_at,age_seconds,age_days,last_error");
    expect(lines.at(-1)).toBe("");
    expect(lines).toHaveLength(1 + 3 + 1);
    const row = lines.find((l) => l.startsWith(escalated.obligationId))!;
    expect(row).toContain(`,M-${escalated.mortgageId},regular_interest,667695,"$6,676.95",667695,"$6,676.95",3,0,`);
    const defused = lines.find((l) => l.startsWith(olderEscalations[0]!.obligationId))!;
    expect(defused.endsWith(`,"'=HYPERLINK(""http://x"", ""click""), then +1"`)).toBe(true);
    const tenDays = lines.find((l) => l.startsWith(olderEscalations[1]!.obligationId))!.split(",");
    expect(Number(tenDays[10])).toBeGreaterThanOrEqual(10 * 86_400);
  });

  it("needs credentials", async () => {
    expect((await get("/api/escalations.csv", null)).status).toBe(401);
  });
});

describe("money at risk", () => {
  it("totals SUSPENSE and buckets the open escalations by age", async () => {
    const risk = await readMoneyAtRisk(db);
    expect(risk.suspenseCents).toBe(667_695n + 1_000n + 2_000n);
    expect(risk.openEscalations).toBe(3);
    expect(risk.ageBuckets).toEqual({ underOneDay: 1, oneToSevenDays: 1, overSevenDays: 1 });
    expect(risk.oldestAgeSeconds).toBeGreaterThanOrEqual(10 * 86_400);
  });

  it("shows it in the /ops header, with a search box and every row linked to its story", async () => {
    const { status, text } = await get("/ops");
    expect(status).toBe(200);
    expect(text).toMatch(/data-risk="suspense"><div class="label">In SUSPENSE<\/div><div class="value">\$6,706\.95</);
    expect(text).toMatch(/data-bucket="under-1d">1</);
    expect(text).toMatch(/data-bucket="1-7d">1</);
    expect(text).toMatch(/data-bucket="over-7d">1</);
    expect(text).toContain('name="q"');
    for (const id of [escalated.obligationId, ...olderEscalations.map((o) => o.obligationId)]) {
      expect(text).toContain(`href="/ops/obligations/${id}"`);
    }
  });

  it("searches from /ops", async () => {
    const { text } = await get(`/ops?q=${encodeURIComponent("Harbour")}`);
    expect(text).toMatch(/id="search-results"/);
    expect(text).toContain(`href="/ops/obligations/${dispersed.obligationId}"`);
    expect(text).toContain("lender Harbour &amp; &lt;Co&gt; Pension Fund");
  });
});

describe("/ops/obligations/:obligationId", () => {
  it("renders the story for a viewer, amounts for people, every value escaped", async () => {
    const { status, text } = await get(`/ops/obligations/${escalated.obligationId}`);
    expect(status).toBe(200);
    expect(text).toContain("6,676.95");
    expect(text).toContain(`<code class="copy" title="click to select, then copy">${escalated.obligationId}</code>`);
    expect(text).toContain('data-action="dispersal.self_healing_escalated"');
    expect(text).toContain("positions corrected in &lt;the&gt; servicing system");
    const paid = await get(`/ops/obligations/${dispersed.obligationId}`);
    expect(paid.text).toContain("Harbour &amp; &lt;Co&gt; Pension Fund");
    expect(paid.text).not.toContain("<Co>");
    expect(paid.text).toContain("24,000.00");
  });

  it("answers 400 for a malformed id and 404 for an unknown one", async () => {
    const bad = await get("/ops/obligations/%3Cscript%3E");
    expect(bad.status).toBe(400);
    expect(bad.text).not.toContain("<script>");
    expect((await get("/ops/obligations/30000000-0000-0000-0000-000000000001")).status).toBe(404);
    expect((await get(`/ops/obligations/${escalated.obligationId}`, null)).status).toBe(401);
  });
});

describe("the story after a requeue (runs last: it resolves an escalation)", () => {
  it("shows the requeue and the resolution with their actors, the REVERSAL posting and SUSPENSE back to 0", async () => {
    await db.execute(sql`update mortgage_positions set units = 10000 where mortgage_id = ${escalated.mortgageId}::uuid`);
    const response = await fetch(`${http.url}/api/escalations/${escalated.obligationId}/requeue`, {
      method: "POST",
      headers: { authorization: `Basic ${Buffer.from(`${OLGA.name}:${OLGA.secret}`).toString("base64")}`, "content-type": "application/json" },
      body: JSON.stringify({ reason: "positions corrected" }),
    });
    expect(response.status).toBe(202);
    const story = await waitFor(
      async () => {
        const { json } = await get(`/api/obligations/${escalated.obligationId}`);
        return json.healing?.status === "resolved" ? json : undefined;
      },
      { timeoutMs: 20_000, what: "the requeued escalation to resolve" },
    );
    expect(story.suspenseBalance).toBe("0");
    expect(story.obligation.dispersed).toBe(true);
    expect(story.postings.map((p: any) => p.entryType)).toEqual(expect.arrayContaining(["SUSPENSE_ESCALATED", "REVERSAL", "LENDER_PAYABLE_CREATED"]));
    const reversal = story.postings.find((p: any) => p.entryType === "REVERSAL");
    expect(reversal).toMatchObject({ amount: "667695", debit: { family: "BORROWER_RECEIVABLE" }, credit: { family: "SUSPENSE" } });
    const audit = story.timeline.filter((t: any) => t.kind === "audit").map((t: any) => [t.action, t.actor]);
    expect(audit).toEqual(expect.arrayContaining([["dispersal.self_healing_escalated", "dispersal-healing"], ["dispersal.self_healing_requeued", "olga"], ["dispersal.self_healing_resolved", "olga"]]));
    expect(story.timeline.at(-1).action).not.toBe("dispersal.self_healing_escalated");
    expect(story.job).toMatchObject({ state: "completed" });
  });
});
