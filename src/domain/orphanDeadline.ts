// How old an orphan may get before something is wrong: the next scan finds it, its round uses every
// attempt (the exponential backoff between them), plus a margin for the work itself. Older than
// this and neither dispersed nor escalated means the healing is stuck (alert, reconciliation).

/** Slack for queueing and the dispersal itself on top of the scan interval and the round's backoff. (Default: 5 min) */
export const ORPHAN_DEADLINE_MARGIN_MS = 5 * 60 * 1000;

export interface HealingTimings {
  scanEveryMs: number;
  backoffMs: number;
  attempts: number;
}

/** BullMQ's exponential backoff waits backoff × 2^(n−1) after attempt n: a round waits backoff × (2^(attempts−1) − 1). */
export function roundBackoffMs(timings: Pick<HealingTimings, "backoffMs" | "attempts">): number {
  return timings.backoffMs * (2 ** Math.max(0, timings.attempts - 1) - 1);
}

/** Defaults (15 min scan, 60 s backoff, 3 attempts): 900 + 180 + 300 s = 1,380 s. */
export function orphanDeadlineMs(timings: HealingTimings): number {
  return timings.scanEveryMs + roundBackoffMs(timings) + ORPHAN_DEADLINE_MARGIN_MS;
}
