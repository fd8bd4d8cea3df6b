// Upserts the scan and reconciliation schedules. Every process does it at start; BullMQ keeps one
// schedule per scheduler id however many processes upsert it.
import { JOB, SCHEDULER } from "./names.js";
import type { Queues } from "./queues.js";

export interface ScheduleSettings {
  HEALING_SCAN_EVERY_MS: number;
  RECONCILIATION_CRON: string;
}

export async function upsertSchedulers(queues: Queues, settings: ScheduleSettings): Promise<void> {
  await queues.healing.upsertJobScheduler(
    SCHEDULER.scan,
    { every: settings.HEALING_SCAN_EVERY_MS },
    { name: JOB.scan, data: { requestedBy: "scheduler" }, opts: { removeOnComplete: { count: 200 }, removeOnFail: { count: 200 } } },
  );
  await queues.reconciliation.upsertJobScheduler(
    SCHEDULER.reconciliation,
    { pattern: settings.RECONCILIATION_CRON, tz: "UTC" },
    { name: JOB.reconcile, data: { requestedBy: "scheduler" }, opts: { removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } } },
  );
}
