// The ORIGINAL system's orphan scan, kept here only to measure against: load the id of every settled
// obligation, then for each one ask for its dispersal entries and for its healing-attempts row, and
// enqueue one job per orphan found. Its cost grows with the history, so it is run over an evenly
// spaced sample of the ids and extrapolated to all of them (the output says so).
import type { Database } from "../src/db/client.js";
import { JOB, retriggerJobOptions } from "../src/queues/names.js";
import type { Queues } from "../src/queues/queues.js";
import { withMemoryPeak, type MemoryPeak } from "./measure.js";

export interface OriginalScanRun {
  settled: number;
  loadIdsMs: number;
  sample: number;
  sampleMs: number;
  orphansInSample: number;
  /** loadIdsMs + sampleMs × settled / sample. */
  extrapolatedMs: number;
  memory: MemoryPeak;
}

export async function runOriginalScan(database: Database, queues: Queues, options: { sample: number; backoffMs: number }): Promise<OriginalScanRun> {
  const { sql } = database;
  const { value, peak } = await withMemoryPeak(async () => {
    const loadStarted = performance.now();
    const ids = (await sql<{ id: string }[]>`select id from obligations where status = 'settled'`).map((r) => r.id);
    const loadIdsMs = performance.now() - loadStarted;

    const sample = Math.min(options.sample, ids.length);
    const step = ids.length / sample;
    let orphansInSample = 0;
    const sampleStarted = performance.now();
    for (let i = 0; i < sample; i++) {
      const obligationId = ids[Math.floor(i * step)]!;
      const entries = await sql`select id, lender_id, amount from dispersal_entries where obligation_id = ${obligationId}::uuid`;
      const [healing] = await sql<{ status: string; attempt_count: number }[]>`
        select status, attempt_count from dispersal_healing_attempts where obligation_id = ${obligationId}::uuid`;
      if (entries.length === 0 && healing?.status !== "escalated") {
        orphansInSample++;
        await queues.retrigger.add(JOB.retrigger, { obligationId }, retriggerJobOptions(obligationId, { attempts: 3, backoffMs: options.backoffMs }));
      }
    }
    const sampleMs = performance.now() - sampleStarted;
    return { settled: ids.length, loadIdsMs, sample, sampleMs, orphansInSample, extrapolatedMs: loadIdsMs + (sampleMs * ids.length) / sample };
  });
  return { ...value, memory: peak };
}
