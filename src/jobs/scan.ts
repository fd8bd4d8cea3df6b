// Processor of the healing scan: page through orphans (keyset), enqueue one retrigger job each with
// addBulk, and the backstop: escalate rounds whose final failure was never escalated, and top up the
// SUSPENSE of escalations whose settled amount grew (cash posted by other systems). One obligation's
// error is logged and counted, and the scan goes on; an outage of Postgres stops it (every obligation
// would fail the same way; the next scan starts again).
import type { Job } from "bullmq";
import { isOutage } from "../db/client.js";
import { escalateToSuspense, findOrphanedObligations, findSuspenseShortfalls, topUpSuspense } from "../db/healing.js";
import { enqueueRetriggers } from "../queues/retriggerJobs.js";
import type { PipelineContext } from "./context.js";

export interface ScanSummary {
  found: number;
  enqueued: number;
  /** Orphans that already had a live retrigger job. */
  alreadyQueued: number;
  /** Orphans escalated by the backstop: their round used every attempt and no job is live. */
  escalatedByBackstop: number;
  /** Orphans whose round used every attempt but whose last job is still live. */
  awaitingFinalFailure: number;
  /** Escalations whose SUSPENSE the backstop brought up to a settled amount that grew (late cash). */
  suspenseToppedUp: number;
  /** Obligations the backstop failed on (logged with their id; reconciliation reports them): the scan went on. */
  obligationErrors: number;
  jobIds: string[];
  durationMs: number;
}

export async function scanForOrphans(ctx: PipelineContext, requestedBy = "scan"): Promise<ScanSummary> {
  const started = performance.now();
  const summary: ScanSummary = {
    found: 0, enqueued: 0, alreadyQueued: 0, escalatedByBackstop: 0, awaitingFinalFailure: 0, suspenseToppedUp: 0, obligationErrors: 0, jobIds: [], durationMs: 0,
  };
  const { retrigger } = ctx.queues;
  let after: string | null = null;

  for (;;) {
    const page = await findOrphanedObligations(ctx.database.db, { after, limit: ctx.settings.HEALING_SCAN_PAGE_SIZE });
    if (page.length === 0) break;
    after = page[page.length - 1]!.obligationId;
    summary.found += page.length;

    const exhausted = page.filter((o) => o.attemptCount >= ctx.settings.HEALING_ATTEMPTS);
    const fresh = page.filter((o) => o.attemptCount < ctx.settings.HEALING_ATTEMPTS);
    for (const orphan of exhausted) {
      if (await retrigger.getDeduplicationJobId(orphan.obligationId)) {
        summary.awaitingFinalFailure++;
        continue;
      }
      const outcome = await isolated(ctx, summary, orphan.obligationId, "backstop escalation", () =>
        ctx.database.db.transaction((tx) =>
          escalateToSuspense(tx, orphan.obligationId, {
            actor: "dispersal-healing-backstop",
            reason: `round used all ${orphan.attemptCount} attempts and its final failure was never escalated`,
            attemptCount: orphan.attemptCount,
          }),
        ),
      );
      if (outcome === "escalated") summary.escalatedByBackstop++;
    }
    for (const job of await enqueueRetriggers(ctx.queues, ctx.settings, fresh.map((o) => o.obligationId))) {
      summary.jobIds.push(job.jobId);
      if (job.added) summary.enqueued++;
      else summary.alreadyQueued++;
    }
    if (page.length < ctx.settings.HEALING_SCAN_PAGE_SIZE) break;
  }
  await topUpShortfalls(ctx, summary);
  summary.jobIds = [...new Set(summary.jobIds)];
  summary.durationMs = Math.round(performance.now() - started);
  ctx.log.info(
    {
      found: summary.found, jobs: summary.jobIds.length, escalatedByBackstop: summary.escalatedByBackstop, awaitingFinalFailure: summary.awaitingFinalFailure,
      suspenseToppedUp: summary.suspenseToppedUp, obligationErrors: summary.obligationErrors, durationMs: summary.durationMs, requestedBy,
    },
    summary.obligationErrors > 0 ? "healing scan finished with obligation errors" : "healing scan finished",
  );
  return summary;
}

/** Escalations short of their settled amount, topped up one transaction each; bounded per scan (the rest next time). */
async function topUpShortfalls(ctx: PipelineContext, summary: ScanSummary): Promise<void> {
  const shortfalls = await findSuspenseShortfalls(ctx.database.db, { limit: ctx.settings.HEALING_SCAN_PAGE_SIZE });
  for (const obligationId of shortfalls) {
    const result = await isolated(ctx, summary, obligationId, "suspense top-up", () =>
      ctx.database.db.transaction((tx) =>
        topUpSuspense(tx, obligationId, { actor: "dispersal-healing-backstop", reason: "cash received after escalation: SUSPENSE topped up to the settled amount" }),
      ),
    );
    if (result?.outcome === "topped-up") summary.suspenseToppedUp++;
  }
}

/** Runs one obligation's work; its error is logged and counted and the caller goes on. An outage is rethrown. */
async function isolated<T>(ctx: PipelineContext, summary: ScanSummary, obligationId: string, what: string, work: () => Promise<T>): Promise<T | undefined> {
  try {
    return await work();
  } catch (error) {
    if (isOutage(error)) throw error;
    summary.obligationErrors++;
    const { code } = error as { code?: unknown };
    ctx.log.error({ obligationId, what, code: typeof code === "string" ? code : undefined, error: (error as Error)?.stack ?? String(error) }, "healing scan: obligation failed, scan goes on");
    return undefined;
  }
}

export function scanProcessor(ctx: PipelineContext) {
  return async function processScan(job: Job<{ requestedBy?: string }>): Promise<Omit<ScanSummary, "jobIds"> & { jobs: number }> {
    const { jobIds, ...rest } = await scanForOrphans(ctx, typeof job.data?.requestedBy === "string" ? job.data.requestedBy.slice(0, 200) : "scan");
    return { ...rest, jobs: jobIds.length };
  };
}
