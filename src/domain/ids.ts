// Ids as Postgres's `uuid` type holds them (DESIGN.md §2): any 8-4-4-4-12 hexadecimal value, whatever
// its version and variant nibbles, any case on input, lower case on output. Ids come from other
// systems, so RFC-4122 strictness (zod's z.uuid()) would refuse legal ids.
import { z } from "zod";

const ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The id in lower case, or undefined when the value is not an id Postgres would accept as written. */
export function normaliseId(value: unknown): string | undefined {
  return typeof value === "string" && ID_PATTERN.test(value) ? value.toLowerCase() : undefined;
}

/** zod schema for an id at the edges (job data, HTTP, CLI): validates, then lower-cases. */
export const idSchema = z
  .string({ error: "must be a UUID (8-4-4-4-12 hexadecimal)" })
  .regex(ID_PATTERN, { error: "must be a UUID (8-4-4-4-12 hexadecimal)" })
  .transform((value) => value.toLowerCase());
