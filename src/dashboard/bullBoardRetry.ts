// Bull Board's retry buttons on this service's queues. A bare BullMQ retry of a retrigger job would
// run a round behind the ledger's back (no requeue request, no reason, no audit naming the
// operator), so on the retrigger queue a retry becomes a requeue through jobs/requeue.ts: the retry
// of one job only with a reason (its confirmation, GET retry/:queue/:jobId, is the story page's
// requeue form; the PUT without one is refused with that link), "retry all" with Bull Board's fixed
// reason. On the other queues it is refused. Routes are matched by express on their decoded parameters, exactly as Bull Board's own
// router matches them, so no spelling of the path (percent-encoded names, case) slips past.
// Jobs are read on the bounded connection (queues.forRequests): a Redis that does not answer fails
// a retry within REDIS_COMMAND_TIMEOUT_MS (503, bullBoard.ts) instead of holding it.
import express, { Router, type Response } from "express";
import type { Job } from "bullmq";
import { DomainError } from "../domain/errors.js";
import { BULL_BOARD_REASON, requeueReasonSchema } from "../domain/requeueReason.js";
import type { PipelineContext } from "../jobs/context.js";
import { requestRequeue, type PendingRequeueResult, type RequeueResult } from "../jobs/requeue.js";
import { obligationOfJob } from "../jobs/retrigger.js";
import type { RetriggerJobData } from "../queues/names.js";
import { BODY_LIMIT } from "./api.js";
import { operatorOf, requireOperatorRole } from "./auth.js";
import { storyPath } from "./opsHtml.js";

/** A bound on one "retry all" click; the answer says how many are left for the next one. */
const MAX_RETRY_ALL = 1000;
const PAGE = 100;
const RETRIABLE = ["failed", "completed"] as const;
type RetriableState = (typeof RETRIABLE)[number];

type JobRequeue =
  | { outcome: "requeued"; jobId: string; result: RequeueResult }
  | { outcome: "pending_approval"; jobId: string; result: PendingRequeueResult }
  | { outcome: "superseded"; jobId: string; obligationId: string }
  | { outcome: "refused"; jobId: string; obligationId?: string; code: string; error: string };

/** Mounted at Bull Board's base path, before the board; the routes are those of @bull-board/api's retryAll and retryJob. */
export function retryAsRequeue(ctx: PipelineContext): Router {
  const router = Router();

  router.put("/api/queues/:queueName/retry/:queueStatus", requireOperatorRole(), async (req, res) => {
    if (!isRetrigger(ctx, String(req.params.queueName), res)) return;
    const state = retriableState(String(req.params.queueStatus), res);
    if (!state) return;
    const outcomes = await requeueAll(ctx, state, operatorOf(res).name);
    const count = (o: JobRequeue["outcome"]) => outcomes.filter((x) => x.outcome === o).length;
    const refused = outcomes.filter((o): o is Extract<JobRequeue, { outcome: "refused" }> => o.outcome === "refused");
    const remaining = Math.max(0, (await ctx.queues.forRequests.retrigger.getJobCountByTypes(state)) - refused.length - count("pending_approval"));
    const acted = count("requeued") + count("pending_approval");
    const status = acted === 0 && refused.length > 0 ? 409 : count("requeued") === 0 && count("pending_approval") > 0 ? 202 : 200;
    res.status(status).json({
      retried: count("requeued"),
      pendingApproval: count("pending_approval"),
      skipped: refused.length,
      superseded: count("superseded"),
      remaining,
      requeued: outcomes.flatMap((o) => (o.outcome === "requeued" ? [o.result] : [])),
      pending: outcomes.flatMap((o) => (o.outcome === "pending_approval" ? [o.result] : [])),
      refused,
      ...(status === 409 ? { error: `none of the ${state} jobs could be requeued`, message: refused[0]?.error } : {}),
    });
  });

  router.put("/api/queues/:queueName/:jobId/retry", requireOperatorRole(), express.json({ limit: BODY_LIMIT }), async (req, res) => {
    if (!isRetrigger(ctx, String(req.params.queueName), res)) return;
    const job = await ctx.queues.forRequests.retrigger.getJob(String(req.params.jobId));
    if (!job) return void res.status(404).json({ error: "no such job", jobId: req.params.jobId });
    const state = await job.getState();
    if (!(RETRIABLE as readonly string[]).includes(state)) return void res.status(409).json({ error: `the job is ${state}: only failed or completed jobs are retried` });
    const reason = requeueReasonSchema.safeParse((req.body as { reason?: unknown } | undefined)?.reason ?? "");
    if (!reason.success) {
      const confirmUrl = `${req.baseUrl}${retryConfirmationPath(ctx.queues.retrigger.name, job.id!)}`;
      res.status(400).json({ error: "a retry of a retrigger job is a requeue: it needs a reason (why will a new round succeed?); confirm it with one", message: reason.error.issues[0]?.message, confirmUrl, jobId: job.id });
      return;
    }
    const outcome = await requeueJob(ctx, job, state as RetriableState, operatorOf(res).name, new Set(), reason.data);
    if (outcome.outcome === "refused") return refuse(res, outcome);
    if (outcome.outcome === "pending_approval") return void res.status(202).json(outcome.result);
    res.status(200).json(outcome.outcome === "requeued" ? { ...outcome.result, removedJobId: job.id } : outcome);
  });

  // The confirmation of one job's retry: the story page's requeue form of the job's obligation,
  // which shows the obligation and its amount and asks for the reason.
  router.get("/retry/:queueName/:jobId", async (req, res) => {
    if (!isRetrigger(ctx, String(req.params.queueName), res)) return;
    const job = await ctx.queues.forRequests.retrigger.getJob(String(req.params.jobId));
    if (!job) return void res.status(404).json({ error: "no such job", jobId: req.params.jobId });
    const obligationId = obligationOfJob(job.data);
    if (!obligationId) return void res.status(409).json({ error: "the job names no obligation: nothing to requeue", jobId: job.id });
    res.redirect(303, `${storyPath(obligationId)}?${new URLSearchParams({ retry: job.id! })}#requeue`);
  });

  return router;
}

