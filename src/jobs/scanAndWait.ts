// `dispersal scan --wait`: scan now, tick after tick as the backlog drains (HEALING_MAX_BACKLOG),
// until a tick went all the way round and every retrigger job has ended; then say what became of
// the orphans. It counts, it does not collect job ids: memory stays flat however many orphans.
import { sql } from "drizzle-orm";
import { retriggerBacklog } from "../queues/retriggerJobs.js";
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
  /** Scan ticks it took (more than one when the backlog cap held orphans back). */
  ticks: number;
  durationMs: number;
}

export async function scanAndWait(ctx: PipelineContext, options: { timeoutMs: number; pollMs?: number }): Promise<ScanWaitSummary> {
  const started = performance.now();
  const deadline = Date.now() + options.timeoutMs;
  const [clock] = await ctx.database.db.execute<{ now: string }>(sql`select clock_timestamp()::text as now`);
  const since = clock!.now;
  const totals = { found: 0, enqueued: 0, alreadyQueued: 0, escalatedByBackstop: 0, suspenseToppedUp: 0, obligationErrors: 0, ticks: 0 };
  let backlog = 0;
  for (;;) {
    const tick = await scanForOrphans(ctx, "cli");
    totals.ticks++;
    totals.found += tick.found;
    totals.enqueued += tick.enqueued;
    totals.alreadyQueued += tick.alreadyQueued;
    totals.escalatedByBackstop += tick.escalatedByBackstop;
    totals.suspenseToppedUp += tick.suspenseToppedUp;
    totals.obligationErrors += tick.obligationErrors;
    // Wait for the jobs to end, or (the cap held orphans back) for room for the next tick.
    const enough = tick.backlogFull ? ctx.settings.HEALING_MAX_BACKLOG / 2 : 0;
    while ((backlog = await retriggerBacklog(ctx.queues)) > enough && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, options.pollMs ?? 200));
    }
    if (Date.now() >= deadline || (!tick.backlogFull && backlog === 0)) break;
  }
  const outcome = await countOutcomes(ctx, since, Math.max(0, deadline - Date.now()));
  const escalated = Math.max(0, outcome.escalated - totals.escalatedByBackstop);
  return {
    found: totals.found,
    enqueued: totals.enqueued,
    alreadyQueued: totals.alreadyQueued,
    dispersed: outcome.dispersed,
    escalated,
    skipped: backlog === 0 ? Math.max(0, totals.enqueued - outcome.dispersed - escalated) : 0,
    escalatedByBackstop: totals.escalatedByBackstop,
    suspenseToppedUp: totals.suspenseToppedUp,
    obligationErrors: totals.obligationErrors,
    unfinished: backlog,
    ticks: totals.ticks,
    durationMs: Math.round(performance.now() - started),
  };
}

/**
 * Dispersals and escalations since the scan began. The escalation of a final failure runs in the
 * failed-event handler, maybe in another process, after its job left the backlog: give it a moment.
 */
async function countOutcomes(ctx: PipelineContext, since: string, waitMs: number): Promise<{ dispersed: number; escalated: number }> {
  const deadline = Date.now() + Math.min(waitMs, 10_000);
  for (;;) {
    const [row] = await ctx.database.db.execute<{ dispersed: number; escalated: number; pending: number }>(sql`
      select count(*) filter (where h.status = 'resolved' and h.resolved_at >= ${since}::timestamptz)::int as dispersed,
             count(*) filter (where h.status = 'escalated' and h.escalated_at >= ${since}::timestamptz)::int as escalated,
             count(*) filter (where h.status in ('retrying', 'requeued') and h.attempt_count >= ${ctx.settings.HEALING_ATTEMPTS}
                                and h.last_attempt_at >= ${since}::timestamptz)::int as pending
        from dispersal_healing_attempts h
       where h.updated_at >= ${since}::timestamptz or h.resolved_at >= ${since}::timestamptz or h.escalated_at >= ${since}::timestamptz`);
    if (row!.pending === 0 || Date.now() >= deadline) return { dispersed: row!.dispersed, escalated: row!.escalated };
    await new Promise((r) => setTimeout(r, 100));
  }
}
