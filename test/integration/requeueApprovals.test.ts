// Requeue with a reason, and four eyes with REQUEUE_APPROVALS=2 (issue 13 §3): a request changes
// nothing but itself; a different operator carries it out; self-approval and viewers are refused;
// requests can be withdrawn; bulk requeue follows the rule and has a dry run; Bull Board's retry
// only asks. Every step audited.
import { beforeAll, afterAll, describe, expect, it } from "vitest";
import { randomUUID } from "node:crypto";
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
const VICTOR = { name: "victor", secret: "victor-viewer-secret" };

const database = await testDb();
const pipeline = testPipeline(database, {
  OPS_USERS: `${OLGA.name}:operator:${OLGA.secret},${OSCAR.name}:operator:${OSCAR.secret},${VICTOR.name}:viewer:${VICTOR.secret}`,
  REQUEUE_APPROVALS: "2",
});
const { ctx, config } = pipeline;
const db = database.db;
let http: HttpServer;
const escalated: string[] = [];

const call = (method: string, path: string, options: HttpCallOptions = {}) => httpCall(http.url, method, path, options);
const requeue = (id: string, who = OLGA, reason: unknown = "lender positions corrected") => call("POST", `/api/escalations/${id}/requeue`, { as: who, body: { reason } });
const approve = (id: string, who = OSCAR) => call("POST", `/api/escalations/${id}/requeue/approve`, { as: who });
const withdraw = (id: string, who = OSCAR) => call("POST", `/api/escalations/${id}/requeue/withdraw`, { as: who });

async function healingStatus(obligationId: string) {
  const [row] = await db.execute<{ status: string }>(sql`select status from dispersal_healing_attempts where obligation_id = ${obligationId}::uuid`);
  return row?.status;
}

async function requeueAuditsOf(obligationId: string) {
  return db.execute<{ action: string; actor: string; metadata: Record<string, unknown> }>(sql`
    select action, actor, metadata from audit_log where resource_id = ${obligationId} and action like 'dispersal.self_healing_requeue%' order by created_at, action`);
}

async function liveJobs() {
  return ctx.queues.retrigger.getJobCountByTypes("wait", "active", "delayed", "prioritized");
}

beforeAll(async () => {
  const workers = pipeline.startWorkers();
  const given = await Promise.all(Array.from({ length: 8 }, () => givenSettledObligation(database, { lenders: [0], amount: 9_900n })));
  expect(await scanAndWait(ctx, { timeoutMs: 25_000 })).toMatchObject({ found: 8, escalated: 8 });
  await workers.close();
  escalated.push(...given.map((o) => o.obligationId));
  http = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
});

afterAll(async () => {
  await http?.close();
});

describe("a requeue needs a reason", () => {
  it("answers 400 to a missing, blank or oversized reason, and records nothing", async () => {
    const id = escalated[7]!;
    for (const body of [undefined, {}, { reason: "" }, { reason: "   \n\t" }, { reason: 42 }, { reason: "x".repeat(501) }, { reason: "ok", extra: 1 }]) {
      const answer = await call("POST", `/api/escalations/${id}/requeue`, { as: OLGA, ...(body === undefined ? {} : { body }) });
      expect({ body, status: answer.status }).toEqual({ body, status: 400 });
    }
    const bulk = await call("POST", "/api/escalations/requeue", { as: OLGA, body: { obligationIds: [id] } });
    expect(bulk.status).toBe(400);
    const [requests] = await db.execute<{ n: bigint }>(sql`select count(*) as n from requeue_requests where obligation_id = ${id}::uuid`);
    expect(requests!.n).toBe(0n);
    expect(await healingStatus(id)).toBe("escalated");
  });
});

