// One trace from a payment to its ledger postings, across processes (issue 21 item 6): a `server`
// takes POST …/payments, a `worker` is notified of the settlement and disperses it; both export
// OTLP/HTTP JSON to a receiver in this test, which rebuilds the span tree.
import { createServer as createHttpServer, type IncomingMessage } from "node:http";
import { createServer as createNetServer } from "node:net";
import type { AddressInfo } from "node:net";
import { sql } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import { givenSettledObligation } from "../helpers/factories.js";
import { httpCall } from "../helpers/http.js";
import { spawnCli, waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";
import { testQueues } from "../helpers/testQueues.js";

const database = await testDb();
const { prefix, redisUrl } = testQueues();
const FEED = { name: "feed", secret: "feed-service-secret" };

interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
  resource: Record<string, unknown>;
}

/** OTLP/JSON AnyValue → a plain value. */
function plain(value: any): unknown {
  if (value === undefined || value === null) return undefined;
  if ("stringValue" in value) return value.stringValue;
  if ("intValue" in value) return Number(value.intValue);
  if ("doubleValue" in value) return value.doubleValue;
  if ("boolValue" in value) return value.boolValue;
  if ("arrayValue" in value) return (value.arrayValue.values ?? []).map(plain);
  return undefined;
}
const attributesOf = (list: any[] = []) => Object.fromEntries(list.map((a) => [a.key, plain(a.value)]));

const spans: ReceivedSpan[] = [];
const contentTypes = new Set<string>();
const receiver = createHttpServer((req: IncomingMessage, res) => {
  let body = "";
  req.on("data", (chunk: Buffer) => (body += chunk.toString()));
  req.on("end", () => {
    contentTypes.add(`${req.method} ${req.url} ${req.headers["content-type"]}`);
    const request = JSON.parse(body);
    for (const resourceSpans of request.resourceSpans ?? []) {
      const resource = attributesOf(resourceSpans.resource?.attributes);
      for (const scope of resourceSpans.scopeSpans ?? []) {
        for (const span of scope.spans ?? []) {
          spans.push({ traceId: span.traceId, spanId: span.spanId, parentSpanId: span.parentSpanId ?? "", name: span.name, kind: span.kind, attributes: attributesOf(span.attributes), resource });
        }
      }
    }
    res.writeHead(200, { "content-type": "application/json" }).end("{}");
  });
});
await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
afterAll(() => new Promise<void>((resolve) => receiver.close(() => resolve())));

async function freePort(): Promise<number> {
  const holder = createNetServer();
  await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
  const { port } = holder.address() as AddressInfo;
  await new Promise<void>((resolve) => holder.close(() => resolve()));
  return port;
}

const SPAN_KIND = { server: 2, consumer: 5 } as const;

