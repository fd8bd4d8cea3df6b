// Requeue of several escalations at once (bulk API, the ops page's "requeue selected" and "requeue
// all N" of a group): one by one through the same requestRequeue as everything else (so
// the four-eyes policy applies to each), with a result per obligation; or a dry run that says what
// would happen and changes nothing. A filter is resolved to its escalations first (db/escalationGroups.ts).
import { selectEscalations, type EscalationSelection, type SelectedEscalation } from "../db/escalationGroups.js";
import { previewRequeues, type RequeuePreview } from "../db/requeueRequests.js";
import type { PipelineContext } from "../jobs/context.js";
import { requestRequeue, requiredApprovals, type PendingRequeueResult, type RequeueChannel, type RequeueResult } from "../jobs/requeue.js";
import { answerFor } from "./httpErrors.js";

export const MAX_BULK_REQUEUE = 500;

export type RequeueOutcome =
  | ({ outcome: "requeued" } & Omit<RequeueResult, "status">)
  | ({ outcome: "pending_approval" } & Omit<PendingRequeueResult, "status">)
  | { outcome: "refused"; obligationId: string; status: number; code?: string; error: string }
  | { outcome: "not-attempted"; obligationId: string; error: string };

export interface BulkRequeueSummary {
  requested: number;
  requeued: number;
  /** Requests left waiting for a second operator (four-eyes policy at 2). */
  pendingApproval: number;
  refused: number;
  /** True when an outage stopped the batch: the rest were not attempted. */
  interrupted: boolean;
  results: RequeueOutcome[];
}

export interface BulkRequeueDryRun {
  dryRun: true;
  requested: number;
  /** Would be requeued (or, with the four-eyes policy at 2, would wait for approval). */
  wouldRequeue: number;
  approvalsRequired: 1 | 2;
  skipped: number;
  skippedBecause: Record<string, number>;
  results: RequeuePreview[];
}

export interface BulkRequeueRequest {
  actor: string;
  channel: Exclude<RequeueChannel, "bull-board">;
  reason: string;
  /** Recorded in each obligation's audit row (e.g. the filter it was selected by). */
  metadata?: Record<string, unknown>;
}

export interface SelectionDryRun extends BulkRequeueDryRun {
  filter: EscalationSelection;
  /** Escalations the filter matches now: the expectedCount to send with the requeue. */
  matched: number;
  amount: bigint;
  obligations: SelectedEscalation[];
}

export interface SelectionRequeueSummary extends BulkRequeueSummary {
  filter: EscalationSelection;
  matched: number;
}

/** Dry run of a requeue by filter; with expectedCount, a different count is refused (409) as the real one is. */
export async function dryRunSelection(ctx: PipelineContext, filter: EscalationSelection, expectedCount?: number): Promise<SelectionDryRun> {
  const selected = await selectEscalations(ctx.database.db, filter, expectedCount === undefined ? {} : { expectedCount });
  const preview = await dryRunRequeueMany(ctx, selected.map((s) => s.obligationId));
  return { ...preview, filter, matched: selected.length, amount: selected.reduce((sum, s) => sum + s.amount, 0n), obligations: selected };
}

/**
 * Every escalation the filter matches, in this one request, after checking the operator's count:
 * a mismatch throws EscalationCountMismatchError before anything changes.
 */
export async function requeueSelection(
  ctx: PipelineContext,
  filter: EscalationSelection,
  expectedCount: number,
  request: BulkRequeueRequest,
  onProgress?: RequeueProgress,
): Promise<SelectionRequeueSummary> {
  const selected = await selectEscalations(ctx.database.db, filter, { expectedCount });
  const summary = await requeueMany(
    ctx,
    selected.map((s) => s.obligationId),
    { ...request, metadata: { ...request.metadata, selection: { filter, expectedCount } } },
    onProgress,
  );
  return { ...summary, filter, matched: selected.length };
}

/** Called before the first obligation (done 0) and after each one. */
export type RequeueProgress = (done: number, total: number) => void;

export async function requeueMany(
  ctx: PipelineContext,
  obligationIds: readonly string[],
  request: BulkRequeueRequest,
  onProgress?: RequeueProgress,
): Promise<BulkRequeueSummary> {
  const unique = [...new Set(obligationIds)];
  const results: RequeueOutcome[] = [];
  let interrupted = false;
  onProgress?.(0, unique.length);
  for (const obligationId of unique) {
    if (results.length > 0) onProgress?.(results.length, unique.length);
    if (interrupted) {
      results.push({ outcome: "not-attempted", obligationId, error: "not attempted: a backing service became unavailable" });
      continue;
    }
    try {
      const { status, ...result } = await requestRequeue(ctx, obligationId, request);
      results.push(status === "requeued" ? { outcome: "requeued", ...(result as Omit<RequeueResult, "status">) } : { outcome: "pending_approval", ...result });
    } catch (error) {
      const answer = answerFor(error);
      if (!answer) ctx.log.error({ obligationId, actor: request.actor, error: (error as Error)?.stack ?? String(error) }, "requeue failed");
      if (answer?.status === 503) interrupted = true;
      const code = typeof answer?.body.code === "string" ? answer.body.code : undefined;
      results.push({
        outcome: "refused",
        obligationId,
        status: answer?.status ?? 500,
        ...(code ? { code } : {}),
        error: answer?.body.error ?? "internal error; the details are in the server log",
      });
    }
  }
  onProgress?.(results.length, unique.length);
  const requeued = results.filter((r) => r.outcome === "requeued").length;
  const pendingApproval = results.filter((r) => r.outcome === "pending_approval").length;
  return { requested: unique.length, requeued, pendingApproval, refused: results.length - requeued - pendingApproval, interrupted, results };
}

export async function dryRunRequeueMany(ctx: PipelineContext, obligationIds: readonly string[]): Promise<BulkRequeueDryRun> {
  const results = await previewRequeues(ctx.database.db, obligationIds, ctx.settings.REQUEUE_APPROVAL_TTL);
  const skippedBecause: Record<string, number> = {};
  for (const r of results) if (r.outcome === "skipped") skippedBecause[r.reason] = (skippedBecause[r.reason] ?? 0) + 1;
  const wouldRequeue = results.filter((r) => r.outcome === "would_requeue").length;
  return {
    dryRun: true,
    requested: results.length,
    wouldRequeue,
    approvalsRequired: await requiredApprovals(ctx),
    skipped: results.length - wouldRequeue,
    skippedBecause,
    results,
  };
}
