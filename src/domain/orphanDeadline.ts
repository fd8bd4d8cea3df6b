// How long an orphan may stay undispersed before reconciliation reports it (DESIGN.md §6): the scan
// must have seen it, its round must have had every retry, plus a margin for a backlog. Escalated
// obligations are not orphans for this purpose: a human has them.

/** Total delay BullMQ's exponential backoff puts between a round's attempts: delay × (1 + 2 + … + 2^(attempts−2)). */
export function roundBackoffMs(attempts: number, backoffMs: number): number {
  if (!Number.isInteger(attempts) || attempts < 1) throw new RangeError(`attempts must be a positive integer, got ${attempts}`);
  if (!(backoffMs >= 0)) throw new RangeError(`backoff must be >= 0 ms, got ${backoffMs}`);
  return backoffMs * (2 ** (attempts - 1) - 1);
}

export interface OrphanDeadlineSettings {
  /** HEALING_SCAN_EVERY_MS */
  scanEveryMs: number;
  /** HEALING_ATTEMPTS */
  attempts: number;
  /** HEALING_BACKOFF_MS */
  backoffMs: number;
  /** ORPHAN_DEADLINE_MARGIN_MS */
  marginMs: number;
}

/** Scan interval + the round's total backoff + margin. With the defaults: 15 min + 3 min + 15 min = 33 min. */
export function orphanDeadlineMs(settings: OrphanDeadlineSettings): number {
  if (!(settings.scanEveryMs >= 0) || !(settings.marginMs >= 0)) throw new RangeError("scan interval and margin must be >= 0 ms");
  return settings.scanEveryMs + roundBackoffMs(settings.attempts, settings.backoffMs) + settings.marginMs;
}