describe("four eyes (REQUEUE_APPROVALS=2)", () => {
  it("answers 202 pending_approval to a request and changes nothing else", async () => {
    const id = escalated[0]!;
    const jobsBefore = await liveJobs();
    const asked = await requeue(id);
    expect(asked).toMatchObject({ status: 202, json: { status: "pending_approval", obligationId: id } });
    expect(await healingStatus(id)).toBe("escalated");
    expect(await liveJobs()).toBe(jobsBefore);
    expect(await requeueAuditsOf(id)).toMatchObject([{ action: "dispersal.self_healing_requeue_requested", actor: "olga", metadata: { reason: "lender positions corrected", channel: "api" } }]);
    const pending = await call("GET", "/api/escalations/requeue/pending", { as: VICTOR });
    expect(pending.json).toMatchObject({ approvalsRequired: 2, pending: [{ obligationId: id, requestedBy: "olga", reason: "lender positions corrected", amount: "9900" }] });
  });

  it("refuses a second request while one is pending (409)", async () => {
    expect(await requeue(escalated[0]!, OSCAR)).toMatchObject({ status: 409, json: { code: "REQUEUE_PENDING" } });
  });

  it("refuses approval by the requester or a viewer (403)", async () => {
    expect(await approve(escalated[0]!, OLGA)).toMatchObject({ status: 403, json: { code: "SELF_APPROVAL" } });
    expect((await approve(escalated[0]!, VICTOR)).status).toBe(403);
    expect(await healingStatus(escalated[0]!)).toBe("escalated");
  });

  it("carries the request out when a different operator approves it (202), audited with both names", async () => {
    const id = escalated[0]!;
    const approved = await approve(id, OSCAR);
    expect(approved).toMatchObject({ status: 202, json: { status: "requeued", obligationId: id, requestedBy: "olga", approvedBy: "oscar", round: 2 } });
    expect(await healingStatus(id)).toBe("requeued");
    expect((await ctx.queues.retrigger.getJob(approved.json.jobId))!.data).toEqual({ obligationId: id });
    expect(await requeueAuditsOf(id)).toMatchObject([
      { action: "dispersal.self_healing_requeue_requested", actor: "olga" },
      // approved and requeued share one transaction (one created_at)
      { action: "dispersal.self_healing_requeue_approved", actor: "oscar", metadata: { requestedBy: "olga", reason: "lender positions corrected" } },
      { action: "dispersal.self_healing_requeued", actor: "olga", metadata: { approvedBy: "oscar", reason: "lender positions corrected", round: 2 } },
    ]);
    expect(await approve(id, OSCAR)).toMatchObject({ status: 404, json: { code: "NO_PENDING_REQUEUE" } });
  });

  it("lets an operator withdraw a pending request; it can then no longer be approved", async () => {
    const id = escalated[1]!;
    expect((await requeue(id, OLGA, "try again after the fix")).status).toBe(202);
    expect((await withdraw(id, VICTOR)).status).toBe(403);
    expect(await withdraw(id, OSCAR)).toMatchObject({ status: 200, json: { status: "withdrawn", requestedBy: "olga" } });
    expect((await approve(id, OSCAR)).status).toBe(404);
    expect(await healingStatus(id)).toBe("escalated");
    expect((await requeueAuditsOf(id)).map((a) => [a.action, a.actor])).toEqual([
      ["dispersal.self_healing_requeue_requested", "olga"],
      ["dispersal.self_healing_requeue_withdrawn", "oscar"],
    ]);
    expect((await withdraw(id, OSCAR)).status).toBe(404);
  });
});

describe("bulk requeue", () => {
  it("shows a dry run (how many, how many skipped and why) and changes nothing", async () => {
    const unknown = randomUUID();
    await requeue(escalated[2]!); // pending
    const [before] = await db.execute<{ n: bigint }>(sql`select count(*) as n from requeue_requests`);
    const dry = await call("POST", "/api/escalations/requeue", { as: OLGA, body: { obligationIds: [escalated[0], escalated[2], escalated[3], escalated[4], unknown], dryRun: true } });
    expect(dry).toMatchObject({
      status: 200,
      json: { dryRun: true, requested: 5, wouldRequeue: 2, approvalsRequired: 2, skipped: 3, skippedBecause: { not_escalated: 1, already_pending: 1, not_found: 1 } },
    });
    const [after] = await db.execute<{ n: bigint }>(sql`select count(*) as n from requeue_requests`);
    expect(after!.n).toBe(before!.n);
    expect(await healingStatus(escalated[3]!)).toBe("escalated");
  });

  it("leaves each requeue waiting for approval", async () => {
    const bulk = await call("POST", "/api/escalations/requeue", { as: OLGA, body: { obligationIds: [escalated[3], escalated[4], escalated[2]], reason: "bulk after the positions fix" } });
    expect(bulk).toMatchObject({ status: 200, json: { requested: 3, requeued: 0, pendingApproval: 2, refused: 1 } });
    expect(bulk.json.results.find((r: { obligationId: string }) => r.obligationId === escalated[2])).toMatchObject({ outcome: "refused", code: "REQUEUE_PENDING" });
    for (const id of [escalated[3]!, escalated[4]!]) expect(await healingStatus(id)).toBe("escalated");
  });
});

