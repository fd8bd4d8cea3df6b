// Ids from other systems: every value Postgres's uuid holds (here version 0, variant 0, which
// RFC-4122 validators refuse) and upper-case input go through the whole pipeline: scan → dispersal,
// escalation, requeue by API (path, body, query, cursor) and ops form, a job added with an upper-case id.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { findAccount } from "../../src/db/ledger.js";
import { scanAndWait } from "../../src/jobs/scanAndWait.js";
import { JOB } from "../../src/queues/names.js";
import { givenSettledObligation, type GivenObligationResult } from "../helpers/factories.js";
import { testPipeline } from "../helpers/pipeline.js";
import { waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";

const OLGA = { name: "olga", secret: "olga-operator-secret" };
const database = await testDb();
const pipeline = testPipeline(database, { OPS_USERS: `${OLGA.name}:operator:${OLGA.secret}` });
const { ctx, config } = pipeline;
const db = database.db;

/** Legal for Postgres's uuid, refused by z.uuid(): version nibble 0, variant nibble 0. */
const id = (prefix: string, n: number) => `${prefix}000000-0000-0000-0000-${n.toString(16).padStart(12, "0")}`;
const OBLIGATION = { fixable: id("30", 1), unfixable: id("30", 2), bulk: id("30", 3), form: id("30", 4), jobData: id("3a", 5) };

let http: HttpServer;
let fixable: GivenObligationResult;
let unfixable: GivenObligationResult;
let bulk: GivenObligationResult;
let form: GivenObligationResult;

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const auth = `Basic ${Buffer.from(`${OLGA.name}:${OLGA.secret}`).toString("base64")}`;
  const init: RequestInit = { method, headers: { authorization: auth, ...headers }, redirect: "manual" };
  if (typeof body === "string") init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { ...init.headers, "content-type": "application/json" };
  }
  const response = await fetch(`${http.url}${path}`, init);
  const text = await response.text();
  return { status: response.status, text, json: text.startsWith("{") || text.startsWith("[") ? JSON.parse(text) : undefined };
}

async function healing(obligationId: string) {
  const [row] = await db.execute<{ obligation_id: string; status: string; attempt_count: number }>(sql`
    select obligation_id::text, status, attempt_count from dispersal_healing_attempts where obligation_id = ${obligationId}::uuid`);
  return row;
}

async function dispersalEntries(obligationId: string): Promise<bigint[]> {
  const rows = await db.execute<{ amount: bigint }>(sql`
    select amount from dispersal_entries where obligation_id = ${obligationId}::uuid order by lender_id`);
  return rows.map((r) => BigInt(r.amount));
}

async function waitResolved(obligationId: string) {
  await waitFor(async () => (await healing(obligationId))?.status === "resolved", { timeoutMs: 20_000, what: `${obligationId} resolved` });
}

beforeAll(async () => {
  pipeline.startWorkers();
  fixable = await givenSettledObligation(database, {
    lenders: [6000, 4000],
    amount: 100_001n,
    type: "principal_repayment",
    ids: { obligation: OBLIGATION.fixable, mortgage: id("40", 1), lenders: [id("50", 1), id("50", 2)] },
  });
  unfixable = await givenSettledObligation(database, { lenders: [0], amount: 70_000n, ids: { obligation: OBLIGATION.unfixable, mortgage: id("40", 2), lenders: [id("50", 3)] } });
  bulk = await givenSettledObligation(database, { mortgageId: unfixable.mortgageId, amount: 30_000n, ids: { obligation: OBLIGATION.bulk } });
  form = await givenSettledObligation(database, { mortgageId: unfixable.mortgageId, amount: 20_000n, ids: { obligation: OBLIGATION.form } });
  http = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
});

afterAll(async () => {
  await http?.close();
});