describe("traces exported over OTLP/HTTP JSON", () => {
  it("follow a payment from POST …/payments through the settlement notification and the retrigger job to the ledger postings", async () => {
    const port = await freePort();
    const env = {
      DATABASE_URL: database.url,
      REDIS_URL: redisUrl,
      QUEUE_PREFIX: prefix,
      HOST: "127.0.0.1",
      OPS_USERS: `${FEED.name}:service:${FEED.secret}`,
      LOG_LEVEL: "info",
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_SERVICE_NAME: "dispersal-trace-test",
      OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=e2e,team=ops%20desk",
      OTEL_BSP_SCHEDULE_DELAY: "200",
    };
    const server = spawnCli(["server"], { ...env, PORT: String(port) });
    const worker = spawnCli(["worker"], env);
    const base = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.ok, { timeoutMs: 60_000, what: "the server to answer /healthz" });
    await waitFor(async () => worker.output().includes("settlement listener listening"), { timeoutMs: 60_000, what: "the worker's settlement listener" });

    const { obligationId } = await givenSettledObligation(database, { status: "due", amount: 250_000n, lenders: [6000, 4000] });
    const paid = await httpCall(base, "POST", `/api/obligations/${obligationId}/payments`, { as: FEED, body: { reference: "trace-ref-1", amount: "250000" } });
    expect(paid.status, paid.text).toBe(201);
    expect(paid.json.status).toBe("settled");
    await waitFor(
      async () => (await database.db.execute<{ dispersed: boolean }>(sql`select dispersed from obligations where id = ${obligationId}::uuid`))[0]?.dispersed,
      { timeoutMs: 20_000, what: "the worker to disperse the obligation" },
    );

    const isDispersalPosting = (s: ReceivedSpan) => s.name === "ledger postings" && (s.attributes["ledger.entry_types"] as string[]).includes("LENDER_PAYABLE_CREATED");
    await waitFor(async () => spans.some(isDispersalPosting), { timeoutMs: 15_000, what: "the dispersal's ledger postings span at the receiver" });
    expect([...contentTypes]).toEqual(["POST /v1/traces application/json"]);

    const request = spans.find((s) => s.kind === SPAN_KIND.server && s.attributes["http.route"] === "/api/obligations/:obligationId/payments")!;
    expect(request, `spans received: ${spans.map((s) => s.name).join(", ")}`).toBeDefined();
    expect(request.name).toBe("POST /api/obligations/:obligationId/payments");
    const trace = spans.filter((s) => s.traceId === request.traceId);
    const byId = new Map(trace.map((s) => [s.spanId, s]));
    const ancestry = (span: ReceivedSpan): string[] => {
      const names: string[] = [];
      for (let at = byId.get(span.parentSpanId); at; at = byId.get(at.parentSpanId)) names.push(at.name);
      return names;
    };

    // server: request → express handler → the payment's transaction → its CASH_RECEIVED posting
    const cashReceived = trace.find((s) => s.name === "ledger postings" && (s.attributes["ledger.entry_types"] as string[]).includes("CASH_RECEIVED"))!;
    expect(cashReceived, "the payment's posting is in the request's trace").toBeDefined();
    expect(ancestry(cashReceived)[0]).toBe("postgres transaction");
    expect(ancestry(cashReceived)).toContain(request.name);
    expect(trace.some((s) => s.parentSpanId === request.spanId && /^(middleware|request handler|router) /.test(s.name)), "express spans under the request").toBe(true);

    // worker: notification (child of the payment's transaction) → retrigger job → dispersal transaction → postings
    const notification = trace.find((s) => s.name === "settlement notification")!;
    expect(notification, "the listener continues the payment's trace").toBeDefined();
    expect(notification.kind).toBe(SPAN_KIND.consumer);
    expect(notification.attributes["dispersal.obligation_id"]).toBe(obligationId);
    expect(byId.get(notification.parentSpanId)?.name).toBe("postgres transaction");
    expect(ancestry(notification)).toContain(request.name);
    const job = trace.find((s) => s.name === "process dispersal-retrigger" && s.parentSpanId === notification.spanId);
    expect(job, "the retrigger job is a child of the notification").toBeDefined();
    const payables = trace.find(isDispersalPosting)!;
    expect(payables, "the dispersal's postings are in the payment's trace").toBeDefined();
    expect(ancestry(payables).slice(0, 1)).toEqual(["postgres transaction"]);
    expect(ancestry(payables)).toEqual(expect.arrayContaining(["process dispersal-retrigger", "settlement notification", "postgres transaction", request.name]));

    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, and which process made each span
    for (const span of [request, notification, payables]) {
      expect(span.resource).toMatchObject({ "service.name": "dispersal-trace-test", "deployment.environment": "e2e", team: "ops desk" });
    }
    expect(request.resource["dispersal.process_role"]).toBe("dispersal-server");
    expect(payables.resource["dispersal.process_role"]).toBe("dispersal-worker");

    expect(await worker.stop("SIGTERM")).toBe(0);
    expect(await server.stop("SIGTERM")).toBe(0);
  }, 180_000); // two processes start (tsx, migrations) and export: slow on a loaded machine, bounded by each wait
});
