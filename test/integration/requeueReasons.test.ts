// A reason of invisible characters is no reason (issue 21 item 8): every path that takes one — the
// API's single and bulk requeue, the ops page, the CLI, and requestRequeue itself, which Bull Board's
// retry calls — answers 400 (the CLI: non-zero) and records nothing.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { InvalidRequeueReasonError } from "../../src/domain/requeueReason.js";
import { requestRequeue } from "../../src/jobs/requeue.js";
import { scanAndWait } from "../../src/jobs/scanAndWait.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { httpCall, type HttpCallOptions } from "../helpers/http.js";
import { testPipeline } from "../helpers/pipeline.js";
import { spawnCli } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";

const OLGA = { name: "olga", secret: "olga-operator-secret" };
const database = await testDb();
const pipeline = testPipeline(database, { OPS_USERS: `${OLGA.name}:operator:${OLGA.secret}` });
const { ctx, config } = pipeline;
const db = database.db;
let http: HttpServer;
let obligationId: string;

const INVISIBLE_REASONS = [
  "\u200B".repeat(30), // zero-width spaces
  "\u202E\u2066\u2067\u2068\u2069\u200E\u200F\u202A\u202C", // bidi controls
  "\uFEFF\u2060\u00AD\u200C\u200D", // BOM, word joiner, soft hyphen, (non-)joiners
  "\u0000\u0007\u001B\t\n\r\u0085", // controls
  `ok${"\u200B".repeat(40)}`, // two visible characters padded out
];

const call = (method: string, path: string, options: HttpCallOptions = {}) => httpCall(http.url, method, path, options);

async function recorded(id: string) {
  const [row] = await db.execute<{ requests: bigint; audits: bigint; status: string }>(sql`
    select (select count(*) from requeue_requests where obligation_id = ${id}::uuid) as requests,
           (select count(*) from audit_log where resource_id = ${id} and action like 'dispersal.self_healing_requeue%') as audits,
           (select status from dispersal_healing_attempts where obligation_id = ${id}::uuid) as status`);
  return row!;
}

beforeAll(async () => {
  const workers = pipeline.startWorkers();
  const given = await givenSettledObligation(database, { lenders: [0], amount: 4_200n });
  expect(await scanAndWait(ctx, { timeoutMs: 25_000 })).toMatchObject({ escalated: 1 });
  await workers.close();
  obligationId = given.obligationId;
  http = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
});

afterAll(async () => {
  await http?.close();
});

describe("a requeue reason must be visible text", () => {
  it("is refused by the API's requeue, one or bulk, with 400 and a JSON reason", async () => {
    for (const reason of INVISIBLE_REASONS) {
      const one = await call("POST", `/api/escalations/${obligationId}/requeue`, { as: OLGA, body: { reason } });
      expect({ reason, status: one.status }).toEqual({ reason, status: 400 });
      expect(one.json.error).toMatch(/visible characters|reason is required/);
      const bulk = await call("POST", "/api/escalations/requeue", { as: OLGA, body: { obligationIds: [obligationId], reason } });
      expect({ reason, status: bulk.status }).toEqual({ reason, status: 400 });
      expect(bulk.json.error).toMatch(/visible characters|reason is required/);
    }
    expect(await recorded(obligationId)).toMatchObject({ requests: 0n, audits: 0n, status: "escalated" });
  });

  it("is refused by the ops page's form", async () => {
    const page = await call("GET", "/ops", { as: OLGA });
    const token = /name="_token" value="([^"]+)"/.exec(page.text)![1]!;
    for (const reason of INVISIBLE_REASONS) {
      const answer = await call("POST", "/ops/requeue", {
        as: OLGA,
        rawBody: new URLSearchParams({ _token: token, only: obligationId, reason }).toString(),
        headers: { "content-type": "application/x-www-form-urlencoded", origin: new URL(http.url).origin },
      });
      expect({ reason, status: answer.status }).toEqual({ reason, status: 400 });
    }
    expect(await recorded(obligationId)).toMatchObject({ requests: 0n, audits: 0n, status: "escalated" });
  });

  it("is refused by requestRequeue, the path Bull Board's retry and every other caller take", async () => {
    for (const reason of INVISIBLE_REASONS) {
      await expect(requestRequeue(ctx, obligationId, { actor: "olga", channel: "bull-board", reason })).rejects.toBeInstanceOf(InvalidRequeueReasonError);
    }
    expect(await recorded(obligationId)).toMatchObject({ requests: 0n, audits: 0n, status: "escalated" });
  });

  it("is refused by the CLI, which exits non-zero naming --reason", async () => {
    const env = { DATABASE_URL: database.url, REDIS_URL: config.REDIS_URL, QUEUE_PREFIX: config.QUEUE_PREFIX, LOG_LEVEL: "silent" };
    const cli = spawnCli(["requeue", obligationId, "--actor", "olga", "--reason", "\u200B\u202E\u2066\u2069".repeat(5)], env);
    expect(await cli.exited).not.toBe(0);
    expect(cli.output()).toMatch(/--reason/);
    expect(await recorded(obligationId)).toMatchObject({ requests: 0n, audits: 0n, status: "escalated" });
  });

  it("requeues with a visible reason and records it without the invisible characters", async () => {
    const answer = await call("POST", `/api/escalations/${obligationId}/requeue`, { as: OLGA, body: { reason: "\u202Elender positions\u200B corrected\u2069" } });
    expect(answer.status).toBe(202);
    const [audit] = await db.execute<{ metadata: { reason: string } }>(sql`
      select metadata from audit_log where resource_id = ${obligationId} and action = 'dispersal.self_healing_requeued'`);
    expect(audit!.metadata.reason).toBe("lender positions corrected");
  });
});
