import { describe, expect, it } from "vitest";
import { ORPHAN_DEADLINE_MARGIN_MS, orphanDeadlineMs, roundBackoffMs } from "../../src/domain/orphanDeadline.js";

describe("the orphan deadline", () => {
  it("is the scan interval + the round's exponential backoff + the margin (1,380 s with the defaults)", () => {
    expect(roundBackoffMs({ backoffMs: 60_000, attempts: 3 })).toBe(60_000 + 120_000);
    expect(orphanDeadlineMs({ scanEveryMs: 900_000, backoffMs: 60_000, attempts: 3 })).toBe(1_380_000);
  });

  it("has no backoff with one attempt and doubles it with every further attempt", () => {
    expect(roundBackoffMs({ backoffMs: 1000, attempts: 1 })).toBe(0);
    expect(roundBackoffMs({ backoffMs: 1000, attempts: 5 })).toBe(1000 + 2000 + 4000 + 8000);
    expect(orphanDeadlineMs({ scanEveryMs: 60_000, backoffMs: 1000, attempts: 1 })).toBe(60_000 + ORPHAN_DEADLINE_MARGIN_MS);
  });
});
