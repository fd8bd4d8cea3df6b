// Traces (OpenTelemetry): BullMQ's own add-on (bullmq-otel) makes a producer span for every add and
// addBulk and a consumer span for every job it processes, parented to the span that enqueued it
// (the context travels in the job's options), and every Postgres transaction gets a span under
// whatever is active. So a scan, the retrigger jobs it enqueued and their transactions form one
// trace. Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set: then nothing is registered, BullMQ gets no
// telemetry option and a transaction is not even wrapped — free.
import { context, propagation, SpanKind, SpanStatusCode, trace, type Attributes } from "@opentelemetry/api";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, NodeTracerProvider, SimpleSpanProcessor, type SpanExporter } from "@opentelemetry/sdk-trace-node";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import type { Telemetry } from "bullmq";
import { BullMQOtel } from "bullmq-otel";
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

let active: { provider: NodeTracerProvider; telemetry: Telemetry } | undefined;

export interface TracingOptions {
  /** OTLP/HTTP base URL (OTEL_EXPORTER_OTLP_ENDPOINT); spans go to <endpoint>/v1/traces. */
  endpoint?: string | undefined;
  /** Instead of OTLP (tests): every span handed over as it ends. */
  exporter?: SpanExporter;
  /** What this process is (start, worker, server…), recorded on every span. */
  role?: string | undefined;
}

/** Starts tracing for this process when an endpoint (or an exporter) is given; undefined otherwise. */
export function startTracing(options: TracingOptions): Tracing | undefined {
  if (!options.endpoint && !options.exporter) return undefined;
  // One provider per process: a second runtime in the same process shares the first one's.
  if (active) return { shutdown: async () => {} };
  const exporter = options.exporter ?? new OTLPTraceExporter({ url: `${options.endpoint!.replace(/\/+$/, "")}/v1/traces` });
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      "service.name": "dispersal-healing",
      "service.instance.id": `${hostname()}:${process.pid}`,
      ...(options.role ? { "dispersal.process_role": options.role } : {}),
    }),
    spanProcessors: [options.exporter ? new SimpleSpanProcessor(exporter) : new BatchSpanProcessor(exporter)],
  });
  // Global provider, AsyncLocalStorage context manager and W3C trace-context propagator: what
  // bullmq-otel uses to carry a job's parent context through Redis.
  provider.register();
  active = { provider, telemetry: new BullMQOtel({ tracerName: TRACER }) };
  return {
    shutdown: async () => {
      if (active?.provider !== provider) return;
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
export async function withSpan<T>(name: string, attributes: Attributes, work: () => Promise<T>): Promise<T> {
  if (!active) return work();
  return trace.getTracer(TRACER).startActiveSpan(name, { kind: SpanKind.CLIENT, attributes }, async (span) => {
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
