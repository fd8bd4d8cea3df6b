// Manual requeue of an escalated obligation (DESIGN.md §4): the one path behind the ops API, the CLI
// and Bull Board's retry button. The database transition commits first; if the process dies before
// the job is added, the obligation is `requeued` with a fresh round and the next scan enqueues it.
import { markRequeued, recordJobId } from "../db/healing.js";
import { enqueueRetriggers } from "../queues/retriggerJobs.js";
import type { PipelineContext } from "./context.js";

export interface RequeueResult {
  obligationId: string;
  /** Null when the backlog was full (HEALING_MAX_BACKLOG): the scan's top-up enqueues it as the backlog drains. */
  jobId: string | null;
  round: number;
}

export async function requeueEscalation(ctx: PipelineContext, obligationId: string, actor: string, channel: "api" | "cli" | "bull-board" | "ops-page"): Promise<RequeueResult> {
  const { requeueCount, previousJobId } = await ctx.database.db.transaction((tx) => markRequeued(tx, obligationId, actor, channel));
  // The requeued obligation is no longer escalated, so a deferred one is an orphan the scan will offer.
  const [job] = await enqueueRetriggers(ctx.queues, ctx.settings, [obligationId], { requestedBy: actor });
  if (job) await recordJobId(ctx.database.db, obligationId, job.jobId);
  await removeSupersededJob(ctx, previousJobId, job?.jobId ?? null);
  ctx.log.warn({ obligationId, actor, channel, jobId: job?.jobId, deferred: !job, round: requeueCount + 1 }, "escalation requeued");
  return { obligationId, jobId: job?.jobId ?? null, round: requeueCount + 1 };
}

/**
 * The failed job of the round just replaced would otherwise linger in Bull Board, where retrying
 * it is refused (its obligation is no longer escalated). The audit log keeps the history.
 */
async function removeSupersededJob(ctx: PipelineContext, previousJobId: string | null, newJobId: string | null): Promise<void> {
  if (!previousJobId || previousJobId === newJobId) return;
  try {
    const previous = await ctx.queues.retrigger.getJob(previousJobId);
    if (previous && (await previous.isFailed())) await previous.remove();
  } catch (error) {
    ctx.log.warn({ jobId: previousJobId, error: (error as Error).message }, "requeued, but the superseded failed job could not be removed");
  }
}
