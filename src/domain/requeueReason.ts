// Every requeue carries a reason (DESIGN.md §4): why the operator believes a new round will succeed.
import { z } from "zod";

export const MAX_REASON_LENGTH = 500;

/** Bull Board's retry button cannot ask for one: its requeues record this. */
export const BULL_BOARD_REASON = "retried from Bull Board";

export const requeueReasonSchema = z
  .string({ error: "a reason is required" })
  .trim()
  .min(1, { error: "a reason is required (why will a new round succeed?)" })
  .max(MAX_REASON_LENGTH, { error: `a reason is at most ${MAX_REASON_LENGTH} characters` });
