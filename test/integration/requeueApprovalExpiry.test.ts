// Four eyes with an expiry (issue 21 item 8): a requeue request left unapproved longer than
// REQUEUE_APPROVAL_TTL cannot be approved (409, reason "expired"), shows as expired in the API and
// on the ops page, no longer blocks a new request, and is closed with an audit row when one comes.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { ConfigError, loadConfig } from "../../src/config.js";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { scanAndWait } from "../../src/jobs/scanAndWait.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { httpCall, type HttpCallOptions } from "../helpers/http.js";
import { testPipeline } from "../helpers/pipeline.js";
import { testDb } from "../helpers/testDb.js";

const OLGA = { name: "olga", secret: "olga-operator-secret" };
const OSCAR = { name: "oscar", secret: "oscar-operator-secret" };
const database = await testDb();
const pipeline = testPipeline(database, { OPS_USERS: `${OLGA.name}:operator:${OLGA.secret},${OSCAR.name}:operator:${OSCAR.secret}`, REQUEUE_APPROVALS: "2" });
const { ctx, config } = pipeline;
const db = database.db;
let http: HttpServer;
const escalated: string[] = [];

const call = (method: string, path: string, options: HttpCallOptions = {}) => httpCall(http.url, method, path, options);
const requeue = (id: string, who = OLGA) => call("POST", `/api/escalations/${id}/requeue`, { as: who, body: { reason: "lender positions corrected" } });
const approve = (id: string, who = OSCAR) => call("POST", `/api/escalations/${id}/requeue/approve`, { as: who });

/** The request was made this long ago (arranging time: the expiry is read from created_at). */
async function makeRequestOlder(requestId: string, hours: number) {
  await db.execute(sql`update requeue_requests set created_at = created_at - make_interval(hours => ${hours}) where id = ${requestId}::uuid`);
}

async function healingStatus(id: string) {
  const [row] = await db.execute<{ status: string }>(sql`select status from dispersal_healing_attempts where obligation_id = ${id}::uuid`);
  return row?.status;
}

async function requestsOf(id: string) {
  return db.execute<{ id: string; status: string; requested_by: string }>(sql`select id::text, status, requested_by from requeue_requests where obligation_id = ${id}::uuid order by created_at`);
}

async function auditActionsOf(id: string) {
  const rows = await db.execute<{ action: string }>(sql`
    select action from audit_log where resource_id = ${id} and action like 'dispersal.self_healing_requeue%' order by created_at, action`);
  return rows.map((r) => r.action);
}

beforeAll(async () => {
  const workers = pipeline.startWorkers();
  const given = await Promise.all(Array.from({ length: 2 }, () => givenSettledObligation(database, { lenders: [0], amount: 7_700n })));
  expect(await scanAndWait(ctx, { timeoutMs: 25_000 })).toMatchObject({ escalated: 2 });
  await workers.close();
  escalated.push(...given.map((g) => g.obligationId));
  http = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
});

afterAll(async () => {
  await http?.close();
});

describe("REQUEUE_APPROVAL_TTL", () => {
  it("defaults to 24 hours and takes s, m, h or d between a minute and 30 days", () => {
    expect(loadConfig({}).REQUEUE_APPROVAL_TTL).toBe(86_400);
    expect(loadConfig({ REQUEUE_APPROVAL_TTL: "90m" }).REQUEUE_APPROVAL_TTL).toBe(5_400);
    expect(loadConfig({ REQUEUE_APPROVAL_TTL: "7d" }).REQUEUE_APPROVAL_TTL).toBe(604_800);
    for (const bad of ["0s", "59s", "31d", "24", "1.5h", "-1h", "soon", "24 hours"]) {
      expect(() => loadConfig({ REQUEUE_APPROVAL_TTL: bad }), bad).toThrow(ConfigError);
      expect(() => loadConfig({ REQUEUE_APPROVAL_TTL: bad }), bad).toThrow(/REQUEUE_APPROVAL_TTL/);
    }
  });
});

describe("an unapproved requeue request", () => {
  it("can still be approved before it expires", async () => {
    const id = escalated[1]!;
    const asked = await requeue(id);
    expect(asked.status).toBe(202);
    await makeRequestOlder(asked.json.requestId, 23);
    const pending = (await call("GET", "/api/escalations/requeue/pending", { as: OSCAR })).json.pending;
    expect(pending.find((p: { obligationId: string }) => p.obligationId === id)).toMatchObject({ expired: false });
    expect(await approve(id)).toMatchObject({ status: 202, json: { status: "requeued" } });
  });

  it("expires after the TTL: shown as expired, refused with 409 'expired', and a new request replaces it", async () => {
    const id = escalated[0]!;
    const asked = await requeue(id);
    expect(asked).toMatchObject({ status: 202, json: { status: "pending_approval" } });
    const requestId = asked.json.requestId as string;
    await makeRequestOlder(requestId, 25);

    const pending = (await call("GET", "/api/escalations/requeue/pending", { as: OSCAR })).json.pending;
    const listed = pending.find((p: { requestId: string }) => p.requestId === requestId);
    expect(listed).toMatchObject({ obligationId: id, expired: true, expiresAt: expect.any(String) });
    expect(new Date(listed.expiresAt).getTime()).toBeLessThan(Date.now());

    const page = await call("GET", "/ops", { as: OSCAR });
    const row = new RegExp(`<tr data-pending="${id}" data-expired="true">[\\s\\S]*?</tr>`).exec(page.text)?.[0];
    expect(row).toMatch(/expired/);
    expect(row).not.toMatch(/>Approve</);

    const refused = await approve(id);
    expect(refused).toMatchObject({ status: 409, json: { reason: "expired", code: "REQUEUE_EXPIRED" } });
    expect(await healingStatus(id)).toBe("escalated");

    const dryRun = await call("POST", "/api/escalations/requeue", { as: OSCAR, body: { obligationIds: [id], dryRun: true } });
    expect(dryRun.json).toMatchObject({ wouldRequeue: 1, skipped: 0 });

    const again = await requeue(id, OSCAR);
    expect(again).toMatchObject({ status: 202, json: { status: "pending_approval" } });
    expect(again.json.requestId).not.toBe(requestId);
    expect(await requestsOf(id)).toEqual([
      { id: requestId, status: "withdrawn", requested_by: "olga" },
      { id: again.json.requestId, status: "pending", requested_by: "oscar" },
    ]);
    expect(await auditActionsOf(id)).toEqual(["dispersal.self_healing_requeue_requested", "dispersal.self_healing_requeue_expired", "dispersal.self_healing_requeue_requested"]);

    expect(await approve(id, OLGA)).toMatchObject({ status: 202, json: { status: "requeued", requestedBy: "oscar", approvedBy: "olga" } });
  });
});
