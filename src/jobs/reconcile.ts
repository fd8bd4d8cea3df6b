// Processor of the reconciliation jobs: the daily run (incremental) and the weekly sweep (full), one
// processor whose job data names the scope. Runs the checks, stores the run, logs the defects loudly.
// Jobs refused as unrecoverable are read from the retrigger queue's failed set (where BullMQ keeps
// them 30 days) rather than recorded in Postgres at refusal: a refusal then writes nothing (a flood
// of hostile payloads cannot grow a table), and what Redis loses the stale-orphan check still catches.
import { runReconciliation, type ReconciliationReport, type ReconciliationScope, type RejectedRetrigger } from "../db/reconciliation.js";
import type { ReconcileJobData } from "../queues/names.js";
import { normaliseId } from "../domain/ids.js";
import { orphanDeadlineMs } from "../domain/orphanDeadline.js";
import type { PipelineContext, PipelineSettings } from "./context.js";
import { isRefusal } from "./jobFailures.js";
import { failpoint } from "../failpoint.js";

const FAILED_PAGE = 500;

/** The same deadline the metrics export for the stuck-orphan alert (domain/orphanDeadline.ts). */
export function orphanDeadlineOf(settings: Pick<PipelineSettings, "HEALING_SCAN_EVERY_MS" | "HEALING_ATTEMPTS" | "HEALING_BACKOFF_MS">): number {
  return orphanDeadlineMs({ scanEveryMs: settings.HEALING_SCAN_EVERY_MS, attempts: settings.HEALING_ATTEMPTS, backoffMs: settings.HEALING_BACKOFF_MS });
}

/** Failed retrigger jobs whose failedReason marks them unrecoverable and whose data names an obligation. */
export async function findRejectedRetriggers(ctx: PipelineContext): Promise<RejectedRetrigger[]> {
  const rejected: RejectedRetrigger[] = [];
  for (let start = 0; ; start += FAILED_PAGE) {
    const jobs = await ctx.queues.retrigger.getFailed(start, start + FAILED_PAGE - 1);
    for (const job of jobs) {
      if (!isRefusal(job?.failedReason)) continue;
      const obligationId = normaliseId((job.data as { obligationId?: unknown } | null)?.obligationId);
      if (obligationId) rejected.push({ obligationId, rejectedAt: job.finishedOn ?? job.timestamp });
    }
    if (jobs.length < FAILED_PAGE) return rejected;
  }
}

/** incremental (the default: the daily run, full when no run has completed yet) or full (the weekly sweep). */
export async function reconcileLedger(ctx: PipelineContext, scope: ReconciliationScope = "incremental"): Promise<ReconciliationReport> {
  const rejectedRetriggers = await findRejectedRetriggers(ctx);
  const report = await runReconciliation(ctx.database.db, { orphanDeadlineMs: orphanDeadlineOf(ctx.settings), rejectedRetriggers, scope });
  failpoint("reconcile.after-run");
  const fields = {
    runId: report.id,
    scope: report.scope,
    obligationsChecked: report.obligationsChecked,
    fromMark: report.fromMark,
    journalMark: report.journalMark,
    defectCount: report.defectCount,
    findings: report.findings,
  };
  if (report.defectCount > 0) ctx.log.error(fields, "reconciliation found defects");
  else ctx.log.info(fields, "reconciliation clean");
  return report;
}

export function reconcileProcessor(ctx: PipelineContext) {
  return async (job: { data?: ReconcileJobData | null }) => {
    const report = await reconcileLedger(ctx, job.data?.scope === "full" ? "full" : "incremental");
    return { runId: report.id, scope: report.scope, status: report.status, obligationsChecked: report.obligationsChecked, defectCount: report.defectCount };
  };
}
