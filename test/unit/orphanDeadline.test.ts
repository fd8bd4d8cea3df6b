import { describe, expect, it } from "vitest";
import { orphanDeadlineMs, roundBackoffMs } from "../../src/domain/orphanDeadline.js";

describe("the orphan deadline", () => {
  it("adds up BullMQ's exponential delays between a round's attempts", () => {
    expect(roundBackoffMs(1, 60_000)).toBe(0);
    expect(roundBackoffMs(2, 60_000)).toBe(60_000);
    expect(roundBackoffMs(3, 60_000)).toBe(180_000); // 60 s + 120 s
    expect(roundBackoffMs(5, 1_000)).toBe(15_000); // 1 + 2 + 4 + 8 s
  });

  it("is the scan interval plus the round's backoff plus the margin: 33 minutes with the defaults", () => {
    expect(orphanDeadlineMs({ scanEveryMs: 900_000, attempts: 3, backoffMs: 60_000, marginMs: 900_000 })).toBe(33 * 60_000);
    expect(orphanDeadlineMs({ scanEveryMs: 0, attempts: 1, backoffMs: 0, marginMs: 0 })).toBe(0);
  });

  it("refuses settings that make no deadline", () => {
    expect(() => roundBackoffMs(0, 1000)).toThrow(RangeError);
    expect(() => roundBackoffMs(2.5, 1000)).toThrow(RangeError);
    expect(() => roundBackoffMs(3, Number.NaN)).toThrow(RangeError);
    expect(() => orphanDeadlineMs({ scanEveryMs: -1, attempts: 3, backoffMs: 1, marginMs: 0 })).toThrow(RangeError);
  });
});
