// Traces (OpenTelemetry): a server span per HTTP request and spans of its express middleware and
// handler; BullMQ's own add-on (bullmq-otel) makes a producer span for every add and addBulk and a
// consumer span for every job it processes, parented to the span that enqueued it (the context
// travels in the job's options); every Postgres transaction and ledger posting gets a span under
// whatever is active. A payment's trace context is kept in its audit row, so the settlement
// listener continues that trace: POST …/payments → settlement notification → retrigger job →
// ledger postings is one trace. Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set: then nothing is
// registered, BullMQ gets no telemetry option and a transaction is not even wrapped — free.
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Span } from "@opentelemetry/api";
import { registerInstrumentations } from "@opentelemetry/instrumentation";
import { ExpressInstrumentation } from "@opentelemetry/instrumentation-express";
import { HttpInstrumentation } from "@opentelemetry/instrumentation-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, NodeTracerProvider, SimpleSpanProcessor, type SpanExporter } from "@opentelemetry/sdk-trace-node";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import type { Telemetry } from "bullmq";
import { BullMQOtel } from "bullmq-otel";
import { createRequire } from "node:module";
import { hostname } from "node:os";
import { withinDeadline } from "./deadline.js";
import { log } from "./log.js";

const TRACER = "dispersal-healing";

/**
 * How long a process's last flush of spans may take at exit. A collector that is down made the
 * exporter retry for about 8 s and fail the command; traces are worth a second, not an exit code.
 */
export const TRACE_FLUSH_TIMEOUT_MS = 1000;

export interface Tracing {
  /** Flushes the spans still buffered (within TRACE_FLUSH_TIMEOUT_MS; never throws) and unregisters the provider. */
  shutdown(): Promise<void>;
}

let active: { provider: NodeTracerProvider; telemetry: Telemetry; disableInstrumentations: () => void } | undefined;

/** Health probes and scrapes come every few seconds from load balancers and Prometheus: not worth a trace each. */
const UNTRACED_PATHS = new Set(["/healthz", "/readyz", "/metrics"]);

export interface TracingOptions {
  /** OTLP/HTTP base URL (OTEL_EXPORTER_OTLP_ENDPOINT); spans go to <endpoint>/v1/traces. */
  endpoint?: string | undefined;
  /** Instead of OTLP (tests): every span handed over as it ends. */
  exporter?: SpanExporter;
  /** What this process is (start, worker, server…), recorded on every span. */
  role?: string | undefined;
  /** OTEL_SERVICE_NAME: the service.name of every span. (Default: dispersal-healing) */
  serviceName?: string | undefined;
  /** OTEL_RESOURCE_ATTRIBUTES, parsed: added to the resource; OTEL_SERVICE_NAME wins over its service.name. */
  resourceAttributes?: Record<string, string> | undefined;
}

/** Starts tracing for this process when an endpoint (or an exporter) is given; undefined otherwise. */
export function startTracing(options: TracingOptions): Tracing | undefined {
  if (!options.endpoint && !options.exporter) return undefined;
  // One provider per process: a second runtime in the same process shares the first one's.
  if (active) return { shutdown: async () => {} };
  const exporter = options.exporter ?? new OTLPTraceExporter({ url: `${options.endpoint!.replace(/\/+$/, "")}/v1/traces` });
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      "service.instance.id": `${hostname()}:${process.pid}`,
      ...options.resourceAttributes,
      ...(options.role ? { "dispersal.process_role": options.role } : {}),
      "service.name": options.serviceName ?? options.resourceAttributes?.["service.name"] ?? "dispersal-healing",
    }),
    spanProcessors: [options.exporter ? new SimpleSpanProcessor(exporter) : new BatchSpanProcessor(exporter)],
  });
  // Global provider, AsyncLocalStorage context manager and W3C trace-context propagator: what
  // bullmq-otel uses to carry a job's parent context through Redis.
  provider.register();
  const disableInstrumentations = registerInstrumentations({
    tracerProvider: provider,
    instrumentations: [
      new HttpInstrumentation({
        ignoreIncomingRequestHook: (request) => UNTRACED_PATHS.has((request.url ?? "").split("?")[0]!),
        // Outgoing calls are the exporter's own (and tests'): no spans about exporting spans.
        ignoreOutgoingRequestHook: () => true,
      }),
      new ExpressInstrumentation(),
    ],
  });
  // http and express were imported (ESM) before tracing started, which the require hook never sees:
  // requiring them once now hands their shared exports to the instrumentations, which patch them in
  // place (http.Server.prototype.emit, express's Router and application).
  const require = createRequire(import.meta.url);
  require("http");
  require("express");
  active = { provider, telemetry: new BullMQOtel({ tracerName: TRACER }), disableInstrumentations };
  return {
    shutdown: async () => {
      if (active?.provider !== provider) return;
      active.disableInstrumentations();
      active = undefined;
      try {
        await withinDeadline(provider.shutdown(), TRACE_FLUSH_TIMEOUT_MS, "trace flush");
      } catch (error) {
        log.warn({ endpoint: options.endpoint, error: (error as Error).message }, "trace export failed: spans of this process may be missing");
      }
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}

/** The `telemetry` option of BullMQ's Queue and Worker: present only while tracing is on. */
export function queueTelemetry(): { telemetry?: Telemetry } {
  return active ? { telemetry: active.telemetry } : {};
}

/** Runs `work` in a span (child of the active one) when tracing is on; just runs it otherwise. */
export async function withSpan<T>(name: string, attributes: Attributes, work: () => Promise<T>, kind: SpanKind = SpanKind.CLIENT): Promise<T> {
  if (!active) return work();
  return trace.getTracer(TRACER).startActiveSpan(name, { kind, attributes }, async (span) => {
    try {
      return await work();
    } catch (error) {
      span.recordException(error as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error)?.message });
      throw error;
    } finally {
      span.end();
    }
  });
}

/** The active span's W3C traceparent while tracing is on: kept with a payment so that what it causes continues its trace. */
export function currentTraceparent(): string | undefined {
  if (!active || !trace.getActiveSpan()?.isRecording()) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent;
}

export interface ContinuedSpan {
  /** The span's context as bullmq-otel carries it in a job's options (`telemetry.metadata`). */
  jobMetadata: string;
  end(): void;
}

/**
 * Starts a span whose parent is the span that `traceparent` names (in another process, earlier):
 * the settlement listener continues a payment's trace with it. Undefined when tracing is off or
 * the traceparent is not one.
 */
export function continueTrace(name: string, traceparent: string, attributes: Attributes): ContinuedSpan | undefined {
  if (!active) return undefined;
  const parent = propagation.extract(ROOT_CONTEXT, { traceparent });
  if (!trace.getSpanContext(parent)) return undefined;
  const span: Span = trace.getTracer(TRACER).startSpan(name, { kind: SpanKind.CONSUMER, attributes }, parent);
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(ROOT_CONTEXT, span), carrier);
  return { jobMetadata: JSON.stringify(carrier), end: () => span.end() };
}

/** Whether spans are being made in this process (the listener only then looks up payments' trace contexts). */
export function tracingActive(): boolean {
  return active !== undefined;
}

