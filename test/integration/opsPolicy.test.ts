// The four-eyes policy lives in Postgres (issue 21 item 8): every requeue path reads ops_policy in
// the requeue's own transaction, so a process whose REQUEUE_APPROVALS says 1 still asks and waits.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { initialiseRequeuePolicy, readRequeuePolicy, setRequeuePolicy } from "../../src/db/requeueRequests.js";
import { requestRequeue } from "../../src/jobs/requeue.js";
import { givenMortgage } from "../helpers/factories.js";
import { givenEscalations } from "../helpers/healingRows.js";
import { httpCall } from "../helpers/http.js";
import { testPipeline } from "../helpers/pipeline.js";
import { testDb } from "../helpers/testDb.js";

const OLGA = { name: "olga", secret: "olga-operator-secret" };
const database = await testDb();
const pipeline = testPipeline(database, { OPS_USERS: `${OLGA.name}:operator:${OLGA.secret}`, REQUEUE_APPROVALS: "1" });
const { ctx } = pipeline;
const db = database.db;
const REASON = "lender positions corrected";
let http: HttpServer;

beforeAll(async () => {
  http = await startHttpServer(ctx, pipeline.config);
});
afterAll(async () => {
  await http.close();
});

async function escalations(count: number): Promise<string[]> {
  const { mortgageId } = await givenMortgage(database, { lenders: [0] });
  return givenEscalations(database, { mortgageId, count });
}

async function healingStatus(id: string) {
  const [row] = await db.execute<{ status: string }>(sql`select status from dispersal_healing_attempts where obligation_id = ${id}::uuid`);
  return row?.status;
}

const setPolicy = (approvals: 1 | 2) => db.transaction((tx) => setRequeuePolicy(tx, approvals, "test-admin"));

describe("the four-eyes policy in Postgres", () => {
  it("a database without a row takes REQUEUE_APPROVALS once, and keeps its row whatever a later process says", async () => {
    expect(await readRequeuePolicy(db, 2)).toEqual({ requeueApprovals: 2, setBy: null, setAt: null });
    expect(await initialiseRequeuePolicy(db, 1)).toMatchObject({ initialised: true, policy: { requeueApprovals: 1, setBy: "REQUEUE_APPROVALS" } });
    expect(await initialiseRequeuePolicy(db, 2)).toMatchObject({ initialised: false, policy: { requeueApprovals: 1 } });
    expect((await readRequeuePolicy(db, 2)).requeueApprovals).toBe(1);
  });

  it("at 2, the API, the bulk requeue and the Bull Board path all wait for approval though this process says 1", async () => {
    await setPolicy(2);
    const [single, bulk, board] = (await escalations(3)) as [string, string, string];

    const asked = await httpCall(http.url, "POST", `/api/escalations/${single}/requeue`, { as: OLGA, body: { reason: REASON } });
    expect(asked.status, asked.text).toBe(202);
    expect(asked.json).toMatchObject({ status: "pending_approval" });
    const many = await httpCall(http.url, "POST", "/api/escalations/requeue", { as: OLGA, body: { obligationIds: [bulk], reason: REASON } });
    expect(many.status, many.text).toBe(200);
    expect(many.json).toMatchObject({ requeued: 0, pendingApproval: 1 });
    expect(await requestRequeue(ctx, board, { actor: OLGA.name, channel: "bull-board", reason: REASON })).toMatchObject({ status: "pending_approval" });

    expect((await httpCall(http.url, "GET", "/api/escalations/requeue/pending", { as: OLGA })).json).toMatchObject({ approvalsRequired: 2 });
    for (const id of [single, bulk, board]) expect(await healingStatus(id)).toBe("escalated");
  });

  it("policy set is audited with the value before, and a requeue after it follows at once", async () => {
    await setPolicy(2);
    await setPolicy(1);
    const [audit] = await db.execute<{ actor: string; severity: string; metadata: Record<string, unknown> }>(sql`
      select actor, severity, metadata from audit_log where action = 'ops.policy_set' order by created_at desc limit 1`);
    expect(audit).toEqual({ actor: "test-admin", severity: "warning", metadata: { requeueApprovals: 1, previous: 2 } });

    const [id] = (await escalations(1)) as [string];
    const answer = await httpCall(http.url, "POST", `/api/escalations/${id}/requeue`, { as: OLGA, body: { reason: REASON } });
    expect(answer.status, answer.text).toBe(202);
    expect(answer.json).toMatchObject({ status: "requeued" });
    expect(await healingStatus(id)).toBe("requeued");
  });
});
