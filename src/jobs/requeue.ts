// Manual requeue of an escalated obligation (DESIGN.md §4): the one path behind the ops API, the ops
// page, the CLI and Bull Board's retry button. The database decides (db/requeueRequests.ts: ask,
// approve, withdraw, each audited) and commits first; only then is the round's job added, through
// the one enqueue path. If the process dies in between, the obligation is `requeued` with a fresh
// round and the next scan enqueues it.
import { recordJobId } from "../db/healing.js";
import {
  approveRequeue as approveInDatabase,
  askForRequeue,
  withdrawRequeue as withdrawInDatabase,
  type RequeueAsk,
  type RequeueChannel,
} from "../db/requeueRequests.js";
import { visibleReason } from "../domain/requeueReason.js";
import { enqueueRetriggers } from "../queues/retriggerJobs.js";
import { failpoint, passFailpoint } from "../failpoint.js";
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

/**
 * Carries the requeue out, or with REQUEUE_APPROVALS=2 leaves it waiting for a second operator.
 * The reason is checked here too, whatever the caller checked: no path records an invisible one.
 */
export async function requestRequeue(ctx: PipelineContext, obligationId: string, request: RequeueRequest): Promise<RequeueResult | PendingRequeueResult> {
  const ask: RequeueAsk = { obligationId, requestedBy: request.actor, channel: request.channel, reason: visibleReason(request.reason), ...(request.metadata ? { metadata: request.metadata } : {}) };
  const decision = await ctx.database.db.transaction((tx) => askForRequeue(tx, ask, ctx.settings.REQUEUE_APPROVALS, ctx.settings.REQUEUE_APPROVAL_TTL).then(passFailpoint("requeue.before-commit")));
  failpoint("requeue.after-commit");
  if (decision.status === "pending_approval") {
    ctx.log.warn({ obligationId, actor: request.actor, channel: request.channel, requestId: decision.requestId }, "requeue requested: waiting for a second operator");
    return { status: "pending_approval", obligationId, requestId: decision.requestId };
  }
  return startRound(ctx, obligationId, decision.requestId, decision.round, decision.previousJobId, request.actor, request.channel, "request");
}

export async function approveRequeue(ctx: PipelineContext, obligationId: string, approver: string, channel: RequeueChannel): Promise<RequeueResult & { requestedBy: string; approvedBy: string }> {
  const carried = await ctx.database.db.transaction((tx) => approveInDatabase(tx, obligationId, approver, channel, ctx.settings.REQUEUE_APPROVAL_TTL).then(passFailpoint("approve.before-commit")));
  failpoint("approve.after-commit");
  const result = await startRound(ctx, obligationId, carried.requestId, carried.round, carried.previousJobId, approver, channel, "approval");
  return { ...result, requestedBy: carried.requestedBy, approvedBy: approver };
}

export async function withdrawRequeue(ctx: PipelineContext, obligationId: string, actor: string, channel: RequeueChannel) {
  const withdrawn = await ctx.database.db.transaction((tx) => withdrawInDatabase(tx, obligationId, actor, channel));
  ctx.log.info({ obligationId, actor, channel, requestId: withdrawn.requestId }, "requeue request withdrawn");
  return { ...withdrawn, obligationId };
}

async function startRound(
  ctx: PipelineContext,
  obligationId: string,
  requestId: string,
  round: number,
  previousJobId: string | null,
  actor: string,
  channel: RequeueChannel,
  /** Which step carried the requeue out: an operator's request, or (four eyes) the second operator's approval. */
  via: "request" | "approval",
): Promise<RequeueResult> {
  const [job] = await enqueueRetriggers(ctx.queues, ctx.settings, [obligationId]);
  if (via === "approval") failpoint("approve.after-enqueue");
  else failpoint("requeue.after-enqueue");
  const jobId = job?.jobId ?? null;
  if (jobId) {
    await recordJobId(ctx.database.db, obligationId, jobId);
    if (via === "approval") failpoint("approve.after-record-job");
    else failpoint("requeue.after-record-job");
    await removeSupersededJob(ctx, previousJobId, jobId);
  }
  ctx.log.warn({ obligationId, actor, channel, requestId, jobId, round, reusedLiveJob: job ? !job.added : undefined }, "escalation requeued");
  return { status: "requeued", obligationId, requestId, jobId, round };
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
