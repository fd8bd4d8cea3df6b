// `dispersal scan --wait`: one scan now, then wait until every job it enqueued has ended, and say
// what became of them.
import { sql } from "drizzle-orm";
import type { PipelineContext } from "./context.js";
import { scanForOrphans } from "./scan.js";

export interface ScanWaitSummary {
  found: number;
  enqueued: number;
  alreadyQueued: number;
  dispersed: number;
  escalated: number;
  skipped: number;
  escalatedByBackstop: number;
  suspenseToppedUp: number;
  /** Obligations the scan's backstop failed on (each logged with its id); the scan went on. */
  obligationErrors: number;
  unfinished: number;
  durationMs: number;
}

export async function scanAndWait(ctx: PipelineContext, options: { timeoutMs: number; pollMs?: number }): Promise<ScanWaitSummary> {
  const started = performance.now();
  const scan = await scanForOrphans(ctx, "cli");
  const open = new Set(scan.jobIds);
  const obligationByJob = new Map<string, string>();
  let dispersed = 0;
  const failed: string[] = [];
  const deadline = Date.now() + options.timeoutMs;
  while (open.size > 0 && Date.now() < deadline) {
    const ids = [...open];
    const jobs = await Promise.all(ids.map((id) => ctx.queues.retrigger.getJob(id)));
    const states = await Promise.all(jobs.map((job) => (job ? job.getState() : Promise.resolve("missing"))));
    ids.forEach((id, i) => {
      const job = jobs[i];
      if (job) obligationByJob.set(id, job.data.obligationId);
      if (states[i] === "completed") {
        dispersed++;
        open.delete(id);
      } else if (states[i] === "failed" || states[i] === "missing") {
        failed.push(id);
        open.delete(id);
      }
    });
    if (open.size > 0) await new Promise((r) => setTimeout(r, options.pollMs ?? 200));
  }
  const failedObligations = failed.flatMap((id) => (obligationByJob.has(id) ? [obligationByJob.get(id)!] : []));
  const escalated = await countEscalated(ctx, failedObligations, Math.max(0, deadline - Date.now()));
  return {
    found: scan.found,
    enqueued: scan.enqueued,
    alreadyQueued: scan.alreadyQueued,
    dispersed,
    escalated,
    skipped: failed.length - escalated,
    escalatedByBackstop: scan.escalatedByBackstop,
    suspenseToppedUp: scan.suspenseToppedUp,
    obligationErrors: scan.obligationErrors,
    unfinished: open.size,
    durationMs: Math.round(performance.now() - started),
  };
}

/** The escalation of a final failure runs in the failed-event handler, maybe in another process: give it a moment. */
async function countEscalated(ctx: PipelineContext, obligationIds: string[], waitMs: number): Promise<number> {
  if (obligationIds.length === 0) return 0;
  const deadline = Date.now() + Math.min(waitMs, 10_000);
  for (;;) {
    const [row] = await ctx.database.db.execute<{ escalated: bigint; pending: bigint }>(sql`
      select count(*) filter (where h.status = 'escalated') as escalated,
             count(*) filter (where h.status in ('retrying', 'requeued') and h.attempt_count >= ${ctx.settings.HEALING_ATTEMPTS}) as pending
        from dispersal_healing_attempts h
       where h.obligation_id in (select (jsonb_array_elements_text(${JSON.stringify(obligationIds)}::jsonb))::uuid)`);
    if (Number(row!.pending) === 0 || Date.now() >= deadline) return Number(row!.escalated);
    await new Promise((r) => setTimeout(r, 100));
  }
}
