// The failpoint registry (src/failpoint.ts FAILPOINTS) names exactly the failpoints the code has, so
// that the crash test (test/faults/crashPoints.test.ts) arms every one; and a failpoint does nothing
// unless armed.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { armFailpoint, failpoint, FailpointError, FAILPOINTS, passFailpoint } from "../../src/failpoint.js";

const SRC = fileURLToPath(new URL("../../src/", import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : []));
}

/** Every name passed to failpoint("…") or passFailpoint("…") in src, and every name listed in an exported *_FAILPOINTS array. */
function namesInCode(): { called: string[]; listedElsewhere: string[] } {
  const called: string[] = [];
  const listedElsewhere: string[] = [];
  for (const file of sourceFiles(SRC)) {
    if (file.endsWith("failpoint.ts")) continue;
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/\b(?:failpoint|passFailpoint)\("([^"]+)"\)/g)) called.push(m[1]!);
    for (const block of text.matchAll(/export const [A-Z_]*FAILPOINTS = \[([\s\S]*?)\] as const/g)) {
      for (const m of block[1]!.matchAll(/"([^"]+)"/g)) listedElsewhere.push(m[1]!);
    }
  }
  return { called, listedElsewhere };
}

afterEach(() => {
  for (const name of FAILPOINTS) armFailpoint(name, undefined);
});

describe("failpoints", () => {
  it("registers every failpoint the code calls, and calls every registered one", () => {
    const { called, listedElsewhere } = namesInCode();
    const registered = new Set<string>([...FAILPOINTS, ...listedElsewhere]);
    expect(called.filter((name) => !registered.has(name))).toEqual([]);
    expect([...registered].filter((name) => !called.includes(name))).toEqual([]);
    expect(new Set(FAILPOINTS).size).toBe(FAILPOINTS.length);
  });

  it("does nothing unless armed, throws once armed with throw, and is inert again once disarmed", async () => {
    expect(() => failpoint("escalate.after-commit")).not.toThrow();
    armFailpoint("escalate.after-commit", "throw");
    expect(() => failpoint("escalate.before-commit")).not.toThrow();
    expect(() => failpoint("escalate.after-commit")).toThrow(FailpointError);
    await expect(Promise.resolve(7).then(passFailpoint("escalate.after-commit"))).rejects.toMatchObject({ code: "FAILPOINT", failpoint: "escalate.after-commit" });
    armFailpoint("escalate.after-commit", undefined);
    await expect(Promise.resolve(7).then(passFailpoint("escalate.after-commit"))).resolves.toBe(7);
  });
});
