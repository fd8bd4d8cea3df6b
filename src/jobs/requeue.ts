// Manual requeue of an escalated obligation (DESIGN.md §4): the one path behind the ops API, the ops
// page, the CLI and Bull Board's retry button. The database decides (db/requeueRequests.ts: ask,
// approve, withdraw, each audited) and the round's job is added, through the one enqueue path, in
// that same transaction before it commits, on the bounded connection: so a request answered as
// failed (Redis away or slow, 503) rolls back and leaves nothing that could act later.
import { recordJobId } from "../db/healing.js";
import {
  approveRequeue as approveInDatabase,
  askForRequeue,
  readRequeuePolicy,
  withdrawRequeue as withdrawInDatabase,
  type RequiredApprovals,
  type RequeueAsk,
  type RequeueChannel,
} from "../db/requeueRequests.js";
import { visibleReason } from "../domain/requeueReason.js";
import type { Tx } from "../db/client.js";
import { withinDeadline } from "../deadline.js";
import { DependencyUnavailableError } from "../domain/errors.js";
import { enqueueRetriggers } from "../queues/retriggerJobs.js";
import { failpoint } from "../failpoint.js";
import type { PipelineContext } from "./context.js";

export type { RequeueChannel } from "../db/requeueRequests.js";

export interface RequeueResult {
  status: "requeued";
  obligationId: string;
  requestId: string;
  /** The round's job; null when the backlog is at its cap (the scan enqueues it later). */
  jobId: string | null;
  round: number;
}

export interface PendingRequeueResult {
  status: "pending_approval";
  obligationId: string;
  requestId: string;
}

export interface RequeueRequest {
  actor: string;
  channel: RequeueChannel;
  reason: string;
  metadata?: Record<string, unknown>;
}

/** The approvals a requeue needs now, as the requeue's own transaction will read them (ops_policy). */
export async function requiredApprovals(ctx: PipelineContext): Promise<RequiredApprovals> {
  return (await readRequeuePolicy(ctx.database.db, ctx.settings.REQUEUE_APPROVALS)).requeueApprovals;
}

/**
 * Carries the requeue out, or under the four-eyes policy (ops_policy at 2) leaves it waiting for a second operator.
 * The reason is checked here too, whatever the caller checked: no path records an invisible one.
 */
export async function requestRequeue(ctx: PipelineContext, obligationId: string, request: RequeueRequest): Promise<RequeueResult | PendingRequeueResult> {
  const ask: RequeueAsk = { obligationId, requestedBy: request.actor, channel: request.channel, reason: visibleReason(request.reason), ...(request.metadata ? { metadata: request.metadata } : {}) };
  const outcome = await ctx.database.db.transaction(async (tx) => {
    const decision = await askForRequeue(tx, ask, ctx.settings.REQUEUE_APPROVALS, ctx.settings.REQUEUE_APPROVAL_TTL);
    const jobId = decision.status === "requeued" ? await addRoundJob(ctx, tx, obligationId, "request") : null;
    failpoint("requeue.before-commit");
    return { ...decision, jobId };
  });
  failpoint("requeue.after-commit");
  if (outcome.status === "pending_approval") {
    ctx.log.warn({ obligationId, actor: request.actor, channel: request.channel, requestId: outcome.requestId }, "requeue requested: waiting for a second operator");
    return { status: "pending_approval", obligationId, requestId: outcome.requestId };
  }
  return roundStarted(ctx, obligationId, outcome, request.actor, request.channel);
}

export async function approveRequeue(ctx: PipelineContext, obligationId: string, approver: string, channel: RequeueChannel): Promise<RequeueResult & { requestedBy: string; approvedBy: string }> {
  const carried = await ctx.database.db.transaction(async (tx) => {
    const approved = await approveInDatabase(tx, obligationId, approver, channel, ctx.settings.REQUEUE_APPROVAL_TTL);
    const jobId = await addRoundJob(ctx, tx, obligationId, "approval");
    failpoint("approve.before-commit");
    return { ...approved, jobId };
  });
  failpoint("approve.after-commit");
  const result = await roundStarted(ctx, obligationId, carried, approver, channel);
  return { ...result, requestedBy: carried.requestedBy, approvedBy: approver };
}

export async function withdrawRequeue(ctx: PipelineContext, obligationId: string, actor: string, channel: RequeueChannel) {
  const withdrawn = await ctx.database.db.transaction((tx) => withdrawInDatabase(tx, obligationId, actor, channel));
  ctx.log.info({ obligationId, actor, channel, requestId: withdrawn.requestId }, "requeue request withdrawn");
  return { ...withdrawn, obligationId };
}

/**
 * Adds the new round's job inside the requeue's transaction and records its id there. Bounded by
 * REDIS_COMMAND_TIMEOUT_MS on a connection that never holds a command back for later: when Redis
 * does not take it, the transaction rolls back and the request is answered 503 with nothing
 * changed. A job that Redis took but whose transaction then failed (a crash, a timeout after Redis
 * ran the add) finds its obligation still escalated and is refused (EscalatedWithoutRequeueError).
 */
async function addRoundJob(ctx: PipelineContext, tx: Tx, obligationId: string, via: "request" | "approval"): Promise<string | null> {
  const queues = ctx.queues.forRequests;
  let job;
  try {
    [job] = await withinDeadline(enqueueRetriggers(queues, ctx.settings, [obligationId]), queues.commandTimeoutMs, "the requeue's job");
  } catch (error) {
    ctx.log.warn({ obligationId, error: (error as Error).message }, "requeue refused: Redis did not take its job; nothing changed");
    throw new DependencyUnavailableError("redis", `Redis did not take the requeue's job within ${queues.commandTimeoutMs} ms: nothing was changed, the obligation is still escalated; try again when Redis is back`, { cause: error });
  }
  if (via === "approval") failpoint("approve.after-enqueue");
  else failpoint("requeue.after-enqueue");
  // null when the backlog is at its cap: the row is requeued and the scan enqueues it later.
  if (!job) return null;
  await recordJobId(tx, obligationId, job.jobId);
  if (via === "approval") failpoint("approve.after-record-job");
  else failpoint("requeue.after-record-job");
  return job.jobId;
}

async function roundStarted(
  ctx: PipelineContext,
  obligationId: string,
  round: { requestId: string; round: number; previousJobId: string | null; jobId: string | null },
  actor: string,
  channel: RequeueChannel,
): Promise<RequeueResult> {
  if (round.jobId) await removeSupersededJob(ctx, round.previousJobId, round.jobId);
  ctx.log.warn({ obligationId, actor, channel, requestId: round.requestId, jobId: round.jobId, round: round.round }, "escalation requeued");
  return { status: "requeued", obligationId, requestId: round.requestId, jobId: round.jobId, round: round.round };
}

/**
 * The failed job of the round just replaced would otherwise linger in Bull Board, where retrying
 * it is refused (its obligation is no longer escalated). The audit log keeps the history.
 */
async function removeSupersededJob(ctx: PipelineContext, previousJobId: string | null, newJobId: string): Promise<void> {
  if (!previousJobId || previousJobId === newJobId) return;
  try {
    const previous = await ctx.queues.forRequests.retrigger.getJob(previousJobId);
    if (previous && (await previous.isFailed())) await previous.remove();
  } catch (error) {
    ctx.log.warn({ jobId: previousJobId, error: (error as Error).message }, "requeued, but the superseded failed job could not be removed");
  }
}
