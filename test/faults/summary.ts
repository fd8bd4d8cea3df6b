// Global setup of the fault suite: clears the previous run's counts; at the end adds up what every
// fault file recorded, prints the one summary line, and fails the run if anything was lost,
// doubled or wrongly escalated.
import { rmSync } from "node:fs";
import { ARTIFACTS_DIR, readAllRecords, summaryLine, total } from "./faultCounts.js";

export function setup(): void {
  rmSync(ARTIFACTS_DIR, { recursive: true, force: true });
}

export function teardown(): void {
  const records = readAllRecords();
  const t = total(records);
  process.stdout.write(`\n${summaryLine(t)}\n`);
  const broken = t.lost + t.doubled + t.wrongEscalations + t.partialDispersals + t.reconciliationDefects;
  if (broken > 0 || records.length === 0) {
    process.exitCode = 1;
    throw new Error(
      records.length === 0
        ? "fault suite: no file recorded any counts"
        : `fault suite: ${t.lost} lost, ${t.doubled} doubled, ${t.wrongEscalations} wrong escalations, ${t.partialDispersals} partial dispersals, ${t.reconciliationDefects} reconciliation defects`,
    );
  }
}
