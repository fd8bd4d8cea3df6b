// The typed errors of the service. Callers branch on the class (or its stable `code`), never on the message.

export abstract class DomainError extends Error {
  abstract readonly code: string;
  /** Whether trying the same work again later can succeed. */
  abstract readonly retryable: boolean;
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

export class LedgerRuleError extends DomainError {
  readonly code = "LEDGER_RULE";
  readonly retryable = false;
}

export class IdempotencyConflictError extends DomainError {
  readonly code = "IDEMPOTENCY_CONFLICT";
  readonly retryable = false;
  constructor(readonly idempotencyKey: string, detail: string) {
    super(`idempotency key ${idempotencyKey} was already posted with a different payload: ${detail}`);
  }
}

export class InsufficientBalanceError extends DomainError {
  readonly code = "INSUFFICIENT_BALANCE";
  readonly retryable = false;
}

export class ObligationNotFoundError extends DomainError {
  readonly code = "OBLIGATION_NOT_FOUND";
  readonly retryable = false;
  constructor(readonly obligationId: string) {
    super(`obligation ${obligationId} does not exist`);
  }
}

export class ObligationNotSettledError extends DomainError {
  readonly code = "OBLIGATION_NOT_SETTLED";
  readonly retryable = false;
  constructor(readonly obligationId: string, readonly status: string) {
    super(`obligation ${obligationId} is ${status}, not settled: there is no settled cash to disperse`);
  }
}

export class NoActivePositionsError extends DomainError {
  readonly code = "NO_ACTIVE_POSITIONS";
  readonly retryable = true;
  constructor(readonly mortgageId: string) {
    super(`no active positions: mortgage ${mortgageId} has no lender with units > 0`);
  }
}

/** A posting would take an account's totals past what Postgres's bigint holds (DESIGN.md §3 step 7). */
export class AmountOutOfRangeError extends DomainError {
  readonly code = "AMOUNT_OUT_OF_RANGE";
  /** Retryable so that the round uses its attempts and escalates (without the posting), and is listed. */
  readonly retryable = true;
  constructor(detail: string) {
    super(`amount out of range: ${detail} would take an account past the bigint range (9,223,372,036,854,775,807 cents)`);
  }
}

export class NotEscalatedError extends DomainError {
  readonly code = "NOT_ESCALATED";
  readonly retryable = false;
  constructor(readonly obligationId: string, readonly status: string | null) {
    super(`obligation ${obligationId} is not escalated (healing status: ${status ?? "none"}); only escalations can be requeued`);
  }
}

export class InvalidJobDataError extends DomainError {
  readonly code = "INVALID_JOB_DATA";
  readonly retryable = false;
}

/** Postgres or Redis could not be reached or dropped the connection: not the obligation's fault. */
export class InfrastructureError extends Error {
  readonly code = "INFRASTRUCTURE";
  readonly retryable = true;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "InfrastructureError";
  }
}

/** A backing service did not answer in time: the request that needed it changed nothing. The answer names which one (no host). */
export class DependencyUnavailableError extends InfrastructureError {
  constructor(readonly dependency: "redis" | "postgres", message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DependencyUnavailableError";
  }
}

// The payments intake's refusals (db/payments.ts).
export class PaymentReferenceConflictError extends DomainError {
  readonly code = "PAYMENT_REFERENCE_CONFLICT";
  readonly retryable = false;
  constructor(readonly reference: string, detail: string) {
    super(`payment reference ${reference} was already received ${detail}`);
  }
}

export class PaymentNotFoundError extends DomainError {
  readonly code = "PAYMENT_NOT_FOUND";
  readonly retryable = false;
  constructor(readonly obligationId: string, readonly reference: string) {
    super(`no payment with reference ${reference} was received for obligation ${obligationId}`);
  }
}

export class ObligationNotPayableError extends DomainError {
  readonly code = "OBLIGATION_NOT_PAYABLE";
  readonly retryable = false;
  constructor(readonly obligationId: string, readonly status: string) {
    super(`obligation ${obligationId} is ${status}: it takes no more payments`);
  }
}

export class PaymentExceedsOutstandingError extends DomainError {
  readonly code = "PAYMENT_EXCEEDS_OUTSTANDING";
  readonly retryable = false;
  constructor(readonly obligationId: string, readonly amount: bigint, readonly outstanding: bigint) {
    super(`payment of ${amount} cents exceeds the ${outstanding} cents outstanding on obligation ${obligationId}`);
  }
}