describe("ids from other systems (any version and variant nibble, any case)", () => {
  it("the scan finds them; the fixable one is dispersed, the unfixable ones escalated after 3 attempts", async () => {
    const summary = await scanAndWait(ctx, { timeoutMs: 30_000 });
    expect(summary).toMatchObject({ found: 4, enqueued: 4, dispersed: 1, escalated: 3, skipped: 0, unfinished: 0 });
    expect(await dispersalEntries(fixable.obligationId)).toEqual([60_001n, 40_000n]);
    for (const o of [unfixable, bulk, form]) {
      expect(await healing(o.obligationId)).toMatchObject({ obligation_id: o.obligationId, status: "escalated", attempt_count: 3 });
      expect((await findAccount(db, { family: "SUSPENSE", mortgageId: o.mortgageId, obligationId: o.obligationId }))?.balance).toBe(o.amount);
    }
    // Nothing is re-enqueued on the next scan (before the fix the job was refused as malformed, every scan).
    expect(await scanAndWait(ctx, { timeoutMs: 5_000 })).toMatchObject({ found: 0, enqueued: 0 });
  });

  it("the API lists them filtered by an upper-case mortgage id and pages with a cursor naming such an id", async () => {
    const listed = await call("GET", `/api/escalations?mortgageId=${unfixable.mortgageId.toUpperCase()}&limit=1`);
    expect(listed.status).toBe(200);
    expect(listed.json.escalations).toHaveLength(1);
    expect(listed.json.escalations[0].mortgageId).toBe(unfixable.mortgageId);
    const [listedAt, obligationId] = JSON.parse(Buffer.from(listed.json.nextCursor, "base64url").toString("utf8")) as [string, string];
    const upperCursor = Buffer.from(JSON.stringify([listedAt, obligationId.toUpperCase()])).toString("base64url");
    const next = await call("GET", `/api/escalations?mortgageId=${unfixable.mortgageId}&limit=5&cursor=${upperCursor}`);
    expect(next.status).toBe(200);
    expect(next.json.escalations.map((e: { obligationId: string }) => e.obligationId).sort()).toEqual(
      [unfixable, bulk, form].map((o) => o.obligationId).filter((o) => o !== obligationId).sort(),
    );
  });

  it("an operator requeues one by its upper-case id in the path; fixed, it is dispersed and its SUSPENSE cleared", async () => {
    await db.execute(sql`update mortgage_positions set units = 10000 where mortgage_id = ${unfixable.mortgageId}::uuid`);
    const answer = await call("POST", `/api/escalations/${OBLIGATION.unfixable.toUpperCase()}/requeue`, { reason: "positions fixed" });
    expect(answer.status).toBe(202);
    expect(answer.json).toMatchObject({ obligationId: OBLIGATION.unfixable, round: 2 });
    expect(answer.json.jobId.startsWith(`${OBLIGATION.unfixable}.`)).toBe(true);
    await waitResolved(unfixable.obligationId);
    expect(await dispersalEntries(unfixable.obligationId)).toEqual([70_000n]);
    expect((await findAccount(db, { family: "SUSPENSE", mortgageId: unfixable.mortgageId, obligationId: unfixable.obligationId }))?.balance).toBe(0n);
    const [audit] = await db.execute<{ n: bigint }>(sql`
      select count(*) as n from audit_log where action = 'dispersal.self_healing_requeued' and resource_id = ${OBLIGATION.unfixable}`);
    expect(audit!.n).toBe(1n);
  });

  it("a bulk requeue accepts upper-case ids in its body", async () => {
    const answer = await call("POST", "/api/escalations/requeue", { obligationIds: [OBLIGATION.bulk.toUpperCase()], reason: "positions fixed" });
    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ requested: 1, requeued: 1, refused: 0 });
    await waitResolved(bulk.obligationId);
  });

  it("the ops page's form accepts such an id", async () => {
    const page = await call("GET", "/ops");
    const token = /name="_token" value="([^"]+)"/.exec(page.text)![1]!;
    const answer = await call("POST", "/ops/requeue", new URLSearchParams({ _token: token, only: OBLIGATION.form.toUpperCase(), reason: "positions fixed" }).toString(), {
      "content-type": "application/x-www-form-urlencoded",
      origin: new URL(http.url).origin,
    });
    expect(answer.status).toBe(303);
    await waitResolved(form.obligationId);
  });

  it("a retrigger job whose data names the obligation in upper case disperses it", async () => {
    const late = await givenSettledObligation(database, { lenders: [10_000], amount: 5_000n, ids: { obligation: OBLIGATION.jobData.toUpperCase() } });
    expect(late.obligationId).toBe(OBLIGATION.jobData);
    const job = await ctx.queues.retrigger.add(JOB.retrigger, { obligationId: OBLIGATION.jobData.toUpperCase() }, { attempts: 3 });
    await waitFor(async () => (await ctx.queues.retrigger.getJob(job.id!))?.isCompleted(), { timeoutMs: 20_000, what: "the job" });
    expect(await dispersalEntries(late.obligationId)).toEqual([5_000n]);
    expect(await healing(late.obligationId)).toMatchObject({ obligation_id: OBLIGATION.jobData, status: "resolved" });
  });

  it("still refuses what is not an 8-4-4-4-12 hexadecimal id, with a clear error and nothing changed", async () => {
    for (const bad of ["30000000-0000-0000-0000-00000000000g", "30000000000000000000000000000001", "not-a-uuid"]) {
      const answer = await call("POST", `/api/escalations/${bad}/requeue`, { reason: "positions fixed" });
      expect(answer.status).toBe(400);
      expect(answer.json.error).toMatch(/obligationId must be a UUID \(8-4-4-4-12 hexadecimal\)/);
    }
    const query = await call("GET", "/api/escalations?mortgageId=40000000-0000-0000-0000-00000000000z");
    expect(query.status).toBe(400);
    const body = await call("POST", "/api/escalations/requeue", { obligationIds: ["{30000000-0000-0000-0000-000000000002}"], reason: "positions fixed" });
    expect(body.status).toBe(400);
    const [requeues] = await db.execute<{ n: bigint }>(sql`select count(*) as n from audit_log where action = 'dispersal.self_healing_requeued'`);
    expect(requeues!.n).toBe(3n);
  });
});
