import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { idSchema, normaliseId } from "../../src/domain/ids.js";

describe("ids as Postgres's uuid holds them", () => {
  it("accepts ids whatever their version and variant nibbles, and lower-cases them", () => {
    for (const id of [
      "30000000-0000-0000-0000-000000000001", // version 0, variant 0: legal for Postgres, not RFC 4122
      "00000000-0000-0000-0000-000000000000",
      "ffffffff-ffff-ffff-ffff-ffffffffffff",
      "123e4567-e89b-12d3-a456-426614174000",
      "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    ]) {
      expect(idSchema.parse(id)).toBe(id);
      expect(normaliseId(id)).toBe(id);
    }
    expect(idSchema.parse("3000000A-0000-0000-0000-00000000000B")).toBe("3000000a-0000-0000-0000-00000000000b");
    expect(normaliseId("ABCDEF01-2345-6789-ABCD-EF0123456789")).toBe("abcdef01-2345-6789-abcd-ef0123456789");
  });

  it("accepts every 8-4-4-4-12 hexadecimal string in any case (property)", () => {
    const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-fA-F]{${n}}$`));
    fc.assert(
      fc.property(fc.tuple(hex(8), hex(4), hex(4), hex(4), hex(12)), (parts) => {
        const id = parts.join("-");
        expect(idSchema.parse(id)).toBe(id.toLowerCase());
        expect(normaliseId(id)).toBe(id.toLowerCase());
      }),
      { numRuns: 500 },
    );
  });

  it("refuses everything else with a message naming the expected form", () => {
    const bad: unknown[] = [
      "",
      "not-a-uuid",
      "30000000000000000000000000000001", // Postgres accepts it without hyphens; ids are written with them
      "{30000000-0000-0000-0000-000000000001}",
      "30000000-0000-0000-0000-000000000001 ",
      " 30000000-0000-0000-0000-000000000001",
      "30000000-0000-0000-0000-00000000000g",
      "30000000-0000-0000-0000-0000000000011",
      "30000000-0000-0000-0000-000000000001\u0000",
      "30000000-0000-0000-0000-000000000001\n",
      "30000000-0000-0000-0000-000000000001'; drop table obligations; --",
      null,
      undefined,
      42,
      ["30000000-0000-0000-0000-000000000001"],
      { id: "30000000-0000-0000-0000-000000000001" },
    ];
    for (const value of bad) {
      expect(normaliseId(value)).toBeUndefined();
      const result = idSchema.safeParse(value);
      expect(result.success).toBe(false);
      expect(result.error!.issues[0]!.message).toMatch(/must be a UUID \(8-4-4-4-12 hexadecimal\)/);
    }
  });
});
