import { describe, expect, it } from "vitest";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { configSchema, loadConfig } from "../../src/config.js";

/** Where operators copy settings from: the deploy artefacts and the runbooks. */
const SOURCES = ["deploy", "docs/operations.md"];

function filesUnder(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path).flatMap((name) => filesUnder(join(path, name)));
}

/** Every `NAME=value` whose NAME is a variable src/config.ts reads, with the file it is written in. */
function settingsNamed(): Array<{ file: string; variable: string; value: string }> {
  const variables = new Set(Object.keys(configSchema.shape));
  return SOURCES.flatMap(filesUnder).flatMap((file) =>
    [...readFileSync(file, "utf8").matchAll(/\b([A-Z][A-Z0-9_]+)=([^\s`"'<>]+)/g)]
      .filter((m) => variables.has(m[1]!))
      // Sentence punctuation after the value is not part of it.
      .map((m) => ({ file, variable: m[1]!, value: m[2]!.replace(/[.,:;)\]]+$/, "") })),
  );
}

describe("settings named in deploy/ and the runbooks", () => {
  it("are values src/config.ts accepts", () => {
    const settings = settingsNamed();
    expect(settings.map((s) => s.variable)).toContain("SETTLEMENT_LISTENER");
    for (const { file, variable, value } of settings) {
      expect(() => loadConfig({ [variable]: value }), `${file}: ${variable}=${value}`).not.toThrow();
    }
  });
});
