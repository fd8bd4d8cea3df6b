// "Scan now" from the API or the ops page: one scan job on the healing queue. While one manual scan
// is waiting or running, asking again returns that job (deduplication), so double clicks and
// impatient operators do not stack scans.
import type { PipelineContext } from "../jobs/context.js";
import { JOB } from "../queues/names.js";

const MANUAL_SCAN_DEDUPLICATION_ID = "manual-scan";

export interface ScanRequest {
  jobId: string;
  /** True when a manual scan was already waiting or running and this request joined it. */
  alreadyRequested: boolean;
}

export async function requestScan(ctx: PipelineContext, actor: string): Promise<ScanRequest> {
  const jobId = `manual-scan.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  const job = await ctx.queues.healing.add(
    JOB.scan,
    { requestedBy: actor },
    { jobId, deduplication: { id: MANUAL_SCAN_DEDUPLICATION_ID }, removeOnComplete: { count: 200 }, removeOnFail: { count: 200 } },
  );
  ctx.log.info({ actor, jobId: job.id, alreadyRequested: job.id !== jobId }, "healing scan requested");
  return { jobId: job.id!, alreadyRequested: job.id !== jobId };
}