describe("Bull Board's retry with four eyes", () => {
  it("only creates a pending request naming Bull Board (202); the failed job stays", async () => {
    const id = escalated[5]!;
    const failed = (await ctx.queues.retrigger.getJobs(["failed"])).find((j) => j.data.obligationId === id)!;
    const retried = await call("PUT", `/admin/queues/api/queues/${ctx.queues.retrigger.name}/${encodeURIComponent(failed.id!)}/retry`, { as: OLGA, body: { reason: "positions fixed in the servicing system" } });
    expect(retried).toMatchObject({ status: 202, json: { status: "pending_approval", obligationId: id } });
    expect(await failed.getState()).toBe("failed");
    expect(await healingStatus(id)).toBe("escalated");
    expect(await requeueAuditsOf(id)).toMatchObject([{ action: "dispersal.self_healing_requeue_requested", actor: "olga", metadata: { channel: "bull-board", reason: "positions fixed in the servicing system" } }]);
  });
});

describe("the ops page", () => {
  const tokenIn = (html: string) => /name="_token" value="([^"]+)"/.exec(html)![1]!;
  const form = (fields: Record<string, string>) => ({ rawBody: new URLSearchParams(fields).toString(), headers: { "content-type": "application/x-www-form-urlencoded" } });

  it("shows pending requests with who asked and why, and lets another operator approve one", async () => {
    const id = escalated[6]!;
    const page = await call("GET", "/ops", { as: OLGA });
    expect((await call("POST", "/ops/requeue", { as: OLGA, ...form({ _token: tokenIn(page.text), only: id, reason: "fee schedule <fixed>" }) })).status).toBe(303);
    const seenByOscar = await call("GET", "/ops", { as: OSCAR });
    const row = new RegExp(`<tr data-pending="${id}">[\\s\\S]*?</tr>`).exec(seenByOscar.text)?.[0] ?? "";
    expect(row).toContain("olga");
    expect(row).toContain("fee schedule &lt;fixed&gt;");
    expect(row).toContain("Approve");
    const ownRow = new RegExp(`<tr data-pending="${id}">[\\s\\S]*?</tr>`).exec((await call("GET", "/ops", { as: OLGA })).text)?.[0] ?? "";
    expect(ownRow).not.toContain(">Approve<");
    const selfApproval = await call("POST", "/ops/requeue/approve", { as: OLGA, ...form({ _token: tokenIn(page.text), obligationId: id }) });
    expect(selfApproval.status).toBe(403);
    const approved = await call("POST", "/ops/requeue/approve", { as: OSCAR, ...form({ _token: tokenIn(seenByOscar.text), obligationId: id }) });
    expect(approved.status).toBe(303);
    expect(await healingStatus(id)).toBe("requeued");
  });
});

describe("configuration", () => {
  it("refuses REQUEUE_APPROVALS other than 1 or 2, and a TRUST_PROXY that would believe anyone", () => {
    expect(() => loadConfig({ REQUEUE_APPROVALS: "3" })).toThrow(ConfigError);
    expect(() => loadConfig({ REQUEUE_APPROVALS: "0" })).toThrow(/REQUEUE_APPROVALS/);
    expect(() => loadConfig({ TRUST_PROXY: "true" })).toThrow(/TRUST_PROXY/);
    expect(() => loadConfig({ TRUST_PROXY: "10.0.0.0/33" })).toThrow(/TRUST_PROXY/);
    expect(loadConfig({}).REQUEUE_APPROVALS).toBe(1);
    expect(loadConfig({}).TRUST_PROXY).toBe(false);
    expect(loadConfig({ TRUST_PROXY: "loopback, 10.0.0.0/8" }).TRUST_PROXY).toEqual(["loopback", "10.0.0.0/8"]);
    expect(loadConfig({ TRUST_PROXY: "1" }).TRUST_PROXY).toBe(1);
  });
});
