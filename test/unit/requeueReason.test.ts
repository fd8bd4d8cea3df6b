import { describe, expect, it } from "vitest";
import { BULL_BOARD_REASON, InvalidRequeueReasonError, MIN_VISIBLE_REASON_CHARACTERS, requeueReasonSchema, visibleReason } from "../../src/domain/requeueReason.js";

// Zero-width space, joiner and non-joiner, word joiner, BOM, soft hyphen, bidi marks, embeddings,
// overrides and isolates: all Unicode category Cf.
const FORMAT = ["\u200B", "\u200C", "\u200D", "\u2060", "\uFEFF", "\u00AD", "\u200E", "\u200F", "\u202A", "\u202B", "\u202C", "\u202D", "\u202E", "\u2066", "\u2067", "\u2068", "\u2069"];
const CONTROL = ["\u0000", "\u0007", "\u001B", "\u007F", "\u0085", "\t", "\n", "\r"];
const SPACE = [" ", "\u00A0", "\u2003", "\u3000"];

describe("a requeue reason is visible text", () => {
  it("refuses reasons made only of format, control and space characters, whatever the mix", () => {
    const invisible = [...FORMAT, ...CONTROL, ...SPACE];
    for (let length = 1; length <= 40; length++) {
      const reason = Array.from({ length }, (_, i) => invisible[(i * 7 + length) % invisible.length]).join("");
      expect(() => visibleReason(reason), JSON.stringify(reason)).toThrow(InvalidRequeueReasonError);
    }
  });

  it(`refuses fewer than ${MIN_VISIBLE_REASON_CHARACTERS} letters, digits or punctuation, however padded`, () => {
    for (const reason of ["fixed", "a b c d e f g h i", `ok${"\u200B".repeat(50)}`, `\u202Efix\u2066ed\u2069 it`, "🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉"]) {
      expect(() => visibleReason(reason), JSON.stringify(reason)).toThrow(/at least 10 visible characters/);
    }
  });

  it("accepts ten visible characters in any script and stores the reason without its invisible characters", () => {
    expect(visibleReason("positions!")).toBe("positions!");
    expect(visibleReason("Positionen korrigiert")).toBe("Positionen korrigiert");
    expect(visibleReason("持分を修正しました。確認済み")).toBe("持分を修正しました。確認済み");
    expect(visibleReason(`  lender\u200B positions\u202E fixed\n(ticket 42)\t`)).toBe("lender positions fixed (ticket 42)");
    expect(visibleReason(BULL_BOARD_REASON)).toBe(BULL_BOARD_REASON);
  });

  it("is the rule of the schema every edge parses with", () => {
    expect(requeueReasonSchema.safeParse("\u200B".repeat(20)).success).toBe(false);
    expect(requeueReasonSchema.safeParse(42).success).toBe(false);
    expect(requeueReasonSchema.safeParse("x".repeat(501)).success).toBe(false);
    expect(requeueReasonSchema.parse("\u2066positions fixed\u2069")).toBe("positions fixed");
  });
});
