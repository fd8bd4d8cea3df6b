// What every job processor is handed: the database (and the readers' pool), the queues, the settings and a logger.
import type { Config } from "../config.js";
import type { Database } from "../db/client.js";
import type { Logger } from "../log.js";
import type { Queues } from "../queues/queues.js";

export type PipelineSettings = Pick<
  Config,
  | "CURRENCY"
  | "HEALING_ATTEMPTS"
  | "HEALING_BACKOFF_MS"
  | "HEALING_SCAN_PAGE_SIZE"
  | "HEALING_MAX_BACKLOG"
  | "HEALING_BATCH_SIZE"
  | "HEALING_SCAN_EVERY_MS"
  | "INFRA_RETRY_DELAY_MS"
  | "RECONCILIATION_CRON"
  | "RECONCILIATION_FULL_CRON"
  | "REQUEUE_APPROVALS"
  | "REQUEUE_APPROVAL_TTL"
  | "SEARCHES_PER_USER_PER_MINUTE"
  | "WORKER_CONCURRENCY"
  | "WORKER_LOCK_DURATION_MS"
  | "WORKER_STALLED_INTERVAL_MS"
>;

export interface PipelineContext {
  database: Database;
  /** The readers' own small pool with a statement timeout (search, the ops pages): readers never stall the writers. */
  readers: Database;
  queues: Queues;
  settings: PipelineSettings;
  log: Logger;
}
