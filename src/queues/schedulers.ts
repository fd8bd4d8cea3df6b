// The scan and reconciliation schedules (the daily incremental run and the weekly full sweep): upserted by every process at start, and kept present
// afterwards. BullMQ keeps one schedule per scheduler id however many processes upsert it; a
// schedule removed by hand (Bull Board, redis-cli, an obliterated queue) would otherwise stay gone
// until some process restarts, and the daily reconciliation or the scan net would silently stop.
import type { Queue } from "bullmq";
import type { Logger } from "../log.js";
import { JOB, SCHEDULER } from "./names.js";
import type { Queues } from "./queues.js";

export interface ScheduleSettings {
  HEALING_SCAN_EVERY_MS: number;
  RECONCILIATION_CRON: string;
  RECONCILIATION_FULL_CRON: string;
}

export type SchedulerId = (typeof SCHEDULER)[keyof typeof SCHEDULER];

export async function upsertSchedulers(queues: Queues, settings: ScheduleSettings): Promise<void> {
  await queues.healing.upsertJobScheduler(
    SCHEDULER.scan,
    { every: settings.HEALING_SCAN_EVERY_MS },
    { name: JOB.scan, data: { requestedBy: "scheduler" }, opts: { removeOnComplete: { count: 200 }, removeOnFail: { count: 200 } } },
  );
  await queues.reconciliation.upsertJobScheduler(
    SCHEDULER.reconciliation,
    { pattern: settings.RECONCILIATION_CRON, tz: "UTC" },
    { name: JOB.reconcile, data: { requestedBy: "scheduler", scope: "incremental" }, opts: { removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } } },
  );
  await queues.reconciliation.upsertJobScheduler(
    SCHEDULER.fullReconciliation,
    { pattern: settings.RECONCILIATION_FULL_CRON, tz: "UTC" },
    { name: JOB.reconcileFull, data: { requestedBy: "scheduler", scope: "full" }, opts: { removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } } },
  );
}

function schedulerQueues(queues: Queues): Array<[SchedulerId, Queue]> {
  return [
    [SCHEDULER.scan, queues.healing],
    [SCHEDULER.reconciliation, queues.reconciliation],
    [SCHEDULER.fullReconciliation, queues.reconciliation],
  ];
}

/** Whether each schedule exists in Redis now (read live: /readyz and /metrics report it). */
export async function schedulesPresent(queues: Queues): Promise<Record<SchedulerId, boolean>> {
  const entries = await Promise.all(schedulerQueues(queues).map(async ([id, queue]) => [id, (await queue.getJobScheduler(id)) !== undefined] as const));
  return Object.fromEntries(entries) as Record<SchedulerId, boolean>;
}

export interface ScheduleKeeper {
  /** One check now: puts back any missing schedule; answers which were missing. */
  check(): Promise<SchedulerId[]>;
  stop(): Promise<void>;
}

/**
 * Upserts the schedules now, then checks every SCHEDULE_CHECK_EVERY_MS and upserts again when one
 * is missing. Only a missing one is upserted: re-upserting a present schedule would move its next run.
 */
export async function keepSchedules(queues: Queues, settings: ScheduleSettings & { SCHEDULE_CHECK_EVERY_MS: number }, log: Logger): Promise<ScheduleKeeper> {
  await upsertSchedulers(queues, settings);
  let running: Promise<unknown> = Promise.resolve();
  const check = async (): Promise<SchedulerId[]> => {
    const present = await schedulesPresent(queues);
    const missing = (Object.keys(present) as SchedulerId[]).filter((id) => !present[id]);
    if (missing.length === 0) return missing;
    log.error({ missing }, "schedule missing from Redis (removed by hand?): putting it back");
    await upsertSchedulers(queues, settings);
    return missing;
  };
  const timer = setInterval(() => {
    running = check().catch((error: Error) => log.warn({ error: error.message }, "schedule check failed; retried at the next period"));
  }, settings.SCHEDULE_CHECK_EVERY_MS);
  timer.unref();
  return {
    check,
    stop: async () => {
      clearInterval(timer);
      await running;
    },
  };
}
