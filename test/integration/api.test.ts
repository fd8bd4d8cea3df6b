import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Worker } from "bullmq";
import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { connectDatabase } from "../../src/db/client.js";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import type { PipelineContext } from "../../src/jobs/context.js";
import { reconcileLedger } from "../../src/jobs/reconcile.js";
import { scanAndWait } from "../../src/jobs/scanAndWait.js";
import { createRedisConnection } from "../../src/queues/connection.js";
import { openQueues } from "../../src/queues/queues.js";
import { JOB } from "../../src/queues/names.js";
import { givenMortgage, givenSettledObligation } from "../helpers/factories.js";
import { testPipeline } from "../helpers/pipeline.js";
import { waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";
import { httpCall } from "../helpers/http.js";

const OLGA = { name: "olga", secret: "olga-operator-secret" };
const VICTOR = { name: "victor", secret: "victor-viewer-secret" };
const REASON = { reason: "lender positions corrected" };

const database = await testDb();
const pipeline = testPipeline(database, { OPS_USERS: `${OLGA.name}:operator:${OLGA.secret},${VICTOR.name}:viewer:${VICTOR.secret}` });
const { ctx, config } = pipeline;
const db = database.db;
const retriggerQueue = ctx.queues.retrigger.name;

let http: HttpServer;
/** Escalated obligations made by the real pipeline, handed out one per test. */
const escalated: string[] = [];
let sharedMortgageId: string;
const onSharedMortgage: string[] = [];

interface Call {
  as?: { name: string; secret: string };
  body?: unknown;
  rawBody?: string;
  headers?: Record<string, string>;
  base?: string;
}

async function call(method: string, path: string, options: Call = {}) {
  const { base, ...rest } = options;
  return httpCall(base ?? http.url, method, path, rest);
}

async function healingStatus(obligationId: string) {
  const [row] = await db.execute<{ status: string; attempt_count: number }>(sql`
    select status, attempt_count from dispersal_healing_attempts where obligation_id = ${obligationId}::uuid`);
  return row;
}

async function requeueAudits(obligationId: string) {
  return db.execute<{ actor: string; metadata: { channel: string; round: number } }>(sql`
    select actor, metadata from audit_log where action = 'dispersal.self_healing_requeued' and resource_id = ${obligationId} order by created_at`);
}

async function liveJobsOf(obligationId: string) {
  const jobs = await ctx.queues.retrigger.getJobs(["wait", "active", "delayed", "prioritized"]);
  return jobs.filter((j) => j.data.obligationId === obligationId);
}

async function failedJobOf(obligationId: string) {
  const jobs = await ctx.queues.retrigger.getJobs(["failed"]);
  return jobs.find((j) => j.data.obligationId === obligationId);
}

beforeAll(async () => {
  // Escalations made the real way: 3 failed attempts each (no lender holds units), then escalation.
  // The workers stop afterwards, so requeued jobs stay queued and every assertion is deterministic.
  const workers = pipeline.startWorkers();
  sharedMortgageId = (await givenMortgage(database, { lenders: [0] })).mortgageId;
  const alone = await Promise.all(Array.from({ length: 8 }, () => givenSettledObligation(database, { lenders: [0], amount: 123_456n })));
  const shared = await Promise.all(Array.from({ length: 2 }, () => givenSettledObligation(database, { mortgageId: sharedMortgageId, amount: 5_000n })));
  const summary = await scanAndWait(ctx, { timeoutMs: 25_000 });
  expect(summary).toMatchObject({ found: 10, escalated: 10 });
  await workers.close();
  escalated.push(...alone.map((o) => o.obligationId));
  onSharedMortgage.push(...shared.map((o) => o.obligationId));
  http = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
});

afterAll(async () => {
  await http?.close();
});

describe("authentication (fails closed)", () => {
  it("answers 401 with a Basic challenge without credentials, on every protected surface", async () => {
    for (const path of ["/api/escalations", "/ops", "/admin/queues", "/metrics"]) {
      const response = await call("GET", path);
      expect(response.status, path).toBe(401);
      expect(response.headers.get("www-authenticate")).toMatch(/^Basic realm=/);
    }
  });

  it("answers 401 for a wrong secret and for an unknown user", async () => {
    expect((await call("GET", "/api/escalations", { as: { name: OLGA.name, secret: "not-the-secret-at-all" } })).status).toBe(401);
    expect((await call("GET", "/api/escalations", { as: { name: "mallory", secret: OLGA.secret } })).status).toBe(401);
    expect((await call("GET", "/api/escalations", { headers: { authorization: "Basic !!!" } })).status).toBe(401);
  });

  it("refuses everything but health with 503 when OPS_USERS is empty", async () => {
    const closed = await startHttpServer(ctx, { ...config, OPS_USERS: [], PORT: 0, HOST: "127.0.0.1" });
    try {
      for (const path of ["/api/escalations", "/ops", "/admin/queues", "/metrics"]) {
        const response = await call("GET", path, { base: closed.url, as: OLGA });
        expect(response.status, path).toBe(503);
        expect(response.json.error).toMatch(/OPS_USERS is not set/);
      }
      const requeue = await call("POST", `/api/escalations/${escalated[7]}/requeue`, { base: closed.url, as: OLGA });
      expect(requeue.status).toBe(503);
      expect((await call("GET", "/healthz", { base: closed.url })).status).toBe(200);
    } finally {
      await closed.close();
    }
  });

  it("lets a viewer read but answers 403 when a viewer requeues, and audits the refusal", async () => {
    expect((await call("GET", "/api/escalations", { as: VICTOR })).status).toBe(200);
    const refused = await call("POST", `/api/escalations/${escalated[7]}/requeue`, { as: VICTOR });
    expect(refused.status).toBe(403);
    expect(await healingStatus(escalated[7]!)).toMatchObject({ status: "escalated" });
    const audit = await waitFor(
      async () => {
        const rows = await db.execute<{ actor: string; severity: string; metadata: { status: number } }>(sql`
          select actor, severity, metadata from audit_log where action = 'ops.http_response' and actor = 'victor'`);
        return rows.length > 0 ? rows : undefined;
      },
      { timeoutMs: 5000, what: "the audit row of the refused request" },
    );
    expect(audit[0]).toMatchObject({ actor: "victor", severity: "warning", metadata: { status: 403 } });
  });

  it("refuses state changes sent from another site", async () => {
    const fromElsewhere = await call("POST", `/api/escalations/${escalated[7]}/requeue`, { as: OLGA, headers: { origin: "https://evil.example" } });
    expect(fromElsewhere.status).toBe(403);
    const crossSite = await call("POST", `/api/escalations/${escalated[7]}/requeue`, { as: OLGA, headers: { "sec-fetch-site": "cross-site" } });
    expect(crossSite.status).toBe(403);
    expect(await healingStatus(escalated[7]!)).toMatchObject({ status: "escalated" });
  });
});

describe("POST /api/escalations/:obligationId/requeue", () => {
  it("answers 400 for a malformed id", async () => {
    const response = await call("POST", "/api/escalations/not-a-uuid/requeue", { as: OLGA });
    expect(response.status).toBe(400);
    expect(response.json.error).toMatch(/obligationId/);
  });

  it("answers 404 for an unknown obligation", async () => {
    const response = await call("POST", `/api/escalations/${randomUUID()}/requeue`, { as: OLGA, body: REASON });
    expect(response.status).toBe(404);
    expect(response.json.code).toBe("OBLIGATION_NOT_FOUND");
  });

  it("answers 409 for an obligation that is not escalated", async () => {
    const settled = await givenSettledObligation(database, { lenders: [1] });
    const response = await call("POST", `/api/escalations/${settled.obligationId}/requeue`, { as: OLGA, body: REASON });
    expect(response.status).toBe(409);
    expect(response.json).toMatchObject({ code: "NOT_ESCALATED" });
    expect(response.json.error).toMatch(/not escalated/);
  });

  it("answers 202 with a new job for an escalation, named after the operator", async () => {
    const obligationId = escalated[0]!;
    const oldJob = await failedJobOf(obligationId);
    const response = await call("POST", `/api/escalations/${obligationId}/requeue`, { as: OLGA, body: REASON });
    expect(response.status).toBe(202);
    expect(response.json).toMatchObject({ status: "requeued", obligationId, round: 2 });
    expect(oldJob).toBeDefined();
    expect(response.json.jobId).not.toBe(oldJob!.id);
    // The superseded round's failed job is removed: retrying it in Bull Board would only be refused.
    expect(await ctx.queues.retrigger.getJob(oldJob!.id!)).toBeUndefined();
    const job = await ctx.queues.retrigger.getJob(response.json.jobId);
    expect(job?.data).toEqual({ obligationId });
    expect(job?.opts.attempts).toBe(3);
    expect(await healingStatus(obligationId)).toMatchObject({ status: "requeued", attempt_count: 0 });
    expect(await requeueAudits(obligationId)).toMatchObject([{ actor: "olga", metadata: { channel: "api", round: 2, reason: REASON.reason } }]);
  });

  it("makes exactly one new job and one audit row when the button is double-clicked", async () => {
    const obligationId = escalated[1]!;
    const responses = await Promise.all([1, 2].map(() => call("POST", `/api/escalations/${obligationId}/requeue`, { as: OLGA, body: REASON })));
    expect(responses.map((r) => r.status).sort()).toEqual([202, 409]);
    const accepted = responses.find((r) => r.status === 202)!;
    const live = await liveJobsOf(obligationId);
    expect(live.map((j) => j.id)).toEqual([accepted.json.jobId]);
    expect(await requeueAudits(obligationId)).toHaveLength(1);
  });
});

describe("POST /api/escalations/requeue (bulk)", () => {
  it("requeues a list of ids and answers per item", async () => {
    const unknown = randomUUID();
    const response = await call("POST", "/api/escalations/requeue", { as: OLGA, body: { obligationIds: [escalated[2], escalated[3], unknown, escalated[0], escalated[2]], ...REASON } });
    expect(response.status).toBe(200);
    expect(response.json).toMatchObject({ requested: 4, requeued: 2, refused: 2, interrupted: false });
    const byId = new Map(response.json.results.map((r: { obligationId: string }) => [r.obligationId, r]));
    expect(byId.get(escalated[2])).toMatchObject({ outcome: "requeued", round: 2 });
    expect(byId.get(escalated[3])).toMatchObject({ outcome: "requeued", round: 2 });
    expect(byId.get(unknown)).toMatchObject({ outcome: "refused", status: 404, code: "OBLIGATION_NOT_FOUND" });
    expect(byId.get(escalated[0])).toMatchObject({ outcome: "refused", status: 409, code: "NOT_ESCALATED" });
    for (const id of [escalated[2]!, escalated[3]!]) {
      expect(await liveJobsOf(id)).toHaveLength(1);
      expect(await requeueAudits(id)).toMatchObject([{ actor: "olga", metadata: { channel: "api", round: 2, reason: REASON.reason } }]);
    }
  });

  it("requeues every escalation of one mortgage with {all: true, filter}", async () => {
    const response = await call("POST", "/api/escalations/requeue", { as: OLGA, body: { all: true, filter: { mortgageId: sharedMortgageId }, ...REASON } });
    expect(response.status).toBe(200);
    expect(response.json.results.map((r: { obligationId: string }) => r.obligationId).sort()).toEqual([...onSharedMortgage].sort());
    expect(response.json.requeued).toBe(2);
    expect(await healingStatus(escalated[4]!)).toMatchObject({ status: "escalated" });
  });

  it("answers 4xx JSON for malformed bodies, without touching anything", async () => {
    const path = "/api/escalations/requeue";
    const notJson = await call("POST", path, { as: OLGA, rawBody: "obligationIds=x", headers: { "content-type": "application/x-www-form-urlencoded" } });
    expect(notJson.status).toBe(415);
    const badJson = await call("POST", path, { as: OLGA, rawBody: "{\"obligationIds\": [", headers: { "content-type": "application/json" } });
    expect(badJson).toMatchObject({ status: 400, json: { error: "the body is not valid JSON" } });
    const tooLarge = await call("POST", path, { as: OLGA, rawBody: JSON.stringify({ obligationIds: ["x".repeat(70_000)] }), headers: { "content-type": "application/json" } });
    expect(tooLarge).toMatchObject({ status: 413, json: { error: "the body is too large" } });
    const tooMany = await call("POST", path, { as: OLGA, body: { obligationIds: Array.from({ length: 501 }, () => randomUUID()) } });
    expect(tooMany.status).toBe(400);
    const notUuid = await call("POST", path, { as: OLGA, body: { obligationIds: [escalated[4], "1; drop table"] } });
    expect(notUuid.status).toBe(400);
    const neither = await call("POST", path, { as: OLGA, body: { all: false } });
    expect(neither.status).toBe(400);
    for (const r of [notJson, badJson, tooLarge, tooMany, notUuid, neither]) {
      expect(r.headers.get("content-type")).toMatch(/application\/json/);
      expect(r.text).not.toMatch(/at .*\.(ts|js):\d+/);
    }
    expect(await healingStatus(escalated[4]!)).toMatchObject({ status: "escalated" });
  });
});

describe("GET /api/escalations", () => {
  it("pages through escalations with limit and cursor, amounts as strings", async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 10; page++) {
      const query: string = `limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
      const response = await call("GET", `/api/escalations?${query}`, { as: VICTOR });
      expect(response.status).toBe(200);
      expect(response.json.escalations.length).toBeLessThanOrEqual(2);
      for (const e of response.json.escalations) {
        expect(e).toMatchObject({ status: "escalated", amount: "123456", suspenseBalance: "123456", attemptCount: 3 });
        seen.push(e.obligationId);
      }
      cursor = response.json.nextCursor;
      if (!cursor) break;
    }
    const [expected] = await db.execute<{ n: bigint }>(sql`select count(*) as n from dispersal_healing_attempts where status = 'escalated'`);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.length).toBe(Number(expected!.n));
  });

  it("filters by status and mortgage", async () => {
    const requeued = await call("GET", `/api/escalations?status=requeued&mortgageId=${sharedMortgageId}`, { as: OLGA });
    expect(requeued.status).toBe(200);
    expect(requeued.json.escalations.map((e: { obligationId: string }) => e.obligationId).sort()).toEqual([...onSharedMortgage].sort());
    expect(requeued.json.escalations[0]).toMatchObject({ amount: "5000", status: "requeued", mortgageId: sharedMortgageId });
  });

  it("answers 400 for bad filters and cursors", async () => {
    expect((await call("GET", "/api/escalations?status=lost", { as: OLGA })).status).toBe(400);
    expect((await call("GET", "/api/escalations?limit=0", { as: OLGA })).status).toBe(400);
    expect((await call("GET", "/api/escalations?mortgageId=nope", { as: OLGA })).status).toBe(400);
    expect((await call("GET", "/api/escalations?cursor=garbage", { as: OLGA })).status).toBe(400);
    const forged = Buffer.from(JSON.stringify(["'; select 1", randomUUID()])).toString("base64url");
    expect((await call("GET", `/api/escalations?cursor=${forged}`, { as: OLGA })).status).toBe(400);
    expect((await call("GET", "/api/escalations?unknown=1", { as: OLGA })).status).toBe(400);
  });
});

describe("POST /api/healing/scan", () => {
  it("enqueues one scan however often it is clicked while one is waiting", async () => {
    const responses = await Promise.all([1, 2, 3].map(() => call("POST", "/api/healing/scan", { as: OLGA })));
    expect(responses.map((r) => r.status)).toEqual([202, 202, 202]);
    expect(new Set(responses.map((r) => r.json.jobId)).size).toBe(1);
    expect(responses.filter((r) => r.json.alreadyRequested === false)).toHaveLength(1);
    const job = await ctx.queues.healing.getJob(responses[0]!.json.jobId);
    expect(job?.data).toEqual({ requestedBy: "olga" });
    expect(await ctx.queues.healing.getJobCountByTypes("wait", "prioritized", "delayed")).toBe(1);
  });
});

describe("GET /api/reconciliation/latest", () => {
  it("answers 404 before any run and the findings after one", async () => {
    const before = await call("GET", "/api/reconciliation/latest", { as: VICTOR });
    expect(before).toMatchObject({ status: 404, json: { error: "no reconciliation has finished yet" } });
    await reconcileLedger(ctx);
    const after = await call("GET", "/api/reconciliation/latest", { as: VICTOR });
    expect(after.status).toBe(200);
    expect(after.json).toMatchObject({ status: expect.stringMatching(/clean|defects/), findings: { escalatedSuspenseMismatch: { count: 0 } } });
  });

  it("lists the latest runs with their scope and counts, and /ops shows them", async () => {
    const full = await reconcileLedger(ctx, "full");
    const incremental = await reconcileLedger(ctx);
    const runs = await call("GET", "/api/reconciliation/runs?limit=2", { as: VICTOR });
    expect(runs.status).toBe(200);
    expect(runs.json.runs).toEqual([
      expect.objectContaining({ id: incremental.id, scope: "incremental", fromMark: full.journalMark, journalMark: expect.any(String), obligationsChecked: expect.any(Number) }),
      expect.objectContaining({ id: full.id, scope: "full", fromMark: null, obligationsChecked: full.obligationsChecked }),
    ]);
    expect((await call("GET", "/api/reconciliation/runs?limit=0", { as: VICTOR })).status).toBe(400);
    const page = await call("GET", "/ops", { as: VICTOR });
    expect(page.text).toMatch(/<span class="muted">incremental · \d+ obligations? checked · journal [\d,]+ → [\d,]+<\/span>/);
    expect(page.text).toMatch(/Recent runs[\s\S]*<td>incremental<\/td>[\s\S]*<td>full<\/td>/);
  });
});

describe("the ops page", () => {
  function formTokenIn(html: string): string {
    return /name="_token" value="([^"]+)"/.exec(html)![1]!;
  }

  it("escapes what it shows", async () => {
    await db.execute(sql`update dispersal_healing_attempts set last_error = '<script>alert(1)</script>' where obligation_id = ${escalated[7]}::uuid`);
    const page = await call("GET", "/ops", { as: VICTOR });
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/text\/html/);
    expect(page.text).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
    expect(page.text).not.toContain("<script>");
    expect(page.text).not.toMatch(/<form[^>]*method="post"/); // viewers get no buttons (only the search box)
  });

  it("requeues from the form with its token and redirects back with a flash message", async () => {
    const obligationId = escalated[7]!;
    const page = await call("GET", "/ops", { as: OLGA });
    const token = formTokenIn(page.text);
    const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
    const headers = { "content-type": "application/x-www-form-urlencoded" };

    const withoutToken = await call("POST", "/ops/requeue", { as: OLGA, rawBody: form({ only: obligationId }), headers });
    expect(withoutToken.status).toBe(403);
    const forged = await call("POST", "/ops/requeue", { as: OLGA, rawBody: form({ _token: "forged", only: obligationId }), headers });
    expect(forged.status).toBe(403);
    const viewer = await call("POST", "/ops/requeue", { as: VICTOR, rawBody: form({ _token: token, only: obligationId }), headers });
    expect(viewer.status).toBe(403);
    expect(await healingStatus(obligationId)).toMatchObject({ status: "escalated" });

    const withoutReason = await call("POST", "/ops/requeue", { as: OLGA, rawBody: form({ _token: token, only: obligationId, reason: "  " }), headers });
    expect(withoutReason.status).toBe(400);
    expect(await healingStatus(obligationId)).toMatchObject({ status: "escalated" });
    const accepted = await call("POST", "/ops/requeue", { as: OLGA, rawBody: form({ _token: token, only: obligationId, reason: "lender positions corrected" }), headers: { ...headers, origin: new URL(http.url).origin } });
    expect(accepted.status).toBe(303);
    expect(accepted.headers.get("location")).toBe("/ops");
    const cookie = accepted.headers.get("set-cookie")!.split(";")[0]!;
    expect(await healingStatus(obligationId)).toMatchObject({ status: "requeued" });
    expect(await requeueAudits(obligationId)).toMatchObject([{ actor: "olga", metadata: { channel: "ops-page", round: 2, reason: "lender positions corrected" } }]);

    const after = await call("GET", "/ops", { as: OLGA, headers: { cookie } });
    expect(after.text).toMatch(/Requeued 1 escalation for a new round/);
    const again = await call("POST", "/ops/requeue", { as: OLGA, rawBody: form({ _token: token, only: obligationId, reason: "again, to see it refused" }), headers });
    const refusedCookie = again.headers.get("set-cookie")!.split(";")[0]!;
    expect((await call("GET", "/ops", { as: OLGA, headers: { cookie: refusedCookie } })).text).toMatch(/Not requeued \(1\):.*not escalated/);
  });
});

describe("Bull Board", () => {
  const BOARD_REASON = "positions fixed in the servicing system";
  it("turns the retry of a failed retrigger job into a requeue named after the operator", async () => {
    const obligationId = escalated[5]!;
    const failed = (await failedJobOf(obligationId))!;
    expect(failed).toBeDefined();
    const bare = await call("PUT", `/admin/queues/api/queues/${retriggerQueue}/${encodeURIComponent(failed.id!)}/retry`, { as: OLGA });
    expect(bare).toMatchObject({ status: 400, json: { confirmUrl: `/admin/queues/retry/${retriggerQueue}/${encodeURIComponent(failed.id!)}` } });
    expect(await healingStatus(obligationId)).toMatchObject({ status: "escalated" });
    const response = await call("PUT", `/admin/queues/api/queues/${retriggerQueue}/${encodeURIComponent(failed.id!)}/retry`, { as: OLGA, body: { reason: BOARD_REASON } });
    expect(response.status).toBe(200);
    expect(response.json).toMatchObject({ obligationId, round: 2, removedJobId: failed.id });
    expect(await ctx.queues.retrigger.getJob(failed.id!)).toBeUndefined();
    expect(await healingStatus(obligationId)).toMatchObject({ status: "requeued", attempt_count: 0 });
    expect(await requeueAudits(obligationId)).toMatchObject([{ actor: "olga", metadata: { channel: "bull-board", round: 2, reason: BOARD_REASON } }]);
    const live = await liveJobsOf(obligationId);
    expect(live.map((j) => j.id)).toEqual([response.json.jobId]);
    expect(live[0]!.data).toEqual({ obligationId });
  });

  it("answers 409 with the reason when the failed job's obligation is not escalated", async () => {
    // A job that failed without escalation: its obligation is not settled (no cash to park).
    const due = await givenSettledObligation(database, { status: "due" });
    // Failed by hand (BullMQ's manual processing), so the other queued jobs stay untouched.
    const job = await ctx.queues.retrigger.add(JOB.retrigger, { obligationId: due.obligationId }, { attempts: 1, lifo: true });
    const manual = new Worker(retriggerQueue, null, { connection: ctx.queues.connection, prefix: ctx.queues.prefix, autorun: false });
    const next = await manual.getNextJob("manual-token");
    expect(next?.id).toBe(job.id);
    await next!.moveToFailed(new Error("unrecoverable: OBLIGATION_NOT_SETTLED"), "manual-token");
    await manual.close();
    const failed = (await ctx.queues.retrigger.getJob(job.id!))!;
    const response = await call("PUT", `/admin/queues/api/queues/${retriggerQueue}/${encodeURIComponent(failed.id!)}/retry`, { as: OLGA, body: { reason: BOARD_REASON } });
    expect(response.status).toBe(409);
    expect(response.json).toMatchObject({ code: "NOT_ESCALATED", obligationId: due.obligationId });
    expect(response.json.error).toMatch(/not escalated/);
    expect(await failed.getState()).toBe("failed");
  });

  it("is read-only for viewers", async () => {
    const failed = (await failedJobOf(escalated[6]!))!;
    const retry = await call("PUT", `/admin/queues/api/queues/${retriggerQueue}/${encodeURIComponent(failed.id!)}/retry`, { as: VICTOR });
    expect(retry.status).toBe(403);
    const clean = await call("PUT", `/admin/queues/api/queues/${retriggerQueue}/clean/failed`, { as: VICTOR });
    expect(clean.status).toBe(403);
    expect(await failed.getState()).toBe("failed");
    const queues = await call("GET", "/admin/queues/api/queues", { as: VICTOR });
    expect(queues.status).toBe(200);
    const retrigger = queues.json.queues.find((q: { name: string }) => q.name === retriggerQueue);
    expect(retrigger).toMatchObject({ readOnlyMode: true });
    const page = await call("GET", "/admin/queues", { as: VICTOR });
    expect(page.status).toBe(200);
    expect(page.text).toMatch(/<html/i);
  });

  it("turns 'retry all' of failed retrigger jobs into requeues of the escalated ones only", async () => {
    const stillEscalated = (await db.execute<{ obligation_id: string }>(sql`
      select obligation_id::text from dispersal_healing_attempts where status = 'escalated'`)).map((r) => r.obligation_id);
    expect(stillEscalated.length).toBeGreaterThanOrEqual(2);
    const response = await call("PUT", `/admin/queues/api/queues/${retriggerQueue}/retry/failed`, { as: OLGA });
    expect(response.status).toBe(200);
    expect(response.json.requeued.map((r: { obligationId: string }) => r.obligationId).sort()).toEqual([...stillEscalated].sort());
    expect(response.json.retried).toBe(stillEscalated.length);
    for (const refusal of response.json.refused) expect(refusal.code).toBe("NOT_ESCALATED");
    for (const id of stillEscalated) {
      expect(await healingStatus(id)).toMatchObject({ status: "requeued" });
      expect(await failedJobOf(id)).toBeUndefined();
      expect((await requeueAudits(id)).map((a) => [a.actor, a.metadata.channel])).toEqual([["olga", "bull-board"]]);
    }
  });
});

describe("health", () => {
  it("answers /healthz and /readyz without credentials when Redis and Postgres answer", async () => {
    expect((await call("GET", "/healthz")).status).toBe(200);
    const ready = await call("GET", "/readyz");
    expect(ready).toMatchObject({ status: 200, json: { status: "ready", down: [] } });
  });

  it("answers 503 from /readyz naming what is down, and 503 from the API when Postgres is down", async () => {
    const deadRedis = createRedisConnection({ REDIS_URL: "redis://127.0.0.1:1" }, "dead-redis-probe");
    deadRedis.on("error", () => {});
    const deadQueues = openQueues(deadRedis, ctx.queues.prefix);
    const deadPostgres = connectDatabase("postgres://postgres@127.0.0.1:1/nowhere", { max: 1 });
    const noRedis: PipelineContext = { ...ctx, queues: deadQueues };
    const noPostgres: PipelineContext = { ...ctx, database: deadPostgres };
    const servers = await Promise.all([noRedis, noPostgres].map((c) => startHttpServer(c, { ...config, PORT: 0, HOST: "127.0.0.1" })));
    try {
      const [redisDown, postgresDown] = await Promise.all(servers.map((s) => call("GET", "/readyz", { base: s.url })));
      expect(redisDown).toMatchObject({ status: 503, json: { status: "unavailable", down: ["redis"] } });
      expect(postgresDown).toMatchObject({ status: 503, json: { status: "unavailable", down: ["postgres"] } });
      const api = await call("GET", "/api/escalations", { base: servers[1]!.url, as: OLGA });
      expect(api.status).toBe(503);
      expect(api.json.error).toMatch(/unavailable/);
      expect(api.text).not.toMatch(/127\.0\.0\.1|ECONNREFUSED/);
    } finally {
      await Promise.all(servers.map((s) => s.close()));
      deadRedis.disconnect();
      await deadPostgres.close();
    }
  });
});