/** Relative to Bull Board's base path. */
export function retryConfirmationPath(queueName: string, jobId: string): string {
  return `/retry/${encodeURIComponent(queueName)}/${encodeURIComponent(jobId)}`;
}

function isRetrigger(ctx: PipelineContext, queueName: string | undefined, res: Response): boolean {
  if (queueName === ctx.queues.retrigger.name) return true;
  if (!ctx.queues.all.some((q) => q.name === queueName)) {
    res.status(404).json({ error: "no such queue" });
    return false;
  }
  res.status(403).json({ error: `jobs of ${queueName} are not retried from Bull Board: run a scan with POST /api/healing/scan, a reconciliation with \`dispersal reconcile\`` });
  return false;
}

function retriableState(value: string | undefined, res: Response): RetriableState | undefined {
  if ((RETRIABLE as readonly (string | undefined)[]).includes(value)) return value as RetriableState;
  res.status(400).json({ error: "only failed or completed jobs can be retried" });
  return undefined;
}

function refuse(res: Response, refusal: Extract<JobRequeue, { outcome: "refused" }>): void {
  res.status(409).json({ error: `cannot requeue: ${refusal.error}`, message: refusal.error, code: refusal.code, jobId: refusal.jobId, obligationId: refusal.obligationId });
}

/**
 * A job of an obligation already requeued in this batch is an older round's: a failed one is removed
 * as superseded rather than refused (its obligation is no longer escalated).
 */
async function requeueJob(
  ctx: PipelineContext,
  job: Job<RetriggerJobData>,
  state: RetriableState,
  actor: string,
  requeuedInBatch: Set<string>,
  reason: string = BULL_BOARD_REASON,
): Promise<JobRequeue> {
  const jobId = job.id!;
  const obligationId = obligationOfJob(job.data);
  if (!obligationId) return { outcome: "refused", jobId, code: "INVALID_JOB_DATA", error: "the job names no obligation: nothing to requeue" };
  if (requeuedInBatch.has(obligationId)) {
    if (state === "failed") await removeOldJob(ctx, job);
    return { outcome: "superseded", jobId, obligationId };
  }
  try {
    const result = await requestRequeue(ctx, obligationId, { actor, channel: "bull-board", reason });
    requeuedInBatch.add(obligationId);
    if (result.status === "pending_approval") return { outcome: "pending_approval", jobId, result };
    if (state === "failed") await removeOldJob(ctx, job);
    return { outcome: "requeued", jobId, result };
  } catch (error) {
    if (!(error instanceof DomainError)) throw error;
    return { outcome: "refused", jobId, obligationId, code: error.code, error: error.message };
  }
}

/** The requeue has committed and its new job is queued; a failed removal only leaves history behind. */
async function removeOldJob(ctx: PipelineContext, job: Job): Promise<void> {
  try {
    // The requeue already removes the superseded job it knows of; this one may be older.
    if (await ctx.queues.forRequests.retrigger.getJob(job.id!)) await job.remove();
  } catch (error) {
    ctx.log.warn({ jobId: job.id, error: (error as Error).message }, "requeued, but the old failed job could not be removed");
  }
}

/** Pages from the head of the set; jobs removed on the way shift the rest towards it. */
async function requeueAll(ctx: PipelineContext, state: RetriableState, actor: string): Promise<JobRequeue[]> {
  const outcomes: JobRequeue[] = [];
  const seen = new Set<string>();
  const requeuedInBatch = new Set<string>();
  let offset = 0;
  while (outcomes.length < MAX_RETRY_ALL) {
    const jobs = (await ctx.queues.forRequests.retrigger.getJobs([state], offset, offset + PAGE - 1)).filter((job) => job.id && !seen.has(job.id));
    if (jobs.length === 0) break;
    for (const job of jobs) {
      seen.add(job.id!);
      const outcome = await requeueJob(ctx, job, state, actor, requeuedInBatch);
      outcomes.push(outcome);
      // Jobs left in place (refused, pending, completed ones) keep their position: page past them.
      if (outcome.outcome === "refused" || outcome.outcome === "pending_approval" || state === "completed") offset++;
      if (outcomes.length >= MAX_RETRY_ALL) break;
    }
  }
  return outcomes;
}
