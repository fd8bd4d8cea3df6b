// Builds the Workers of the three queues, wires the escalation handler, and shuts them down
// gracefully: close() lets active jobs finish (or hands them back when the lock is lost) and closes
// the connections. Stalled jobs of a killed worker are picked up by the other workers.
import { Worker, type Job, type Processor } from "bullmq";
import { hostname } from "node:os";
import { QUEUE, type RetriggerJobData } from "../queues/names.js";
import { queueTelemetry } from "../telemetry.js";
import type { PipelineContext } from "./context.js";
import { EscalationBatches, escalateFailedJob } from "./escalate.js";
import { reconcileProcessor } from "./reconcile.js";
import { retriggerProcessor } from "./retrigger.js";
import { requestTopUpWhenDrained, scanProcessor } from "./scan.js";
import { DispersalBatches } from "./dispersalBatches.js";

/** A batch closes when no job joined it for this long… */
const BATCH_LINGER_MS = 5;
/** …or this long after its first job at the latest (the latency batching adds to one job). */
const BATCH_MAX_WAIT_MS = 50;
/**
 * Dispersal batches of one process committing at once: one commits while the next fills (so
 * WORKER_CONCURRENCY ≈ 2 × HEALING_BATCH_SIZE), and the batches grow to full size under load.
 * More at once only queue on Postgres's cores and on shared account rows (docs/performance.md).
 */
const BATCHES_IN_FLIGHT = 1;
/** How often each process checks whether the backlog has drained enough for the scan's next tick. */
const TOP_UP_CHECK_MS = 500;

/** What this process's workers are doing, for its own /metrics (dashboard/workerMetrics.ts). */
export interface WorkerFigures {
  /** Jobs running in this process now, by queue name. */
  active: Record<string, number>;
  /** Dispersal batches committed by this process since start, and the obligations in them. */
  batches: { batches: number; obligations: number };
}

export interface Workers {
  workers: Worker[];
  figures(): WorkerFigures;
  /** Resolves when every escalation started by a failed event has finished (for tests and shutdown). */
  settled(): Promise<void>;
  close(): Promise<void>;
}

export function startWorkers(ctx: PipelineContext, options: { concurrency?: number } = {}): Workers {
  const connection = ctx.queues.connection;
  const common = {
    connection,
    // Shown as "processed by" in Bull Board and on each job: which process handled it.
    name: `${hostname()}:${process.pid}`,
    prefix: ctx.queues.prefix,
    lockDuration: ctx.settings.WORKER_LOCK_DURATION_MS,
    stalledInterval: ctx.settings.WORKER_STALLED_INTERVAL_MS,
    // A killed worker's job is taken over, not failed: crashes are not the obligation's fault.
    maxStalledCount: 10,
    ...queueTelemetry(), // a consumer span per job, parented to the span that enqueued it (src/telemetry.ts)
  };
  const concurrency = options.concurrency ?? ctx.settings.WORKER_CONCURRENCY;
  // One path: a job alone is a batch of one. At HEALING_BATCH_SIZE=1 as many batches run at once as
  // the worker runs jobs, so no job waits behind another.
  const batchSize = ctx.settings.HEALING_BATCH_SIZE;
  const batches = new DispersalBatches(ctx, { maxSize: batchSize, lingerMs: BATCH_LINGER_MS, maxWaitMs: BATCH_MAX_WAIT_MS, maxInFlight: batchSize === 1 ? concurrency : BATCHES_IN_FLIGHT });
  const escalations = batchSize > 1 ? new EscalationBatches(ctx, { maxSize: batchSize, lingerMs: BATCH_LINGER_MS }) : undefined;
  // Counted around the processor, not from events: a job's end is always seen, so the figure cannot drift.
  const active: Record<string, number> = {};
  const counted = <T>(queue: string, processor: Processor<T>): Processor<T> => {
    active[queue] = 0;
    const wrapped: Processor<T> = async (job, token, signal) => {
      active[queue]!++;
      try {
        return await processor(job, token, signal);
      } finally {
        active[queue]!--;
      }
    };
    // BullMQ gives a processor an abort signal only when it declares one (its arity): keep the processor's.
    return Object.defineProperty(wrapped, "length", { value: processor.length });
  };
  const retrigger = new Worker<RetriggerJobData>(QUEUE.retrigger, counted(QUEUE.retrigger, retriggerProcessor(ctx, batches)), { ...common, concurrency });
  const healing = new Worker(QUEUE.healing, counted(QUEUE.healing, scanProcessor(ctx)), { ...common, concurrency: 1 });
  const reconciliation = new Worker(QUEUE.reconciliation, counted(QUEUE.reconciliation, reconcileProcessor(ctx)), { ...common, concurrency: 1 });
  const workers = [retrigger, healing, reconciliation] as Worker[];

  const pending = new Set<Promise<unknown>>();
  retrigger.on("failed", (job: Job<RetriggerJobData> | undefined, error: Error) => {
    const escalation = escalateFailedJob(ctx, job, error, escalations).catch(() => {});
    pending.add(escalation);
    void escalation.finally(() => pending.delete(escalation));
  });
  for (const worker of workers) {
    worker.on("error", (error) => ctx.log.error({ queue: worker.name, error: error.message }, "worker error"));
    worker.on("failed", (job, error) => {
      if (worker !== retrigger) ctx.log.error({ queue: worker.name, jobId: job?.id, error: error.message }, "job failed");
    });
  }
  ctx.log.info({ concurrency: retrigger.concurrency, batchSize: ctx.settings.HEALING_BATCH_SIZE, prefix: ctx.queues.prefix }, "workers started");

  // The scan stops at HEALING_MAX_BACKLOG; whoever sees the backlog drained asks for the next tick.
  let checking = false;
  const topUp = setInterval(() => {
    if (checking) return;
    checking = true;
    requestTopUpWhenDrained(ctx)
      .catch((error: Error) => ctx.log.warn({ error: error.message }, "backlog top-up check failed"))
      .finally(() => (checking = false));
  }, TOP_UP_CHECK_MS);
  topUp.unref();

  const settled = async () => {
    while (pending.size > 0) await Promise.allSettled([...pending]);
  };
  return {
    workers,
    figures: () => ({ active: { ...active }, batches: { ...(batches?.committed ?? { batches: 0, obligations: 0 }) } }),
    settled,
    close: async () => {
      clearInterval(topUp);
      await Promise.all(workers.map((w) => w.close()));
      await batches.drained();
      await escalations?.drained();
      if (batches.committed.batches > 0) {
        const { batches: count, obligations } = batches.committed;
        ctx.log.info({ batches: count, obligations, averageSize: Number((obligations / count).toFixed(1)) }, "dispersal batches committed");
      }
      await settled();
    },
  };
}
