// §4 Escalation storm: orphans that can never be dispersed (every position has 0 units), all at once,
// with a fast backoff: 3 attempts each, then exactly one SUSPENSE_ESCALATED posting each.
import { scanForOrphans } from "../src/jobs/scan.js";
import { benchQueuePrefix, createBenchDatabase } from "./benchResources.js";
import { openBenchPipeline, startWorkerProcesses } from "./benchPipeline.js";
import { figure, sleep, waitUntil, withMachineLoad, type Figure } from "./measure.js";
import { ledgerDefects, seedOrphans } from "./benchData.js";

export interface EscalationStormResult {
  orphans: number;
  processes: number;
  backoffMs: number;
  seconds: Figure;
  escalationsPerSecond: Figure;
  machineBusy: Figure;
  /** SUSPENSE_ESCALATED postings per run (each must equal `orphans`). */
  suspensePostings: number[];
  exactlyOnce: boolean;
  ledgerDefects: Record<string, number>;
}

export async function runEscalationStorm(options: {
  orphans: number;
  runs: number;
  processes: number;
  backoffMs: number;
  workerConcurrency: number;
  poolSize: number;
  say(line: string): void;
}): Promise<EscalationStormResult> {
  const database = await createBenchDatabase("storm", { max: 4 });
  const pipeline = openBenchPipeline(database, benchQueuePrefix("storm"), { HEALING_BACKOFF_MS: String(options.backoffMs) });
  const { sql } = database;
  const counts = async () => {
    const [row] = await sql<{ escalated: number; postings: number; audits: number }[]>`
      select (select count(*)::int from dispersal_healing_attempts where status = 'escalated') as escalated,
             (select count(*)::int from cash_journal_entries where entry_type = 'SUSPENSE_ESCALATED') as postings,
             (select count(*)::int from audit_log where action = 'dispersal.self_healing_escalated') as audits`;
    return row!;
  };
  const escalatedSince = async (sinceMs: number) => {
    const [row] = await sql<{ count: number; last: number | null }[]>`
      select count(*)::int as count, extract(epoch from max(escalated_at))::float8 * 1000 as last
        from dispersal_healing_attempts
       where status = 'escalated' and escalated_at >= to_timestamp(${sinceMs / 1000})`;
    return row!;
  };
  const workers = await startWorkerProcesses(pipeline, options.processes, {
    HEALING_BACKOFF_MS: String(options.backoffMs),
    WORKER_CONCURRENCY: String(options.workerConcurrency),
    DATABASE_POOL_SIZE: String(options.poolSize),
  });
  const durations: number[] = [];
  const busy: number[] = [];
  const postings: number[] = [];
  try {
    for (let run = 0; run < options.runs; run++) {
      const before = await counts();
      await seedOrphans(database, { count: options.orphans, unfixable: true });
      const { value: ms, busy: machineBusy } = await withMachineLoad(async () => {
        const [start] = await sql<{ ms: number }[]>`select extract(epoch from clock_timestamp())::float8 * 1000 as ms`;
        const summary = await scanForOrphans(pipeline.ctx, "bench");
        if (summary.enqueued !== options.orphans) throw new Error(`storm scan enqueued ${summary.enqueued} of ${options.orphans}`);
        // Twice a second, counting through the index on open healing rows: a tight poll would steal CPU from the workers.
        await waitUntil(async () => (await escalatedSince(start!.ms)).count >= options.orphans, {
          timeoutMs: 300_000 + options.orphans * 100,
          what: "every unfixable orphan escalated",
          everyMs: 500,
        });
        // By the database's clock, to the last escalation (escalated_at = now() in its transaction).
        return (await escalatedSince(start!.ms)).last! - start!.ms;
      });
      // Give a duplicate escalation (if there were one) the time to show before counting.
      await sleep(1000);
      const after = await counts();
      const posted = after.postings - before.postings;
      postings.push(posted);
      if (posted !== options.orphans || after.audits - before.audits !== options.orphans || after.escalated - before.escalated !== options.orphans) {
        throw new Error(`storm run ${run + 1}: ${posted} SUSPENSE_ESCALATED postings, ${after.audits - before.audits} audit rows for ${options.orphans} orphans`);
      }
      durations.push(ms);
      busy.push(machineBusy);
      options.say(`  storm run ${run + 1}: ${options.orphans} escalated in ${(ms / 1000).toFixed(2)} s; ${posted} SUSPENSE_ESCALATED postings`);
    }
    return {
      orphans: options.orphans,
      processes: options.processes,
      backoffMs: options.backoffMs,
      seconds: figure(durations.map((ms) => ms / 1000), "s", 2),
      escalationsPerSecond: figure(durations.map((ms) => (options.orphans * 1000) / ms), "escalations/s", 0),
      machineBusy: figure(busy, "share", 2),
      suspensePostings: postings,
      exactlyOnce: postings.every((p) => p === options.orphans),
      ledgerDefects: await ledgerDefects(database),
    };
  } finally {
    await workers.stop();
    await pipeline.close();
    await database.drop();
  }
}
