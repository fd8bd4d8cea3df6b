// Escalations grouped by cause (GET /api/escalations/groups) and the bulk requeue by filter confirmed
// by count (issue 21 items 1 and 2): normalised errors, largest amount first, sums past bigint as
// strings; a count that differs or a dry run changes nothing; more than 500 in one request; four eyes.
import { beforeAll, afterAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { givenMortgage } from "../helpers/factories.js";
import { givenEscalations, givenRequeued } from "../helpers/healingRows.js";
import { httpCall } from "../helpers/http.js";
import { testPipeline } from "../helpers/pipeline.js";
import { testDb } from "../helpers/testDb.js";

const OLGA = { name: "olga", secret: "olga-operator-secret" };
const OSCAR = { name: "oscar", secret: "oscar-operator-secret" };
const VICTOR = { name: "victor", secret: "victor-viewer-secret" };
const USERS = `${OLGA.name}:operator:${OLGA.secret},${OSCAR.name}:operator:${OSCAR.secret},${VICTOR.name}:viewer:${VICTOR.secret}`;
const NO_POSITIONS = "no active positions: mortgage {mortgage} has no lender with units > 0";
const NO_POSITIONS_NORMALISED = "no active positions: mortgage <id> has no lender with units > <n>";

const database = await testDb();
const alone = testPipeline(database, { OPS_USERS: USERS, REQUEUE_APPROVALS: "1" });
const fourEyes = testPipeline(database, { OPS_USERS: USERS, REQUEUE_APPROVALS: "2" });
const db = database.db;
let http: HttpServer;
let fourEyesHttp: HttpServer;

beforeAll(async () => {
  http = await startHttpServer(alone.ctx, { ...alone.config, PORT: 0, HOST: "127.0.0.1" });
  fourEyesHttp = await startHttpServer(fourEyes.ctx, { ...fourEyes.config, PORT: 0, HOST: "127.0.0.1" });
});

afterAll(async () => {
  await http?.close();
  await fourEyesHttp?.close();
});

async function escalatedMortgage(): Promise<string> {
  return (await givenMortgage(database, { lenders: [0] })).mortgageId;
}

function noPositions(mortgageId: string): string {
  return NO_POSITIONS.replace("{mortgage}", mortgageId);
}

async function statusesOf(ids: readonly string[]): Promise<Record<string, number>> {
  const rows = await db.execute<{ status: string; n: number }>(sql`
    select status, count(*)::int as n from dispersal_healing_attempts
     where obligation_id = any(${`{${ids.join(",")}}`}::uuid[]) group by status`);
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

async function requestsAndAuditsOf(ids: readonly string[]): Promise<{ requests: number; audits: number }> {
  const [row] = await db.execute<{ requests: number; audits: number }>(sql`
    select (select count(*)::int from requeue_requests where obligation_id = any(${`{${ids.join(",")}}`}::uuid[])) as requests,
           (select count(*)::int from audit_log where resource_id = any(${`{${ids.join(",")}}`}::text[]) and action like 'dispersal.self_healing_requeue%') as audits`);
  return row!;
}

describe("GET /api/escalations/groups", () => {
  it("groups open escalations by mortgage and normalised error, largest amount first, amounts past 2^63 as strings", async () => {
    const small = await escalatedMortgage();
    const huge = await escalatedMortgage();
    await givenEscalations(database, { mortgageId: small, count: 3, amount: 1_000n, error: noPositions(small), escalatedAt: new Date("2026-11-01T10:00:00Z") });
    await givenEscalations(database, { mortgageId: small, count: 2, amount: 7_000n, error: "obligation {obligation} failed after {row} attempts", escalatedAt: new Date("2026-11-02T10:00:00Z") });
    const requeued = await givenEscalations(database, { mortgageId: small, count: 1, amount: 50_000n, error: noPositions(small) });
    await givenRequeued(database, requeued[0]!);
    await givenEscalations(database, { mortgageId: huge, count: 2, amount: 9_000_000_000_000_000_000n, error: noPositions(huge), escalatedAt: new Date("2026-11-03T10:00:00Z") });

    const answer = await httpCall(http.url, "GET", "/api/escalations/groups", { as: VICTOR });
    expect(answer.status).toBe(200);
    const ours = (answer.json.groups as Array<{ mortgageId: string }>).filter((g) => g.mortgageId === small || g.mortgageId === huge);
    expect(ours).toEqual([
      { mortgageId: huge, mortgageReference: `M-${huge}`, error: NO_POSITIONS_NORMALISED, count: 2, amount: "18000000000000000000", oldestEscalatedAt: "2026-11-03T10:00:00.000Z" },
      { mortgageId: small, mortgageReference: `M-${small}`, error: "obligation <id> failed after <n> attempts", count: 2, amount: "14000", oldestEscalatedAt: "2026-11-02T10:00:00.000Z" },
      { mortgageId: small, mortgageReference: `M-${small}`, error: NO_POSITIONS_NORMALISED, count: 3, amount: "3000", oldestEscalatedAt: "2026-11-01T10:00:00.000Z" },
    ]);
  });

  it("keeps escalations without a recorded error as a group of their own (error null), which a null filter selects", async () => {
    const mortgageId = await escalatedMortgage();
    const silent = await givenEscalations(database, { mortgageId, count: 2, error: null });
    await givenEscalations(database, { mortgageId, count: 1, error: "deadlock detected" });
    const answer = await httpCall(http.url, "GET", "/api/escalations/groups", { as: VICTOR });
    expect((answer.json.groups as Array<{ mortgageId: string; error: string | null; count: number }>).filter((g) => g.mortgageId === mortgageId).map((g) => [g.error, g.count])).toEqual([
      [null, 2],
      ["deadlock detected", 1],
    ]);
    const dryRun = await httpCall(http.url, "POST", "/api/escalations/requeue", { as: OLGA, body: { filter: { mortgageId, error: null }, dryRun: true } });
    expect(dryRun).toMatchObject({ status: 200, json: { matched: 2 } });
    expect((dryRun.json.obligations as Array<{ obligationId: string }>).map((o) => o.obligationId)).toEqual(silent);
  });

  it("answers 400 to an unknown query parameter", async () => {
    expect((await httpCall(http.url, "GET", "/api/escalations/groups?sort=x", { as: VICTOR })).status).toBe(400);
  });
});

describe("POST /api/escalations/requeue by filter", () => {
  let mortgageId: string;
  let matching: string[];
  let other: string[];
  const filter = () => ({ mortgageId, error: NO_POSITIONS_NORMALISED });

  beforeAll(async () => {
    mortgageId = await escalatedMortgage();
    matching = await givenEscalations(database, { mortgageId, count: 520, error: noPositions(mortgageId) });
    other = await givenEscalations(database, { mortgageId, count: 3, error: "deadlock detected" });
  });

  it("dry run: answers the count and the obligations, changes nothing", async () => {
    const answer = await httpCall(http.url, "POST", "/api/escalations/requeue", { as: OLGA, body: { filter: filter(), dryRun: true } });
    expect(answer).toMatchObject({ status: 200, json: { dryRun: true, matched: 520, wouldRequeue: 520, skipped: 0, amount: "5200000", filter: filter() } });
    expect((answer.json.obligations as Array<{ obligationId: string }>).map((o) => o.obligationId)).toEqual(matching);
    expect(await statusesOf(matching)).toEqual({ escalated: 520 });
    expect(await requestsAndAuditsOf(matching)).toEqual({ requests: 0, audits: 0 });
  });

  it("refuses 409 naming the actual count when expectedCount differs, and changes nothing", async () => {
    for (const expectedCount of [519, 521, 0]) {
      const answer = await httpCall(http.url, "POST", "/api/escalations/requeue", { as: OLGA, body: { filter: filter(), expectedCount, reason: "positions restored by the servicer" } });
      expect({ expectedCount, answer: { status: answer.status, json: answer.json } }).toMatchObject({ expectedCount, answer: { status: 409, json: { code: "COUNT_MISMATCH", expectedCount, actualCount: 520 } } });
    }
    const dryRun = await httpCall(http.url, "POST", "/api/escalations/requeue", { as: OLGA, body: { filter: filter(), expectedCount: 3, dryRun: true } });
    expect(dryRun).toMatchObject({ status: 409, json: { code: "COUNT_MISMATCH", actualCount: 520 } });
    expect(await statusesOf(matching)).toEqual({ escalated: 520 });
    expect(await requestsAndAuditsOf(matching)).toEqual({ requests: 0, audits: 0 });
  });

  it("answers 400 without expectedCount or reason, and 403 to a viewer", async () => {
    expect((await httpCall(http.url, "POST", "/api/escalations/requeue", { as: OLGA, body: { filter: filter(), reason: "positions restored by the servicer" } })).status).toBe(400);
    expect((await httpCall(http.url, "POST", "/api/escalations/requeue", { as: OLGA, body: { filter: filter(), expectedCount: 520 } })).status).toBe(400);
    expect((await httpCall(http.url, "POST", "/api/escalations/requeue", { as: OLGA, body: { filter: { escalatedBefore: "2026-13-01T00:00:00Z" }, expectedCount: 1, reason: "positions restored" } })).status).toBe(400);
    expect((await httpCall(http.url, "POST", "/api/escalations/requeue", { as: VICTOR, body: { filter: filter(), expectedCount: 520, reason: "positions restored by the servicer" } })).status).toBe(403);
    expect(await requestsAndAuditsOf(matching)).toEqual({ requests: 0, audits: 0 });
  });

  it("selects by escalatedBefore", async () => {
    const old = await givenEscalations(database, { mortgageId, count: 2, error: "stale", escalatedAt: new Date("2026-01-01T00:00:00Z") });
    await givenEscalations(database, { mortgageId, count: 2, error: "stale" });
    const answer = await httpCall(http.url, "POST", "/api/escalations/requeue", { as: OLGA, body: { filter: { mortgageId, escalatedBefore: "2026-06-01T00:00:00Z" }, dryRun: true } });
    expect(answer).toMatchObject({ status: 200, json: { matched: 2 } });
    expect((answer.json.obligations as Array<{ obligationId: string }>).map((o) => o.obligationId)).toEqual(old);
  });

  it("requeues every match past the 500-id limit in one request, each audited with the filter", async () => {
    const answer = await httpCall(http.url, "POST", "/api/escalations/requeue", { as: OLGA, body: { filter: filter(), expectedCount: 520, reason: "positions restored by the servicer" } });
    expect(answer).toMatchObject({ status: 200, json: { matched: 520, requested: 520, requeued: 520, pendingApproval: 0, refused: 0, interrupted: false } });
    expect(await statusesOf(matching)).toEqual({ requeued: 520 });
    expect(await statusesOf(other)).toEqual({ escalated: 3 });
    const audits = await db.execute<{ actor: string; metadata: Record<string, unknown> }>(sql`
      select actor, metadata from audit_log where resource_id = any(${`{${matching.join(",")}}`}::text[]) and action = 'dispersal.self_healing_requeued'`);
    expect(audits).toHaveLength(520);
    expect(audits[0]).toMatchObject({ actor: "olga", metadata: { channel: "api", reason: "positions restored by the servicer", selection: { filter: filter(), expectedCount: 520 } } });
    const results = answer.json.results as Array<{ obligationId: string; jobId: string | null }>;
    const job = await alone.ctx.queues.retrigger.getJob(results[519]!.jobId!);
    expect(job?.data).toEqual({ obligationId: results[519]!.obligationId });
    expect(results.filter((r) => r.jobId !== null)).toHaveLength(520);
    // The same filter again matches nothing now: a stale count is refused, not acted on twice.
    expect(await httpCall(http.url, "POST", "/api/escalations/requeue", { as: OLGA, body: { filter: filter(), expectedCount: 520, reason: "positions restored by the servicer" } })).toMatchObject({ status: 409, json: { actualCount: 0 } });
  });
});

describe("requeue by filter under four eyes (REQUEUE_APPROVALS=2)", () => {
  it("leaves one pending request per obligation, which another operator approves", async () => {
    const mortgageId = await escalatedMortgage();
    const ids = await givenEscalations(database, { mortgageId, count: 3, error: noPositions(mortgageId) });
    const body = { filter: { mortgageId }, expectedCount: 3, reason: "positions restored by the servicer" };
    const answer = await httpCall(fourEyesHttp.url, "POST", "/api/escalations/requeue", { as: OLGA, body });
    expect(answer).toMatchObject({ status: 200, json: { matched: 3, requeued: 0, pendingApproval: 3, refused: 0 } });
    expect(await statusesOf(ids)).toEqual({ escalated: 3 });
    const [pending] = await db.execute<{ n: number }>(sql`
      select count(*)::int as n from requeue_requests where obligation_id = any(${`{${ids.join(",")}}`}::uuid[]) and status = 'pending' and requested_by = 'olga'`);
    expect(pending!.n).toBe(3);
    expect(await httpCall(fourEyesHttp.url, "POST", `/api/escalations/${ids[0]}/requeue/approve`, { as: OLGA })).toMatchObject({ status: 403, json: { code: "SELF_APPROVAL" } });
    for (const id of ids) {
      expect(await httpCall(fourEyesHttp.url, "POST", `/api/escalations/${id}/requeue/approve`, { as: OSCAR })).toMatchObject({ status: 202, json: { status: "requeued", requestedBy: "olga", approvedBy: "oscar" } });
    }
    expect(await statusesOf(ids)).toEqual({ requeued: 3 });
  });
});
