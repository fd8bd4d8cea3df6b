import { describe, expect, it } from "vitest";
import { csvCell, csvLine } from "../../src/dashboard/csv.js";

describe("CSV cells", () => {
  it("quotes cells holding a comma, a quote or a line break, doubling the quotes", () => {
    expect(csvCell("plain")).toBe("plain");
    expect(csvCell("6,676.95")).toBe('"6,676.95"');
    expect(csvCell('say "no"')).toBe('"say ""no"""');
    expect(csvCell("two\nlines")).toBe('"two\nlines"');
    expect(csvCell(null)).toBe("");
  });

  it("defuses cells a spreadsheet would run as a formula", () => {
    for (const start of ["=", "+", "-", "@", "\t", "\r"]) {
      expect(csvCell(`${start}cmd|' /C calc'!A0`).replace(/^"/, "")).toMatch(/^'/);
    }
    expect(csvCell("=1+1")).toBe("'=1+1");
    expect(csvCell('=HYPERLINK("x")')).toBe(`"'=HYPERLINK(""x"")"`);
  });

  it("leaves numbers, negative ones included, as numbers", () => {
    expect(csvCell(-1500)).toBe("-1500");
    expect(csvCell("-15.00")).toBe("-15.00");
    expect(csvCell("-1,234.50")).toBe('"-1,234.50"');
  });

  it("ends a line with CRLF", () => {
    expect(csvLine(["a", 1, "b,c"])).toBe('a,1,"b,c"\r\n');
  });
});
