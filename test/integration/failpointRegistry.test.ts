// The failpoint registry (src/failpoint.ts FAILPOINTS) names exactly the failpoints the code has, so
// that the crash test (test/faults/crashPoints.test.ts) arms every one; the dispersal transaction's
// are in the order of its steps; and a failpoint does nothing unless armed.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it, vi } from "vitest";
import { armFailpoint, failpoint, FailpointError, FAILPOINTS, passFailpoint } from "../../src/failpoint.js";

const SRC = fileURLToPath(new URL("../../src/", import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : []));
}

const FAILPOINT_CALL = /\b(?:failpoint|passFailpoint)\("([^"]+)"\)/g;

/** Every name passed to failpoint("…") or passFailpoint("…") in src, and any list of failpoints besides the registry. */
function namesInCode(): { called: string[]; otherLists: string[] } {
  const called: string[] = [];
  const otherLists: string[] = [];
  for (const file of sourceFiles(SRC)) {
    if (file.endsWith("failpoint.ts")) continue;
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(FAILPOINT_CALL)) called.push(m[1]!);
    for (const m of text.matchAll(/export const ([A-Z_]*FAILPOINTS)\b/g)) otherLists.push(`${file}: ${m[1]}`);
  }
  return { called, otherLists };
}

afterEach(() => {
  for (const name of FAILPOINTS) armFailpoint(name, undefined);
});

describe("failpoints", () => {
  it("registers every failpoint the code calls, and calls every registered one, in one registry", () => {
    const { called, otherLists } = namesInCode();
    const registered = new Set<string>(FAILPOINTS);
    expect(called.filter((name) => !registered.has(name))).toEqual([]);
    expect([...registered].filter((name) => !called.includes(name))).toEqual([]);
    expect(new Set(FAILPOINTS).size).toBe(FAILPOINTS.length);
    expect(otherLists).toEqual([]);
    // @ts-expect-error: a name not in the registry does not type-check (and, unarmed, does nothing)
    failpoint("dispersal.after-nothing");
  });

  it("names the dispersal transaction's steps in the order it takes them", () => {
    // disperseBatch (db/) runs the steps up to its last statement; the jobs layer commits and completes.
    const path = ["db/dispersalBatch.ts", "jobs/dispersalBatches.ts"].map((f) => readFileSync(join(SRC, f), "utf8")).join("\n");
    const inOrder = [...path.matchAll(FAILPOINT_CALL)].map((m) => m[1]!).filter((name) => name.startsWith("dispersal."));
    expect(inOrder).toEqual(FAILPOINTS.filter((name) => name.startsWith("dispersal.")));
  });

  it("refuses to arm a name that is not registered (it would never fire)", async () => {
    vi.resetModules();
    process.env.DISPERSAL_FAILPOINTS = "batch.after-commit=kill";
    try {
      await expect(import("../../src/failpoint.js")).rejects.toThrow(/no failpoint "batch.after-commit"/);
    } finally {
      delete process.env.DISPERSAL_FAILPOINTS;
      vi.resetModules();
    }
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
