// Redis down under a running server (DESIGN.md §5 "Failing loudly"): /readyz names it, /ops warns in
// its header, a requeue, a bulk requeue and an approval are answered 503 within
// REDIS_COMMAND_TIMEOUT_MS, and a request answered as failed never acts afterwards: once Redis is
// back its healing row is still `escalated` and no retrigger job of it exists. The Redis is the
// test's own (killed by pid and restarted on the same port, its append-only file kept).
import { hostname } from "node:os";
import { sql } from "drizzle-orm";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { setRequeuePolicy } from "../../src/db/requeueRequests.js";
import { QUEUE } from "../../src/queues/names.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { httpCall, type Credentials } from "../helpers/http.js";
import { spawnCli, waitFor, type CliProcess } from "../helpers/processes.js";
import { freePort, privateRedis } from "../helpers/redisServer.js";
import { testDb } from "../helpers/testDb.js";

const database = await testDb();
const redis = await privateRedis();
const prefix = "{redis-down}";
const alice: Credentials = { name: "alice", secret: "alice-secret-123" };
const bob: Credentials = { name: "bob", secret: "bob-secret-4567" };
const COMMAND_TIMEOUT_MS = 1500;
const env = {
  DATABASE_URL: database.url,
  REDIS_URL: redis.url,
  QUEUE_PREFIX: prefix,
  HOST: "127.0.0.1",
  HEALING_BACKOFF_MS: "20",
  OPS_USERS: `alice:operator:${alice.secret},bob:operator:${bob.secret}`,
  REDIS_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS),
  LOG_LEVEL: "warn",
};

interface Server {
  proc: CliProcess;
  base: string;
}

