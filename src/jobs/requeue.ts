// Manual requeue of an escalated obligation (DESIGN.md §4): the one path behind the ops API, the CLI
// and Bull Board's retry button. The database transition commits first; if the process dies before
// the job is added, the obligation is `requeued` with a fresh round and the next scan enqueues it.
import { markRequeued, recordJobId } from "../db/healing.js";
import { JOB, retriggerJobOptions } from "../queues/names.js";
import { failpoint, passFailpoint } from "../failpoint.js";
import type { PipelineContext } from "./context.js";

export interface RequeueResult {
  obligationId: string;
  jobId: string;
  round: number;
}

export async function requeueEscalation(ctx: PipelineContext, obligationId: string, actor: string, channel: "api" | "cli" | "bull-board" | "ops-page"): Promise<RequeueResult> {
  const { requeueCount, previousJobId } = await ctx.database.db.transaction((tx) => markRequeued(tx, obligationId, actor, channel).then(passFailpoint("requeue.before-commit")));
  failpoint("requeue.after-commit");
  const options = retriggerJobOptions(obligationId, { attempts: ctx.settings.HEALING_ATTEMPTS, backoffMs: ctx.settings.HEALING_BACKOFF_MS });
  const job = await ctx.queues.retrigger.add(JOB.retrigger, { obligationId, requestedBy: actor }, options);
  failpoint("requeue.after-enqueue");
  await recordJobId(ctx.database.db, obligationId, job.id!);
  failpoint("requeue.after-record-job");
  await removeSupersededJob(ctx, previousJobId, job.id!);
  ctx.log.warn({ obligationId, actor, channel, jobId: job.id, round: requeueCount + 1 }, "escalation requeued");
  return { obligationId, jobId: job.id!, round: requeueCount + 1 };
}

/**
 * The failed job of the round just replaced would otherwise linger in Bull Board, where retrying
 * it is refused (its obligation is no longer escalated). The audit log keeps the history.
 */
async function removeSupersededJob(ctx: PipelineContext, previousJobId: string | null, newJobId: string): Promise<void> {
  if (!previousJobId || previousJobId === newJobId) return;
  try {
    const previous = await ctx.queues.retrigger.getJob(previousJobId);
    if (previous && (await previous.isFailed())) await previous.remove();
  } catch (error) {
    ctx.log.warn({ jobId: previousJobId, error: (error as Error).message }, "requeued, but the superseded failed job could not be removed");
  }
}
