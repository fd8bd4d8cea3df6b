// How failures become HTTP answers: typed domain errors to 404/409, outages and cancelled reads to 503, malformed
// requests to 4xx, anything else to a generic 500 and a log line. Never a stack trace on the wire.
import type { ErrorRequestHandler, RequestHandler } from "express";
import { isOutage, isStatementCancelled } from "../db/client.js";
import { DependencyUnavailableError, DomainError, NotEscalatedError, ObligationNotFoundError, PaymentExceedsOutstandingError, PaymentNotFoundError } from "../domain/errors.js";
import { EscalationCountMismatchError, NoPendingRequeueError, RequeueExpiredError, SelectionTooLargeError, SelfApprovalError } from "../domain/requeueErrors.js";
import { InvalidRequeueReasonError } from "../domain/requeueReason.js";
import type { Logger } from "../log.js";

export class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly details: Record<string, unknown> = {}) {
    super(message);
    this.name = "HttpError";
  }
}

export interface ErrorAnswer {
  status: number;
  body: { error: string } & Record<string, unknown>;
}

/** The answer for one error; also used per item by the bulk requeue. */
export function answerFor(error: unknown): ErrorAnswer | undefined {
  if (error instanceof HttpError) return { status: error.status, body: { error: error.message, ...error.details } };
  if (error instanceof ObligationNotFoundError || error instanceof PaymentNotFoundError) return { status: 404, body: { error: error.message, code: error.code } };
  if (error instanceof PaymentExceedsOutstandingError) return { status: 422, body: { error: error.message, code: error.code, outstanding: error.outstanding.toString() } };
  if (error instanceof SelfApprovalError) return { status: 403, body: { error: error.message, code: error.code } };
  if (error instanceof NoPendingRequeueError) return { status: 404, body: { error: error.message, code: error.code } };
  if (error instanceof EscalationCountMismatchError) return { status: 409, body: { error: error.message, code: error.code, expectedCount: error.expectedCount, actualCount: error.actualCount } };
  if (error instanceof SelectionTooLargeError) return { status: 422, body: { error: error.message, code: error.code, limit: error.limit } };
  if (error instanceof InvalidRequeueReasonError) return { status: 400, body: { error: error.message, code: error.code } };
  if (error instanceof RequeueExpiredError) return { status: 409, body: { error: error.message, code: error.code, reason: "expired", expiredAt: error.expiredAt } };
  if (error instanceof NotEscalatedError) return { status: 409, body: { error: error.message, code: error.code, status: error.status } };
  if (error instanceof DomainError) return { status: 409, body: { error: error.message, code: error.code } };
  if (error instanceof DependencyUnavailableError) return { status: 503, body: { error: error.message, dependency: error.dependency } };
  if (isStatementCancelled(error)) {
    return { status: 503, body: { error: "Postgres stopped this read: it ran longer than readers may (READER_STATEMENT_TIMEOUT_MS); narrow the search or try again shortly", code: "READ_TIMEOUT" } };
  }
  if (isOutage(error)) return { status: 503, body: { error: "a backing service (Postgres or Redis) is unavailable; try again shortly" } };
  const parserStatus = bodyParserStatus(error);
  if (parserStatus) return { status: parserStatus, body: { error: bodyParserMessage(error, parserStatus) } };
  return undefined;
}

/** body-parser marks its client errors (bad JSON, too large, bad charset) with a 4xx status and expose: true. */
function bodyParserStatus(error: unknown): number | undefined {
  const e = error as { status?: unknown; expose?: unknown };
  if (typeof e?.status === "number" && e.status >= 400 && e.status < 500 && e.expose === true) return e.status;
  return undefined;
}

function bodyParserMessage(error: unknown, status: number): string {
  const type = (error as { type?: unknown }).type;
  if (type === "entity.parse.failed") return "the body is not valid JSON";
  if (status === 413) return "the body is too large";
  return (error as Error).message;
}

export function respondWithErrors(log: Logger): ErrorRequestHandler {
  return (error, req, res, next) => {
    if (res.headersSent) return next(error);
    const answer = answerFor(error);
    if (answer) {
      if (typeof answer.body.retryAfterSeconds === "number") res.setHeader("Retry-After", String(answer.body.retryAfterSeconds));
      if (answer.status === 503) log.warn({ method: req.method, path: req.path, error: (error as Error).message }, "request failed: backing service unavailable");
      res.status(answer.status).json(answer.body);
      return;
    }
    log.error({ method: req.method, path: req.path, error: (error as Error)?.stack ?? String(error) }, "request failed");
    res.status(500).json({ error: "internal error; the details are in the server log" });
  };
}

export function notFound(): RequestHandler {
  return (req, res) => void res.status(404).json({ error: `no route ${req.method} ${req.path}` });
}