async function startServer(approvals: "1" | "2"): Promise<Server> {
  const port = await freePort();
  const proc = spawnCli(["server"], { ...env, PORT: String(port), REQUEUE_APPROVALS: approvals });
  const base = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${base}/readyz`).catch(() => undefined))?.status === 200, { timeoutMs: 30_000, what: `server (approvals ${approvals}) ready` });
  return { proc, base };
}

let single: Server;
let fourEyes: Server;
let escalated: string[];

beforeAll(async () => {
  const obligations = await Promise.all([1, 2, 3, 4].map((i) => givenSettledObligation(database, { lenders: [0], amount: BigInt(1000 + i) })));
  escalated = obligations.map((o) => o.obligationId);
  const scan = spawnCli(["scan", "--wait", "--timeout", "60"], env);
  expect(await scan.exited, scan.output()).toBe(0);
  expect(await statuses(escalated)).toEqual(escalated.map(() => "escalated"));
  [single, fourEyes] = await Promise.all([startServer("1"), startServer("2")]);
}, 90_000);

afterAll(async () => {
  await Promise.all([single?.proc.stop(), fourEyes?.proc.stop()]);
});

async function statuses(ids: string[]): Promise<string[]> {
  const rows = await database.db.execute<{ id: string; status: string }>(sql`
    select obligation_id::text as id, status from dispersal_healing_attempts
     where obligation_id in (select (jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb))::uuid)`);
  const byId = new Map(rows.map((r) => [r.id, r.status]));
  return ids.map((id) => byId.get(id) ?? "none");
}

async function retriggerJobsOf(ids: string[]): Promise<string[]> {
  const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
  const queue = new Queue(QUEUE.retrigger, { connection, prefix });
  try {
    const jobs = await queue.getJobs(["waiting", "delayed", "prioritized", "active", "completed", "failed", "waiting-children"]);
    return jobs.filter((j) => j && ids.includes(j.data.obligationId) && j.timestamp > redisKilledAt).map((j) => j.data.obligationId);
  } finally {
    await queue.close();
    connection.disconnect();
  }
}

async function timedCall(server: Server, method: string, path: string, as: Credentials, body?: unknown) {
  const started = performance.now();
  const answer = await httpCall(server.base, method, path, { as, ...(body !== undefined ? { body } : {}) });
  return { ...answer, ms: performance.now() - started };
}

let redisKilledAt = 0;

/** A window in which nothing is supposed to happen; the assertions after it say what. */
function quietPeriod(ms: number, _what: string): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe("Redis down under a running server", () => {
  it("answers 503 naming it, warns on /ops, refuses requeues and approvals in time, and none of them acts once Redis is back", async () => {
    const [requeued, bulk1, bulk2, approved] = escalated as [string, string, string, string];
    // Asked while Redis is up: with four eyes the request waits for a second operator (Postgres only).
    // The policy is Postgres's, the same for both servers: at 2 for the ask, then at 1 again.
    await database.db.transaction((tx) => setRequeuePolicy(tx, 2, "test"));
    const asked = await httpCall(fourEyes.base, "POST", `/api/escalations/${approved}/requeue`, { as: alice, body: { reason: "positions corrected in the servicing system" } });
    expect(asked.status, asked.text).toBe(202);
    expect(asked.json).toMatchObject({ status: "pending_approval" });
    await database.db.transaction((tx) => setRequeuePolicy(tx, 1, "test"));

    redisKilledAt = Date.now() - 1000;
    await redis.kill();

    const ready = await waitFor(async () => {
      const answer = await httpCall(single.base, "GET", "/readyz");
      return answer.status === 503 ? answer : undefined;
    }, { timeoutMs: 10_000, what: "/readyz 503" });
    expect(ready.json).toMatchObject({ status: "unavailable", down: ["redis"] });
    expect(ready.text).not.toContain(hostname());
    expect(ready.text).not.toContain(String(single.proc.pid));

    const ops = await httpCall(single.base, "GET", "/ops", { as: alice });
    expect(ops.status).toBe(200);
    expect(ops.text).toMatch(/<header>[\s\S]*Redis is unreachable[\s\S]*<\/header>/);

    const one = await timedCall(single, "POST", `/api/escalations/${requeued}/requeue`, alice, { reason: "positions corrected in the servicing system" });
    expect(one.status, one.text).toBe(503);
    expect(one.json).toMatchObject({ error: expect.stringMatching(/Redis/), dependency: "redis" });
    expect(one.ms).toBeLessThan(COMMAND_TIMEOUT_MS + 2000);

    const many = await timedCall(single, "POST", "/api/escalations/requeue", alice, { obligationIds: [bulk1, bulk2], reason: "positions corrected in the servicing system" });
    expect(many.status, many.text).toBe(503);
    expect(many.json).toMatchObject({ requeued: 0, interrupted: true });
    expect(many.ms).toBeLessThan(COMMAND_TIMEOUT_MS + 2000);

    const approval = await timedCall(fourEyes, "POST", `/api/escalations/${approved}/requeue/approve`, bob);
    expect(approval.status, approval.text).toBe(503);
    expect(approval.json).toMatchObject({ dependency: "redis" });
    expect(approval.ms).toBeLessThan(COMMAND_TIMEOUT_MS + 2000);

    await redis.restart();
    await waitFor(async () => (await httpCall(single.base, "GET", "/readyz")).status === 200, { timeoutMs: 30_000, what: "server ready again" });
    await waitFor(async () => (await httpCall(fourEyes.base, "GET", "/readyz")).status === 200, { timeoutMs: 30_000, what: "four-eyes server ready again" });
    // A command held back while Redis was away would be sent on the reconnect, at once.
    await quietPeriod(2000, "nothing of the refused requests arrives after the reconnect");

    expect(await statuses(escalated)).toEqual(["escalated", "escalated", "escalated", "escalated"]);
    expect(await retriggerJobsOf(escalated)).toEqual([]);
    const [pending] = await database.db.execute<{ status: string }>(sql`select status from requeue_requests where obligation_id = ${approved}::uuid`);
    expect(pending!.status).toBe("pending");

    // And with Redis back the same request acts (the test can tell the two apart).
    const again = await httpCall(single.base, "POST", `/api/escalations/${requeued}/requeue`, { as: alice, body: { reason: "positions corrected in the servicing system" } });
    expect(again.status, again.text).toBe(202);
    expect(await statuses([requeued])).toEqual(["requeued"]);
    expect(await retriggerJobsOf([requeued])).toEqual([requeued]);
  });
});
