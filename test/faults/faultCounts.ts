// What each fault file found, appended to test-artifacts/faults/<file>.json and added up by
// summary.ts into the suite's one closing line.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";

export const ARTIFACTS_DIR = fileURLToPath(new URL("../../test-artifacts/faults/", import.meta.url));

export interface FaultCounts {
  injected: number;
  lost: number;
  doubled: number;
  wrongEscalations: number;
  hostileRejected: number;
  /** Obligations with entries whose Σ entries + fee ≠ settled, or an entry without its posting. */
  partialDispersals: number;
  /** Findings of runReconciliation at the end of the scenario. */
  reconciliationDefects: number;
  /** Failpoints (and stalled-job redeliveries) at which a process was killed or frozen, then recovered from. */
  crashPoints: number;
  /** Random command sequences the lifecycle model ran against the real services. */
  modelRuns: number;
  /** Postgres primaries crashed and replaced by their standby (pg_auto_failover) under load. */
  postgresFailovers: number;
}

export interface FaultRecord extends FaultCounts {
  file: string;
  scenario: string;
  at: string;
}

export const ZERO: FaultCounts = {
  injected: 0,
  lost: 0,
  doubled: 0,
  wrongEscalations: 0,
  hostileRejected: 0,
  partialDispersals: 0,
  reconciliationDefects: 0,
  crashPoints: 0,
  modelRuns: 0,
  postgresFailovers: 0,
};

/** Appends one scenario's counts to the JSON file of the test file that ran it. */
export function recordFaults(testFileUrl: string, scenario: string, counts: Partial<FaultCounts>): void {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const file = basename(fileURLToPath(testFileUrl)).replace(/\.test\.ts$/, "");
  const path = join(ARTIFACTS_DIR, `${file}.json`);
  const records: FaultRecord[] = existsSync(path) ? (JSON.parse(readFileSync(path, "utf8")) as FaultRecord[]) : [];
  records.push({ file, scenario, at: new Date().toISOString(), ...ZERO, ...counts });
  writeFileSync(path, `${JSON.stringify(records, null, 2)}\n`);
}

export function readAllRecords(): FaultRecord[] {
  if (!existsSync(ARTIFACTS_DIR)) return [];
  return readdirSync(ARTIFACTS_DIR)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .flatMap((f) => JSON.parse(readFileSync(join(ARTIFACTS_DIR, f), "utf8")) as FaultRecord[]);
}

export function total(records: readonly FaultCounts[]): FaultCounts {
  const sum = { ...ZERO };
  for (const r of records) for (const key of Object.keys(sum) as Array<keyof FaultCounts>) sum[key] += Number(r[key] ?? 0);
  return sum;
}

export function summaryLine(t: FaultCounts): string {
  return `faults: ${t.injected} injected, ${t.lost} lost, ${t.doubled} doubled, ${t.wrongEscalations} wrong escalations, ${t.hostileRejected} hostile inputs rejected, ${t.crashPoints} crash points, ${t.modelRuns} model runs, ${t.postgresFailovers} postgres failovers`;
}
