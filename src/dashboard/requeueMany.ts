// Requeue of several escalations at once (bulk API, the ops page's "requeue selected"): one by one
// through the same requeueEscalation as everything else, with a result per obligation.
import type { PipelineContext } from "../jobs/context.js";
import { requeueEscalation, type RequeueResult } from "../jobs/requeue.js";
import { answerFor } from "./httpErrors.js";

export const MAX_BULK_REQUEUE = 500;

export type RequeueOutcome =
  | ({ outcome: "requeued" } & RequeueResult)
  | { outcome: "refused"; obligationId: string; status: number; code?: string; error: string }
  | { outcome: "not-attempted"; obligationId: string; error: string };

export interface BulkRequeueSummary {
  requested: number;
  requeued: number;
  refused: number;
  /** True when an outage stopped the batch: the rest were not attempted. */
  interrupted: boolean;
  results: RequeueOutcome[];
}

export async function requeueMany(
  ctx: PipelineContext,
  obligationIds: readonly string[],
  actor: string,
  channel: "api" | "ops-page",
): Promise<BulkRequeueSummary> {
  const unique = [...new Set(obligationIds)];
  const results: RequeueOutcome[] = [];
  let interrupted = false;
  for (const obligationId of unique) {
    if (interrupted) {
      results.push({ outcome: "not-attempted", obligationId, error: "not attempted: a backing service became unavailable" });
      continue;
    }
    try {
      results.push({ outcome: "requeued", ...(await requeueEscalation(ctx, obligationId, actor, channel)) });
    } catch (error) {
      const answer = answerFor(error);
      if (!answer) ctx.log.error({ obligationId, actor, error: (error as Error)?.stack ?? String(error) }, "requeue failed");
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
  const requeued = results.filter((r) => r.outcome === "requeued").length;
  return { requested: unique.length, requeued, refused: results.length - requeued, interrupted, results };
}
