// Processor of the healing scan: page through orphans (keyset), enqueue one retrigger job each with
// addBulk, and escalate rounds whose final failure was never escalated (the backstop).
import type { Job } from "bullmq";
import { escalateToSuspense, findOrphanedObligations } from "../db/healing.js";
import { enqueueRetriggers } from "../queues/retriggerJobs.js";
import { failpoint, passFailpoint } from "../failpoint.js";
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
  jobIds: string[];
  durationMs: number;
}

export async function scanForOrphans(ctx: PipelineContext, requestedBy = "scan"): Promise<ScanSummary> {
  const started = performance.now();
  const summary: ScanSummary = { found: 0, enqueued: 0, alreadyQueued: 0, escalatedByBackstop: 0, awaitingFinalFailure: 0, jobIds: [], durationMs: 0 };
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
      const outcome = await ctx.database.db.transaction((tx) =>
        escalateToSuspense(tx, orphan.obligationId, {
          actor: "dispersal-healing-backstop",
          reason: `round used all ${orphan.attemptCount} attempts and its final failure was never escalated`,
          attemptCount: orphan.attemptCount,
        }).then(passFailpoint("backstop.before-commit")),
      );
      failpoint("backstop.after-commit");
      if (outcome === "escalated") summary.escalatedByBackstop++;
    }
    failpoint("scan.before-enqueue");
    for (const job of await enqueueRetriggers(ctx.queues, ctx.settings, fresh.map((o) => o.obligationId))) {
      summary.jobIds.push(job.jobId);
      if (job.added) summary.enqueued++;
      else summary.alreadyQueued++;
    }
    failpoint("scan.after-enqueue");
    if (page.length < ctx.settings.HEALING_SCAN_PAGE_SIZE) break;
  }
  summary.jobIds = [...new Set(summary.jobIds)];
  summary.durationMs = Math.round(performance.now() - started);
  ctx.log.info(
    { found: summary.found, jobs: summary.jobIds.length, escalatedByBackstop: summary.escalatedByBackstop, awaitingFinalFailure: summary.awaitingFinalFailure, durationMs: summary.durationMs, requestedBy },
    "healing scan finished",
  );
  return summary;
}

export function scanProcessor(ctx: PipelineContext) {
  return async function processScan(job: Job<{ requestedBy?: string }>): Promise<Omit<ScanSummary, "jobIds"> & { jobs: number }> {
    const { jobIds, ...rest } = await scanForOrphans(ctx, typeof job.data?.requestedBy === "string" ? job.data.requestedBy.slice(0, 200) : "scan");
    return { ...rest, jobs: jobIds.length };
  };
}
