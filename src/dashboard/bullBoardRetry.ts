// Bull Board's retry buttons on failed dispersal-retrigger jobs become requeues: a bare BullMQ
// retry would run a new round behind the ledger's back (no `requeued` status, no new attempt
// count, no audit naming the operator). Every other retry is left to Bull Board.
import { Router, type Response } from "express";
import type { Job } from "bullmq";
import { DomainError } from "../domain/errors.js";
import type { PipelineContext } from "../jobs/context.js";
import { requeueEscalation, type RequeueResult } from "../jobs/requeue.js";
import { parseRetriggerData } from "../jobs/retrigger.js";
import type { RetriggerJobData } from "../queues/names.js";
import { operatorOf, requireOperatorRole } from "./auth.js";

/** A bound on one "retry all" click; the answer says how many are left for the next one. */
const MAX_RETRY_ALL = 1000;
const PAGE = 100;

type JobRequeue =
  | { outcome: "requeued"; failedJobId: string; result: RequeueResult }
  | { outcome: "superseded"; failedJobId: string; obligationId: string }
  | { outcome: "refused"; failedJobId: string; obligationId?: string; code: string; error: string };

/** Mounted at Bull Board's base path; the routes are those of @bull-board/api's retryJob and retryAll. */
export function retryFailedRetriggerAsRequeue(ctx: PipelineContext): Router {
  const router = Router();
  const queueName = encodeURIComponent(ctx.queues.retrigger.name);

  router.put(`/api/queues/${queueName}/retry/:queueStatus`, requireOperatorRole(), async (req, res, next) => {
    if (req.params.queueStatus !== "failed") return next();
    const outcomes = await requeueAllFailed(ctx, operatorOf(res).name);
    const retried = outcomes.filter((o) => o.outcome === "requeued").length;
    const refused = outcomes.filter((o): o is Extract<JobRequeue, { outcome: "refused" }> => o.outcome === "refused");
    const remaining = Math.max(0, (await ctx.queues.retrigger.getJobCountByTypes("failed")) - refused.length);
    const status = retried === 0 && refused.length > 0 ? 409 : 200;
    res.status(status).json({
      retried,
      skipped: refused.length,
      superseded: outcomes.length - retried - refused.length,
      remaining,
      requeued: outcomes.flatMap((o) => (o.outcome === "requeued" ? [o.result] : [])),
      refused,
      ...(status === 409 ? { error: "none of the failed jobs could be requeued", message: refused[0]?.error } : {}),
    });
  });

  router.put(`/api/queues/${queueName}/:jobId/retry`, requireOperatorRole(), async (req, res, next) => {
    const job = await ctx.queues.retrigger.getJob(String(req.params.jobId));
    if (!job || (await job.getState()) !== "failed") return next();
    const outcome = await requeueFailedJob(ctx, job, operatorOf(res).name, new Set());
    if (outcome.outcome === "refused") return refuse(res, outcome);
    res.status(200).json(outcome.outcome === "requeued" ? { ...outcome.result, removedJobId: job.id } : outcome);
  });

  return router;
}

function refuse(res: Response, refusal: Extract<JobRequeue, { outcome: "refused" }>): void {
  res.status(409).json({ error: `cannot requeue: ${refusal.error}`, message: refusal.error, code: refusal.code, jobId: refusal.failedJobId, obligationId: refusal.obligationId });
}

/**
 * A failed job of an obligation already requeued in this batch is an older round's: it is removed
 * as superseded rather than refused (its obligation is no longer escalated).
 */
async function requeueFailedJob(ctx: PipelineContext, job: Job<RetriggerJobData>, actor: string, requeuedInBatch: Set<string>): Promise<JobRequeue> {
  const failedJobId = job.id!;
  let obligationId: string;
  try {
    obligationId = parseRetriggerData(job.data).obligationId;
  } catch (error) {
    return { outcome: "refused", failedJobId, code: (error as DomainError).code ?? "INVALID_JOB_DATA", error: `${(error as Error).message}: nothing to requeue` };
  }
  if (requeuedInBatch.has(obligationId)) {
    await removeFailedJob(ctx, job);
    return { outcome: "superseded", failedJobId, obligationId };
  }
  try {
    const result = await requeueEscalation(ctx, obligationId, actor, "bull-board");
    requeuedInBatch.add(obligationId);
    await removeFailedJob(ctx, job);
    return { outcome: "requeued", failedJobId, result };
  } catch (error) {
    if (!(error instanceof DomainError)) throw error;
    return { outcome: "refused", failedJobId, obligationId, code: error.code, error: error.message };
  }
}

/** The requeue has committed and its new job is queued; a failed removal only leaves history behind. */
async function removeFailedJob(ctx: PipelineContext, job: Job): Promise<void> {
  try {
    // requeueEscalation already removes the superseded job it knows of; this one may be older.
    if (await ctx.queues.retrigger.getJob(job.id!)) await job.remove();
  } catch (error) {
    ctx.log.warn({ jobId: job.id, error: (error as Error).message }, "requeued, but the old failed job could not be removed");
  }
}

/** Pages from the head of the failed set; jobs removed on the way shift the rest towards it. */
async function requeueAllFailed(ctx: PipelineContext, actor: string): Promise<JobRequeue[]> {
  const outcomes: JobRequeue[] = [];
  const seen = new Set<string>();
  const requeuedInBatch = new Set<string>();
  let offset = 0;
  while (outcomes.length < MAX_RETRY_ALL) {
    const jobs = (await ctx.queues.retrigger.getJobs(["failed"], offset, offset + PAGE - 1)).filter((job) => job.id && !seen.has(job.id));
    if (jobs.length === 0) break;
    for (const job of jobs) {
      seen.add(job.id!);
      const outcome = await requeueFailedJob(ctx, job, actor, requeuedInBatch);
      outcomes.push(outcome);
      if (outcome.outcome === "refused") offset++;
      if (outcomes.length >= MAX_RETRY_ALL) break;
    }
  }
  return outcomes;
}
