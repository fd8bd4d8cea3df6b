// Adds retrigger jobs: the one way obligations reach the retrigger queue (the scan, a requeue, the
// settlement listener), so that the backlog cap (HEALING_MAX_BACKLOG) holds for every one of them.
// What does not fit is deferred, never lost: the obligation stays an orphan in Postgres and the
// scan's top-up (jobs/scan.ts) offers it once the backlog has drained.
import type { PipelineSettings } from "../jobs/context.js";
import { JOB, retriggerJobOptions, type RetriggerJobData } from "./names.js";
import type { Queues } from "./queues.js";

export interface EnqueuedRetrigger {
  obligationId: string;
  jobId: string;
  /** False when a live job of the obligation already existed (deduplication returned its id). */
  added: boolean;
}

/**
 * The obligations queued (added, or already live), in the order given; `deferred` names those left
 * out because the backlog was full. An array, so callers written before the cap keep working.
 */
export type EnqueueResult = EnqueuedRetrigger[] & { deferred: string[] };

type EnqueueSettings = Pick<PipelineSettings, "HEALING_ATTEMPTS" | "HEALING_BACKOFF_MS" | "HEALING_MAX_BACKLOG">;

/** The job states that hold Redis memory for work still to do: what HEALING_MAX_BACKLOG bounds. */
export const BACKLOG_STATES = ["waiting", "delayed", "prioritized", "active", "waiting-children"] as const;

/** Retrigger jobs waiting, delayed, prioritised or active right now (one Redis round trip). */
export async function retriggerBacklog(queues: Pick<Queues, "retrigger">): Promise<number> {
  const counts = await queues.retrigger.getJobCounts(...BACKLOG_STATES);
  return Object.values(counts).reduce((sum, n) => sum + (n ?? 0), 0);
}

/**
 * The live retrigger job of each obligation that has one, in one round trip: the deduplication key
 * BullMQ keeps while a job is live (released when it completes or fails).
 */
export async function liveRetriggerJobs(queues: Pick<Queues, "connection" | "retrigger">, obligationIds: readonly string[]): Promise<Map<string, string>> {
  const live = new Map<string, string>();
  if (obligationIds.length === 0) return live;
  const pipeline = queues.connection.pipeline();
  for (const id of obligationIds) pipeline.get(`${queues.retrigger.keys.de}:${id}`);
  const replies = (await pipeline.exec()) ?? [];
  replies.forEach(([error, jobId], i) => {
    if (error) throw error;
    if (typeof jobId === "string") live.set(obligationIds[i]!, jobId);
  });
  return live;
}

/**
 * A job's parent span, as bullmq-otel carries it (`telemetry.metadata`), by obligation: a job with
 * one continues that trace (the payment's, through the settlement listener) instead of the adder's.
 */
export type RetriggerTraceContexts = ReadonlyMap<string, string>;

/** One addBulk, no cap: for callers that have already made room (the scan counts its own). */
export async function addRetriggers(
  queues: Pick<Queues, "retrigger">,
  settings: Pick<PipelineSettings, "HEALING_ATTEMPTS" | "HEALING_BACKOFF_MS">,
  obligationIds: readonly string[],
  traceContexts?: RetriggerTraceContexts,
): Promise<EnqueuedRetrigger[]> {
  if (obligationIds.length === 0) return [];
  const jobOptions = { attempts: settings.HEALING_ATTEMPTS, backoffMs: settings.HEALING_BACKOFF_MS };
  const requests = obligationIds.map((obligationId) => {
    const metadata = traceContexts?.get(obligationId);
    return {
      name: JOB.retrigger,
      data: { obligationId } satisfies RetriggerJobData,
      opts: { ...retriggerJobOptions(obligationId, jobOptions), ...(metadata ? { telemetry: { metadata } } : {}) },
    };
  });
  const jobs = await queues.retrigger.addBulk(requests);
  return jobs.map((job, i) => ({
    obligationId: obligationIds[i]!,
    jobId: job.id!,
    added: job.id === requests[i]!.opts.jobId,
  }));
}

/**
 * Queues a retrigger job for each obligation that has no live one, as long as the backlog stays
 * within HEALING_MAX_BACKLOG; a live job of an obligation is kept, never doubled, and costs no room.
 * Three round trips: the backlog, the live jobs, one addBulk.
 */
export async function enqueueRetriggers(
  queues: Pick<Queues, "connection" | "retrigger">,
  settings: EnqueueSettings,
  obligationIds: readonly string[],
  traceContexts?: RetriggerTraceContexts,
): Promise<EnqueueResult> {
  const unique = [...new Set(obligationIds)];
  if (unique.length === 0) return Object.assign([], { deferred: [] });
  const [backlog, live] = await Promise.all([retriggerBacklog(queues), liveRetriggerJobs(queues, unique)]);
  const room = Math.max(0, settings.HEALING_MAX_BACKLOG - backlog);
  const fresh = unique.filter((id) => !live.has(id));
  const admitted = fresh.slice(0, room);
  const deferred = fresh.slice(room);
  const added = new Map((await addRetriggers(queues, settings, admitted, traceContexts)).map((job) => [job.obligationId, job]));
  const queued = unique.flatMap((obligationId): EnqueuedRetrigger[] => {
    const job = added.get(obligationId);
    if (job) return [job];
    const jobId = live.get(obligationId);
    return jobId ? [{ obligationId, jobId, added: false }] : [];
  });
  return Object.assign(queued, { deferred });
}
