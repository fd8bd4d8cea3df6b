// Answers carrying money or people's data are never cached, and reading an obligation's story or
// the escalations CSV is audited with who read it (issue 21 item 8).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { scanAndWait } from "../../src/jobs/scanAndWait.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { httpCall, type HttpCallOptions } from "../helpers/http.js";
import { testPipeline } from "../helpers/pipeline.js";
import { testDb } from "../helpers/testDb.js";

const OLGA = { name: "olga", secret: "olga-operator-secret" };
const VICTOR = { name: "victor", secret: "victor-viewer-secret" };
const SAM = { name: "sam", secret: "sam-service-secret" };
const database = await testDb();
const pipeline = testPipeline(database, { OPS_USERS: `${OLGA.name}:operator:${OLGA.secret},${VICTOR.name}:viewer:${VICTOR.secret},${SAM.name}:service:${SAM.secret}` });
const { ctx, config } = pipeline;
const db = database.db;
let http: HttpServer;
let escalatedId: string;
let dueId: string;

const call = (method: string, path: string, options: HttpCallOptions = {}) => httpCall(http.url, method, path, options);

beforeAll(async () => {
  const workers = pipeline.startWorkers();
  const escalated = await givenSettledObligation(database, { lenders: [0], amount: 12_345n });
  expect(await scanAndWait(ctx, { timeoutMs: 25_000 })).toMatchObject({ escalated: 1 });
  await workers.close();
  escalatedId = escalated.obligationId;
  dueId = (await givenSettledObligation(database, { lenders: [5000, 5000], amount: 10_000n, status: "due" })).obligationId;
  http = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
});

afterAll(async () => {
  await http?.close();
});

async function readAudits(action: string, actor: string) {
  return db.execute<{ resource_type: string; resource_id: string; metadata: { channel: string } }>(sql`
    select resource_type, resource_id, metadata from audit_log where action = ${action} and actor = ${actor} order by created_at`);
}

describe("Cache-Control: no-store", () => {
  it("is on every answer that carries money or personal data", async () => {
    const answers = {
      escalations: await call("GET", "/api/escalations", { as: VICTOR }),
      csv: await call("GET", "/api/escalations.csv", { as: VICTOR }),
      story: await call("GET", `/api/obligations/${escalatedId}`, { as: VICTOR }),
      search: await call("GET", "/api/search?q=abc", { as: VICTOR }),
      pending: await call("GET", "/api/escalations/requeue/pending", { as: VICTOR }),
      reconciliation: await call("GET", "/api/reconciliation/latest", { as: VICTOR }),
      opsPage: await call("GET", "/ops", { as: VICTOR }),
      storyPage: await call("GET", `/ops/obligations/${escalatedId}`, { as: VICTOR }),
      metrics: await call("GET", "/metrics", { as: VICTOR }),
      bullBoard: await call("GET", `/admin/queues/api/queues?activeQueue=${ctx.queues.retrigger.name}&status=failed&page=1`, { as: VICTOR }),
      payment: await call("POST", `/api/obligations/${dueId}/payments`, { as: SAM, body: { reference: "no-store-check-1", amount: "100" } }),
      requeue: await call("POST", `/api/escalations/${escalatedId}/requeue`, { as: OLGA, body: { reason: "lender positions corrected" }, headers: { origin: http.url } }),
      refused: await call("GET", "/api/escalations", { as: { name: "olga", secret: "not-olgas-secret" } }),
    };
    const seen = Object.fromEntries(Object.entries(answers).map(([what, a]) => [what, { status: a.status, cacheControl: a.headers.get("cache-control") }]));
    expect(seen).toMatchObject({
      escalations: { status: 200 },
      csv: { status: 200 },
      story: { status: 200 },
      opsPage: { status: 200 },
      storyPage: { status: 200 },
      payment: { status: 201 },
      requeue: { status: 202 },
    });
    for (const [what, answer] of Object.entries(seen)) expect({ what, cacheControl: answer.cacheControl }).toEqual({ what, cacheControl: "no-store" });
  });
});

describe("reads of money are audited", () => {
  it("records who read an obligation's story, through the API and the page, before answering", async () => {
    const before = (await readAudits("ops.obligation_story_read", "victor")).length;
    expect((await call("GET", `/api/obligations/${escalatedId}`, { as: VICTOR })).status).toBe(200);
    expect((await call("GET", `/ops/obligations/${escalatedId}`, { as: VICTOR })).status).toBe(200);
    expect((await readAudits("ops.obligation_story_read", "victor")).slice(before)).toEqual([
      expect.objectContaining({ resource_type: "obligation_story", resource_id: escalatedId, metadata: expect.objectContaining({ channel: "api" }) }),
      expect.objectContaining({ resource_type: "obligation_story", resource_id: escalatedId, metadata: expect.objectContaining({ channel: "ops-page" }) }),
    ]);
  });

  it("records who downloaded the escalations CSV", async () => {
    const before = (await readAudits("ops.escalations_csv_read", "olga")).length;
    const csv = await call("GET", "/api/escalations.csv", { as: OLGA });
    expect(csv.status).toBe(200);
    expect(csv.text).toMatch(/^obligation_id,/);
    const after = await readAudits("ops.escalations_csv_read", "olga");
    expect(after).toHaveLength(before + 1);
    expect(after.at(-1)).toMatchObject({ resource_type: "escalations" });
  });
});
