// The refusal decision, once: a retrigger job that fails without retry and without escalation (bad
// data, an unknown or unsettled obligation, an escalation nobody requeued) carries this prefix in its
// failedReason; escalation, reconciliation and the metrics read it through isRefusal.
import { UnrecoverableError } from "bullmq";

/** Prefix of failedReason for jobs that fail without retry and without escalation. */
export const UNRECOVERABLE_PREFIX = "unrecoverable:";

/** The error that makes BullMQ fail the job at once, without retry (and the escalation handler leave it). */
export function refuse(reason: string): UnrecoverableError {
  return new UnrecoverableError(`${UNRECOVERABLE_PREFIX} ${reason}`);
}

export function isRefusal(failedReason: string | undefined | null): boolean {
  return typeof failedReason === "string" && failedReason.startsWith(UNRECOVERABLE_PREFIX);
}
