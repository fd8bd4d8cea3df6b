// What a payment may look like at the edges (HTTP intake, CLI): its reference becomes part of a
// ledger idempotency key, so it is a short plain token, never free text; its amount is positive
// integer cents written as digits (JSON numbers lose precision past 2^53).
import { z } from "zod";

/** Letters, digits and . _ : / - only, at most 120 characters: quotes, spaces or semicolons are refused. */
export const paymentReferenceSchema = z
  .string({ error: "must be a string" })
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:/-]{0,119}$/, {
    error: "must be 1–120 characters of letters, digits and . _ : / - (starting with a letter or digit)",
  });

/** Positive integer cents as a string of digits, below bigint's limit. */
export const paymentAmountSchema = z
  .string({ error: "must be a string of digits (integer cents)" })
  .regex(/^[1-9][0-9]{0,17}$/, { error: "must be a positive integer number of cents written as digits, e.g. \"125000\"" })
  .transform((value) => BigInt(value));
