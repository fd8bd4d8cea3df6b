// `npm run bench` (full: scan at 100k and 1M, 10,000 orphans), `npm run bench -- --quick` (under two
// minutes), `--huge` (adds the scan at 10M). `--only scan,heal,queue,storm,realtime` runs some sections.
// Prints the tables and writes bench/results.json (every figure, the ratios and the targets).
// Everything runs against its own databases (dispersal_bench_*) and queue prefixes, removed at the end.
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { cleanupAll, cleanupOnSignals } from "./benchResources.js";
import { runEscalationStorm } from "./escalationStorm.js";
import { runHealSection } from "./healBench.js";
import { machine, withMachineLoad } from "./measure.js";
import { runQueueCeiling } from "./queueCeiling.js";
import { renderRealtime, runRealtimeSection, type RealtimeResult } from "./realtimeBench.js";
import { checkTargets, computeRatios, renderTables, type Sections } from "./report.js";
import { runScanSection } from "./scanBench.js";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    huge: { type: "boolean", default: false },
    only: { type: "string" },
    out: { type: "string" },
  },
});
const mode = values.quick ? "quick" : values.huge ? "huge" : "full";
const sections = new Set((values.only ?? "scan,heal,queue,storm,realtime").split(",").map((s) => s.trim()));
const out = values.out ?? fileURLToPath(new URL("./results.json", import.meta.url));
const envInt = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);

// Worker settings for our processes (and pg-boss's): what a 2-core machine runs best (see README).
const workerConcurrency = envInt("BENCH_WORKER_CONCURRENCY", 8);
const poolSize = envInt("BENCH_DATABASE_POOL_SIZE", 8);

const plan = values.quick
  ? {
      scan: { sizes: [10_000, 100_000], runs: 3, originalSample: 500 },
      heal: {
        orphans: 1500,
        runs: 3,
        originalSample: 200,
        oursProcesses: [1, 2],
        pgBossProcesses: [2],
        ceilingSweep: [4, 8, 16],
        ceilingSweepOrphans: 300,
        workerConcurrencySweep: [],
      },
      queue: { jobs: 2000, runs: 3 },
      storm: { orphans: 1000, runs: 3 },
      realtime: { rate: 100, durationSeconds: 15, burst: 5_000, cap: 1_000 },
    }
  : {
      scan: { sizes: values.huge ? [100_000, 1_000_000, 10_000_000] : [100_000, 1_000_000], runs: 5, originalSample: 5000 },
      heal: {
        orphans: 10_000,
        runs: 3,
        originalSample: 2000,
        oursProcesses: [1, 2],
        pgBossProcesses: [1, 2],
        ceilingSweep: [2, 4, 8, 16, 32],
        ceilingSweepOrphans: 2000,
        workerConcurrencySweep: [2, 4, 8, 16, 32],
      },
      queue: { jobs: 10_000, runs: 3 },
      storm: { orphans: 10_000, runs: 3 },
      realtime: { rate: 200, durationSeconds: 60, burst: 50_000, cap: 20_000 },
    };

const started = Date.now();
const say = (line: string) => process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);

cleanupOnSignals();
const results: Sections = {};
let realtime: RealtimeResult | undefined;
const busy: Record<string, number> = {};
const machineBefore = machine();
try {
  say(`benchmark (${mode}) on ${machineBefore.cores} cores (${machineBefore.model}), load average ${machineBefore.loadavg.join(" ")}`);
  if (sections.has("scan")) {
    say("§1 scan");
    const r = await withMachineLoad(() =>
      runScanSection({ ...plan.scan, explainAt: [1_000_000, 100_000], checkLedgerUpTo: 1_000_000, say }),
    );
    results.scan = r.value;
    busy.scan = r.busy;
  }
  if (sections.has("heal")) {
    say("§2 healing");
    const r = await withMachineLoad(() => runHealSection({ ...plan.heal, workerConcurrency, poolSize, say }));
    results.heal = r.value;
    busy.heal = r.busy;
  }
  if (sections.has("queue")) {
    say("§3 queue ceiling");
    const r = await withMachineLoad(() => runQueueCeiling({ ...plan.queue, concurrency: workerConcurrency, say }));
    results.queue = r.value;
    busy.queue = r.busy;
  }
  if (sections.has("storm")) {
    say("§4 escalation storm");
    const r = await withMachineLoad(() =>
      runEscalationStorm({ ...plan.storm, processes: 2, backoffMs: 10, workerConcurrency, poolSize, say }),
    );
    results.storm = r.value;
    busy.storm = r.busy;
  }
  if (sections.has("realtime")) {
    say("§5 real time (fast path)");
    realtime = await runRealtimeSection({ ...plan.realtime, workerConcurrency, poolSize, say });
  }
} catch (error) {
  process.exitCode = 1;
  process.stderr.write(`bench failed: ${(error as Error).stack ?? String(error)}\n`);
} finally {
  await cleanupAll();
}

if (process.exitCode !== 1) {
  const { ratios, notes } = computeRatios(results);
  const targets = checkTargets(results, ratios);
  const text = [renderTables(results, ratios, targets), ...(realtime ? [renderRealtime(realtime)] : [])].join("\n\n");
  process.stdout.write(`\n${text}\n\n`);
  const document = {
    mode,
    date: new Date().toISOString(),
    durationSeconds: Math.round((Date.now() - started) / 1000),
    machine: { ...machineBefore, loadavgAfter: machine().loadavg, busyDuringSections: busy },
    settings: { workerConcurrency, poolSize, plan },
    ratios,
    notes,
    targets,
    ...results,
    ...(realtime ? { realtime } : {}),
    table: text,
  };
  writeFileSync(out, `${JSON.stringify(document, null, 2)}\n`);
  say(`wrote ${out}`);
}
