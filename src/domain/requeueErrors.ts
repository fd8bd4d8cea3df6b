// The refusals of the requeue path (DESIGN.md §4 manual requeue, four eyes) and of a retrigger job
// that has no round to run. Callers branch on the class or its stable `code`.
import { DomainError } from "./errors.js";

export class RequeuePendingError extends DomainError {
  readonly code = "REQUEUE_PENDING";
  readonly retryable = false;
  constructor(readonly obligationId: string, readonly requestedBy: string) {
    super(`obligation ${obligationId} already has a requeue request by ${requestedBy} waiting for approval`);
  }
}

export class NoPendingRequeueError extends DomainError {
  readonly code = "NO_PENDING_REQUEUE";
  readonly retryable = false;
  constructor(readonly obligationId: string) {
    super(`obligation ${obligationId} has no requeue request waiting for approval`);
  }
}

/** Four eyes: a request left waiting longer than REQUEUE_APPROVAL_TTL is no longer approved; ask anew. */
export class RequeueExpiredError extends DomainError {
  readonly code = "REQUEUE_EXPIRED";
  readonly retryable = false;
  constructor(readonly obligationId: string, readonly requestedBy: string, readonly expiredAt: string) {
    super(`the requeue request by ${requestedBy} for obligation ${obligationId} expired at ${expiredAt} without approval; ask for a new one`);
  }
}

/** Four eyes: the operator who asked for a requeue cannot be the one who approves it. */
export class SelfApprovalError extends DomainError {
  readonly code = "SELF_APPROVAL";
  readonly retryable = false;
  constructor(readonly obligationId: string, readonly operator: string) {
    super(`${operator} asked for this requeue; a different operator must approve it`);
  }
}

/**
 * A retrigger job for an obligation whose round ended in escalation, with no requeue carried out
 * since: nobody asked for a new round, so the job must not move money (a job added or edited by
 * hand, a stale one, or a listener that raced the escalation).
 */
export class EscalatedWithoutRequeueError extends DomainError {
  readonly code = "ESCALATED_WITHOUT_REQUEUE";
  readonly retryable = false;
  constructor(readonly obligationId: string) {
    super(`obligation ${obligationId} is escalated and no requeue of it has been carried out: the job does nothing`);
  }
}

/** A requeue by filter names the count the operator confirmed; the filter now matches another number. */
export class EscalationCountMismatchError extends DomainError {
  readonly code = "COUNT_MISMATCH";
  readonly retryable = false;
  constructor(readonly expectedCount: number, readonly actualCount: number) {
    super(`the filter matches ${actualCount} escalation${actualCount === 1 ? "" : "s"}, not the ${expectedCount} expected: nothing was requeued; check the selection again`);
  }
}

export class SelectionTooLargeError extends DomainError {
  readonly code = "SELECTION_TOO_LARGE";
  readonly retryable = false;
  constructor(readonly limit: number) {
    super(`the filter matches more than ${limit} escalations: narrow it (mortgage, error, escalated before)`);
  }
}
