// Every requeue carries a reason (DESIGN.md §4): why the operator believes a new round will succeed.
// One rule for every path that takes one: it must be text a person can read.
import { z } from "zod";
import { DomainError } from "./errors.js";

export const MAX_REASON_LENGTH = 500;
/** Letters, digits and punctuation a reason needs once invisible characters are gone. */
export const MIN_VISIBLE_REASON_CHARACTERS = 10;

/** Bull Board's "retry all" cannot ask for one: its requeues record this (one job's retry asks, bullBoardRetry.ts). */
export const BULL_BOARD_REASON = "retried from Bull Board";

export class InvalidRequeueReasonError extends DomainError {
  readonly code = "INVALID_REASON";
  readonly retryable = false;
}

// Format characters (zero-width, bidi overrides, BOM) and controls render as nothing, or reorder
// what is around them: a reason of them alone reads as blank in the audit log, one mixed in can
// make the log show other words than were stored.
const FORMAT = /\p{Cf}/gu;
const CONTROL = /\p{Cc}/gu;
const VISIBLE = /[\p{L}\p{N}\p{P}]/gu;

/**
 * The reason as stored: format characters removed, controls (newlines, tabs) made spaces, trimmed.
 * Refused unless at least MIN_VISIBLE_REASON_CHARACTERS letters, digits or punctuation remain.
 */
export function visibleReason(input: string): string {
  const reason = input.replace(FORMAT, "").replace(CONTROL, " ").trim();
  if (reason.length === 0) throw new InvalidRequeueReasonError("a reason is required (why will a new round succeed?)");
  if (reason.length > MAX_REASON_LENGTH) throw new InvalidRequeueReasonError(`a reason is at most ${MAX_REASON_LENGTH} characters`);
  const visible = reason.match(VISIBLE)?.length ?? 0;
  if (visible < MIN_VISIBLE_REASON_CHARACTERS) {
    throw new InvalidRequeueReasonError(
      `a reason needs at least ${MIN_VISIBLE_REASON_CHARACTERS} visible characters (letters, digits, punctuation; invisible and control characters and spaces do not count), this one has ${visible}`,
    );
  }
  return reason;
}

export const requeueReasonSchema = z.string({ error: "a reason is required" }).transform((input, ctx) => {
  try {
    return visibleReason(input);
  } catch (error) {
    if (!(error instanceof InvalidRequeueReasonError)) throw error;
    ctx.addIssue({ code: "custom", message: error.message });
    return z.NEVER;
  }
});
