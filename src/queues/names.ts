// Queue and job names (DESIGN.md §4, a contract) and the retrigger job's options.
import type { JobsOptions } from "bullmq";

export const QUEUE = {
  healing: "dispersal-healing",
  retrigger: "dispersal-retrigger",
  reconciliation: "dispersal-reconciliation",
} as const;

export const SCHEDULER = {
  scan: "dispersal-healing-scan",
  reconciliation: "dispersal-reconciliation-daily",
  /** The weekly full sweep: the same processor with scope full (jobs/reconcile.ts). */
  fullReconciliation: "dispersal-reconciliation-weekly-full",
} as const;

export const JOB = {
  scan: "dispersal-healing-scan",
  retrigger: "retrigger-dispersal",
  reconcile: "daily-reconciliation",
  reconcileFull: "weekly-full-reconciliation",
} as const;

/** A reconciliation job's data: who asked, and its scope (absent: incremental, as jobs of before the weekly sweep). */
export interface ReconcileJobData {
  requestedBy?: string;
  scope?: "incremental" | "full";
}

/** Only the obligation: who a round acts for is read from Postgres (db/healing.ts authorizeDispersalRounds). */
export interface RetriggerJobData {
  obligationId: string;
}

/**
 * attempts 3 with exponential backoff; one live job per obligation through deduplication (released
 * when the job completes or fails, so a finished job never blocks a later retrigger). Failed jobs
 * are kept for Bull Board and requeue; completed ones are trimmed.
 */
export function retriggerJobOptions(obligationId: string, settings: { attempts: number; backoffMs: number }): JobsOptions {
  return {
    // Readable in Bull Board, unique per job; a deduplicated add returns the live job's id instead.
    jobId: `${obligationId}.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`,
    attempts: settings.attempts,
    backoff: { type: "exponential", delay: settings.backoffMs },
    deduplication: { id: obligationId },
    removeOnComplete: { count: 1000, age: 24 * 3600 },
    removeOnFail: { count: 50_000, age: 30 * 24 * 3600 },
  };
}
