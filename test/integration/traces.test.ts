import { afterAll, describe, expect, it } from "vitest";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace-node";
import { sql } from "drizzle-orm";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { loadConfig } from "../../src/config.js";
import { JOB } from "../../src/queues/names.js";
import { queueTelemetry, startTracing, withSpan } from "../../src/telemetry.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { testPipeline } from "../helpers/pipeline.js";
import { waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";

const database = await testDb();
const offByDefault = { option: queueTelemetry(), started: startTracing({ endpoint: undefined }) };
const exporter = new InMemorySpanExporter();
const tracing = startTracing({ exporter, role: "test" })!;
// Opened after tracing started: the queues and workers get BullMQ's telemetry option.
const pipeline = testPipeline(database);
afterAll(() => tracing.shutdown());

function parentOf(span: ReadableSpan): string | undefined {
  return span.parentSpanContext?.spanId;
}

describe("traces", () => {
  it("are off, and cost nothing, without OTEL_EXPORTER_OTLP_ENDPOINT", () => {
    expect(offByDefault.started).toBeUndefined();
    expect(offByDefault.option).toEqual({});
  });

  it("link a retrigger job and its Postgres transaction to the scan that enqueued it", async () => {
    const orphan = await givenSettledObligation(database, { lenders: [7000, 3000] });
    pipeline.startWorkers();
    await pipeline.ctx.queues.healing.add(JOB.scan, { requestedBy: "trace-test" });
    await waitFor(
      async () => (await database.db.execute<{ dispersed: boolean }>(sql`select dispersed from obligations where id = ${orphan.obligationId}::uuid`))[0]?.dispersed,
      { timeoutMs: 20_000, what: "the orphan to be dispersed" },
    );
    const retriggerQueue = pipeline.ctx.queues.retrigger.name;
    const spans = await waitFor(
      async () => {
        const finished = exporter.getFinishedSpans();
        return finished.some((s) => s.name === `process ${retriggerQueue}`) ? finished : undefined;
      },
      { timeoutMs: 10_000, what: "the retrigger job's span to end" },
    );
    const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
    const processRetrigger = spans.find((s) => s.name === `process ${retriggerQueue}`)!;
    const addBulk = byId.get(parentOf(processRetrigger)!)!;
    expect(addBulk?.name).toBe(`addBulk ${retriggerQueue}`);
    const processScan = byId.get(parentOf(addBulk)!)!;
    expect(processScan?.name).toBe(`process ${pipeline.ctx.queues.healing.name}`);
    expect(new Set([processScan, addBulk, processRetrigger].map((s) => s.spanContext().traceId)).size).toBe(1);

    const transactions = spans.filter((s) => s.name === "postgres transaction" && parentOf(s) === processRetrigger.spanContext().spanId);
    expect(transactions.length).toBeGreaterThanOrEqual(1);
    expect(transactions[0]!.attributes["db.system"]).toBe("postgresql");
    expect(processRetrigger.resource.attributes["service.name"]).toBe("dispersal-healing");
  });

  it("mark a failed transaction's span as an error", async () => {
    exporter.reset();
    await expect(database.db.transaction(async (tx) => tx.execute(sql`select 1/0`))).rejects.toThrow();
    const [failed] = exporter.getFinishedSpans().filter((s) => s.name === "postgres transaction");
    expect(failed?.status.code).toBe(2); // SpanStatusCode.ERROR
    expect(failed?.events.map((e) => e.name)).toContain("exception");
  });

  it("run the work as it is when tracing is off", async () => {
    await tracing.shutdown();
    expect(queueTelemetry()).toEqual({});
    exporter.reset();
    await expect(withSpan("anything", {}, async () => 42)).resolves.toBe(42);
    expect(exporter.getFinishedSpans()).toEqual([]);
  });

  it("export over OTLP/HTTP to <OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces", async () => {
    const received: Array<{ path: string | undefined; type: string | undefined; bytes: number }> = [];
    const collector = createServer((req, res) => {
      let bytes = 0;
      req.on("data", (chunk: Buffer) => (bytes += chunk.length));
      req.on("end", () => {
        received.push({ path: req.url, type: req.headers["content-type"], bytes });
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
    try {
      const port = (collector.address() as AddressInfo).port;
      const otlp = startTracing({ endpoint: `http://127.0.0.1:${port}/`, role: "test" })!;
      await withSpan("postgres transaction", { "db.system": "postgresql" }, async () => 1);
      await otlp.shutdown(); // flushes the batch
      expect(received).toEqual([expect.objectContaining({ path: "/v1/traces" })]);
      expect(received[0]!.bytes).toBeGreaterThan(0);
    } finally {
      collector.close();
    }
  });
});

describe("OTEL_* settings", () => {
  it("parse OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (percent-encoded values), and refuse what the service cannot honour, naming the variable", () => {
    const config = loadConfig({ OTEL_SERVICE_NAME: "payments-eu", OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=prod, team=ops%20desk" });
    expect(config.OTEL_SERVICE_NAME).toBe("payments-eu");
    expect(config.OTEL_RESOURCE_ATTRIBUTES).toEqual({ "deployment.environment": "prod", team: "ops desk" });
    expect(config.OTEL_EXPORTER_OTLP_PROTOCOL).toBe("http/json");
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" })).toThrow(/^Invalid configuration: OTEL_EXPORTER_OTLP_PROTOCOL must be http\/json/);
    expect(() => loadConfig({ OTEL_RESOURCE_ATTRIBUTES: "just-a-word" })).toThrow(/^Invalid configuration: OTEL_RESOURCE_ATTRIBUTES must be key=value pairs/);
    expect(() => loadConfig({ OTEL_RESOURCE_ATTRIBUTES: "team=%E0%A4%A" })).toThrow(/OTEL_RESOURCE_ATTRIBUTES/);
  });
});
