// Processor of the healing scan: page through orphans (keyset), enqueue one retrigger job each with
// addBulk, and escalate rounds whose final failure was never escalated (the backstop).
// Flow control: a tick enqueues at most what fits under HEALING_MAX_BACKLOG. Where it stops, it
// leaves a cursor in Redis and the next tick (a top-up, asked for by the workers as the backlog
// drains: requestTopUpWhenDrained) goes on from there, wrapping round the id space, until one tick
// has gone all the way round. So a tick costs what it can enqueue, not the size of the disaster,
// and orphans already queued are not read and offered again on every top-up.
// The backstop also tops up the SUSPENSE of escalations whose settled amount grew (cash posted by
// other systems). One obligation's error is logged and counted, and the scan goes on; an outage of
// Postgres stops it (every obligation would fail the same way; the next scan starts again).
import { failpoint, passFailpoint } from "../failpoint.js";
import type { Job } from "bullmq";
import { isOutage } from "../db/client.js";
import { escalateToSuspense, findOrphanedObligations, findSuspenseShortfalls, topUpSuspense, type OrphanRow } from "../db/healing.js";
import { JOB } from "../queues/names.js";
import { addRetriggers, liveRetriggerJobs, retriggerBacklog } from "../queues/retriggerJobs.js";
import { acquireScanLock, readScanCursor, writeScanCursor, type ScanLock } from "../queues/scanState.js";
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
  /** True when the tick stopped at HEALING_MAX_BACKLOG: orphans are left for the top-up. */
  backlogFull: boolean;
  /** Retrigger jobs of the orphans found (enqueued + alreadyQueued). */
  jobs: number;
  durationMs: number;
}

/** Obligation ids are compared as Postgres orders uuids: lower-case hex, byte by byte. */
const upTo = (bound: string) => (row: OrphanRow) => row.obligationId <= bound;
/** A cursor before every id: the ring restarts at the beginning but is not complete. */
const NIL_UUID = "00000000-0000-0000-0000-000000000000";

export async function scanForOrphans(ctx: PipelineContext, requestedBy = "scan"): Promise<ScanSummary> {
  const started = performance.now();
  const summary: ScanSummary = {
    found: 0, enqueued: 0, alreadyQueued: 0, escalatedByBackstop: 0, awaitingFinalFailure: 0, suspenseToppedUp: 0, obligationErrors: 0, backlogFull: false, jobs: 0, durationMs: 0,
  };
  const lock = await acquireScanLock(ctx.queues);
  try {
    await scanTick(ctx, summary, lock);
    await topUpShortfalls(ctx, summary);
  } finally {
    await lock.release().catch(() => {});
  }
  summary.jobs = summary.enqueued + summary.alreadyQueued;
  summary.durationMs = Math.round(performance.now() - started);
  ctx.log.info({ ...summary, requestedBy }, summary.obligationErrors > 0 ? "healing scan finished with obligation errors" : "healing scan finished");
  return summary;
}

async function scanTick(ctx: PipelineContext, summary: ScanSummary, lock: ScanLock): Promise<void> {
  const { settings, queues } = ctx;
  const pageSize = settings.HEALING_SCAN_PAGE_SIZE;
  let room = settings.HEALING_MAX_BACKLOG - (await retriggerBacklog(queues));
  if (room <= 0) {
    summary.backlogFull = true;
    return;
  }
  // The ring: from the cursor to the last id, then from the first id back to the cursor.
  const start = await readScanCursor(queues);
  let wrapped = start === null;
  const fetchPage = (after: string | null) => findOrphanedObligations(ctx.database.db, { after, limit: pageSize });
  let pageAfter = start;
  let next = fetchPage(start);
  for (;;) {
    const page = await next;
    const rows = wrapped && start !== null ? page.filter(upTo(start)) : page;
    const legEnds = page.length < pageSize || rows.length < page.length;
    // Read the next page while this one is written to Redis.
    const nextAfter = legEnds ? null : rows[rows.length - 1]!.obligationId;
    next = legEnds && wrapped ? Promise.resolve([]) : fetchPage(nextAfter);
    next.catch(() => {}); // awaited in the next round, or abandoned when this one stops at the cap

    const stoppedAt = await offerPage(ctx, rows, pageAfter, room, summary);
    pageAfter = nextAfter;
    await lock.extend();
    room -= stoppedAt.added;
    if (stoppedAt.lastOffered !== undefined) {
      summary.backlogFull = true;
      await writeScanCursor(queues, stoppedAt.lastOffered);
      failpoint("scan.after-cursor");
      return;
    }
    if (legEnds) {
      if (wrapped) break;
      wrapped = true;
    }
  }
  await writeScanCursor(queues, null); // all the way round: nothing left that the cap held back
}

