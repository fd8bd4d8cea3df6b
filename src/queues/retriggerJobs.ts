// Adds retrigger jobs: the one way obligations reach the retrigger queue (the scan, a requeue, the
// settlement listener), so that the backlog cap (HEALING_MAX_BACKLOG) holds for every one of them.
import type { PipelineSettings } from "../jobs/context.js";
import { JOB, retriggerJobOptions, type RetriggerJobData } from "./names.js";
import type { Queues } from "./queues.js";

export interface EnqueuedRetrigger {
  obligationId: string;
  jobId: string;
  /** False when a live job of the obligation already existed (deduplication returned its id). */
  added: boolean;
}

/** One addBulk for the given obligations; a live job of an obligation is kept, never doubled. */
export async function enqueueRetriggers(
  queues: Queues,
  settings: Pick<PipelineSettings, "HEALING_ATTEMPTS" | "HEALING_BACKOFF_MS">,
  obligationIds: readonly string[],
): Promise<EnqueuedRetrigger[]> {
  if (obligationIds.length === 0) return [];
  const jobOptions = { attempts: settings.HEALING_ATTEMPTS, backoffMs: settings.HEALING_BACKOFF_MS };
  const requests = obligationIds.map((obligationId) => ({
    name: JOB.retrigger,
    data: { obligationId } satisfies RetriggerJobData,
    opts: retriggerJobOptions(obligationId, jobOptions),
  }));
  const jobs = await queues.retrigger.addBulk(requests);
  return jobs.map((job, i) => ({
    obligationId: obligationIds[i]!,
    jobId: job.id!,
    added: job.id === requests[i]!.opts.jobId,
  }));
}
