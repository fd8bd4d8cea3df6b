// Processor of the daily reconciliation: run the checks, store the run, log the defects loudly.
import { runReconciliation, type ReconciliationReport } from "../db/reconciliation.js";
import type { PipelineContext } from "./context.js";
import { failpoint } from "../failpoint.js";

export async function reconcileLedger(ctx: PipelineContext): Promise<ReconciliationReport> {
  const report = await runReconciliation(ctx.database.db, { scanIntervalMs: ctx.settings.HEALING_SCAN_EVERY_MS });
  failpoint("reconcile.after-run");
  const fields = { runId: report.id, defectCount: report.defectCount, findings: report.findings };
  if (report.defectCount > 0) ctx.log.error(fields, "reconciliation found defects");
  else ctx.log.info(fields, "reconciliation clean");
  return report;
}

export function reconcileProcessor(ctx: PipelineContext) {
  return async () => {
    const report = await reconcileLedger(ctx);
    return { runId: report.id, status: report.status, defectCount: report.defectCount };
  };
}