/**
 * Escalates the page's exhausted rounds that have no live job (the backstop) and enqueues the rest,
 * in id order, as long as they fit in `room`: one Redis round trip for the live jobs of the page's
 * exhausted rounds (usually none), one addBulk for the rest (BullMQ's deduplication keeps a live
 * job and costs no room; its room is offered to the next orphans). When the room runs out, says
 * the last obligation offered: the next tick starts after it.
 */
async function offerPage(
  ctx: PipelineContext,
  rows: OrphanRow[],
  pageAfter: string | null,
  room: number,
  summary: ScanSummary,
): Promise<{ added: number; lastOffered?: string }> {
  const attempts = ctx.settings.HEALING_ATTEMPTS;
  const live = await liveRetriggerJobs(ctx.queues, rows.filter((r) => r.attemptCount >= attempts).map((r) => r.obligationId));
  let added = 0;
  for (let i = 0; i < rows.length; ) {
    const fresh: string[] = [];
    let j = i;
    for (; j < rows.length; j++) {
      if (rows[j]!.attemptCount >= attempts) continue;
      if (fresh.length === room - added) break;
      fresh.push(rows[j]!.obligationId);
    }
    if (j === i) return { added, lastOffered: i > 0 ? rows[i - 1]!.obligationId : pageAfter ?? NIL_UUID };
    summary.found += j - i;
    for (const orphan of rows.slice(i, j)) {
      if (orphan.attemptCount < attempts) continue;
      if (live.has(orphan.obligationId)) summary.awaitingFinalFailure++;
      else await escalateByBackstop(ctx, orphan, summary);
    }
    failpoint("scan.before-enqueue");
    for (const job of await addRetriggers(ctx.queues, ctx.settings, fresh)) {
      if (job.added) {
        added++;
        summary.enqueued++;
      } else summary.alreadyQueued++;
    }
    failpoint("scan.after-enqueue");
    i = j;
  }
  return { added };
}

async function escalateByBackstop(ctx: PipelineContext, orphan: OrphanRow, summary: ScanSummary): Promise<void> {
  const outcome = await isolated(ctx, summary, orphan.obligationId, "backstop escalation", () =>
    ctx.database.db.transaction((tx) =>
      escalateToSuspense(tx, orphan.obligationId, {
        actor: "dispersal-healing-backstop",
        reason: `round used all ${orphan.attemptCount} attempts and its final failure was never escalated`,
        attemptCount: orphan.attemptCount,
      }).then(passFailpoint("backstop.before-commit")),
    ),
  );
  failpoint("backstop.after-commit");
  if (outcome === "escalated") summary.escalatedByBackstop++;
}

/** Escalations short of their settled amount, topped up one transaction each; bounded per scan (the rest next time). */
async function topUpShortfalls(ctx: PipelineContext, summary: ScanSummary): Promise<void> {
  const shortfalls = await findSuspenseShortfalls(ctx.database.db, { limit: ctx.settings.HEALING_SCAN_PAGE_SIZE });
  for (const obligationId of shortfalls) {
    const result = await isolated(ctx, summary, obligationId, "suspense top-up", () =>
      ctx.database.db.transaction((tx) =>
        topUpSuspense(tx, obligationId, { actor: "dispersal-healing-backstop", reason: "cash received after escalation: SUSPENSE topped up to the settled amount" }).then(passFailpoint("topup.before-commit")),
      ),
    );
    failpoint("topup.after-commit");
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
  return async function processScan(job: Job<{ requestedBy?: string }>): Promise<ScanSummary> {
    return scanForOrphans(ctx, typeof job.data?.requestedBy === "string" ? job.data.requestedBy.slice(0, 200) : "scan");
  };
}

/**
 * Called by the workers every so often: when a tick stopped at the cap (its cursor is in Redis) and
 * the backlog has drained to half the cap, ask for the next tick at once rather than at the next
 * scheduled scan. One such request is live at a time, whichever process asks.
 */
export async function requestTopUpWhenDrained(ctx: PipelineContext): Promise<boolean> {
  if ((await readScanCursor(ctx.queues)) === null) return false;
  if ((await retriggerBacklog(ctx.queues)) > ctx.settings.HEALING_MAX_BACKLOG / 2) return false;
  await ctx.queues.healing.add(JOB.scan, { requestedBy: "top-up" }, {
    deduplication: { id: "top-up" },
    removeOnComplete: { count: 200 },
    removeOnFail: { count: 200 },
  });
  return true;
}
