// `npm run bench` (full: scan at 100k and 1M, 10,000 orphans, a flood of 100,000, the fast path),
// `npm run bench -- --quick` (a few minutes), `--huge` (adds the scan at 10M, the flood of 1M
// orphans). `--only scan,heal,queue,storm,flood,realtime,viewers` runs some sections.
// `--history` runs §8 alone (or with --only, beside those sections): the figures at five servicer
// years (bench/historyData.ts, ~50M journal rows, built once into dispersal_bench_history and
// reused; `--history --quick` a tenth, dispersal_bench_history_quick) beside an empty database.
// A history-only run merges its section, ratios and targets into the results file.
// Prints the tables and writes bench/results.json (every figure, the ratios and the targets).
// Everything runs against its own databases (dispersal_bench_*) and queue prefixes, removed at the end.
import { writeFileSync } from "node:fs";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { cleanupAll, cleanupOnSignals } from "./benchResources.js";
import { loadConfig } from "../src/config.js";
import { runEscalationStorm } from "./escalationStorm.js";
import { runFlood } from "./floodBench.js";
import { runHealSection } from "./healBench.js";
import { runHistorySection } from "./historyBench.js";
import { machine, withMachineLoad } from "./measure.js";
import { runQueueCeiling } from "./queueCeiling.js";
import { renderRealtime, runRealtimeSection, type RealtimeResult } from "./realtimeBench.js";
import { checkTargets, computeRatios, renderTables, type Sections } from "./report.js";
import { runScanSection } from "./scanBench.js";
import { renderViewers, runViewersSection, type ViewersResult } from "./viewersBench.js";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    huge: { type: "boolean", default: false },
    history: { type: "boolean", default: false },
    only: { type: "string" },
    out: { type: "string" },
  },
});
const mode = values.quick ? "quick" : values.huge ? "huge" : "full";
const sections = new Set((values.only ?? (values.history ? "history" : "scan,heal,queue,storm,flood,realtime,viewers")).split(",").map((s) => s.trim()));
if (values.history) sections.add("history");
const out = values.out ?? fileURLToPath(new URL("./results.json", import.meta.url));
const envInt = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);

// Our worker processes run the service's defaults (what an operator gets) unless BENCH_* say
// otherwise; the unbatched pipeline and pg-boss run 8 jobs at a time with a pool of 8, their best
// on a 2-core machine in earlier runs (see docs/performance.md).
const defaults = loadConfig({});
const batched = {
  workerConcurrency: envInt("BENCH_WORKER_CONCURRENCY", defaults.WORKER_CONCURRENCY),
  poolSize: envInt("BENCH_DATABASE_POOL_SIZE", defaults.DATABASE_POOL_SIZE),
  batchSize: envInt("BENCH_HEALING_BATCH_SIZE", defaults.HEALING_BATCH_SIZE),
};
const unbatched = { workerConcurrency: 8, poolSize: 8, batchSize: 1 };
const pgBoss = { concurrency: 8, poolSize: 8 };
const workerConcurrency = batched.workerConcurrency;
const poolSize = batched.poolSize;

const plan = values.quick
  ? {
      scan: { sizes: [10_000, 100_000], runs: 3, originalSample: 500 },
      heal: {
        orphans: 2000,
        runs: 3,
        originalSample: 200,
        oursProcesses: [1, 2],
        pgBossProcesses: [2],
        ceilingSweep: [1, 2, 4],
        ceilingSweepOrphans: 1000,
        workerConcurrencySweep: [],
        clusteredPerMortgage: 100,
      },
      queue: { jobs: 2000, runs: 3 },
      storm: { orphans: 1000, runs: 3 },
      flood: { enqueueOrphans: 5000, tickOrphans: 50_000, healOrphans: 30_000, runs: 3 },
      realtime: { rate: 100, durationSeconds: 15, burst: 5_000, cap: 1_000 },
      viewers: { rate: 50, durationSeconds: 10, rounds: 3 },
      history: { orphans: 2000, runs: 3, requests: 20, reconciliations: 1, reconcileTimeoutMs: 120_000, readBudgetMs: 20_000 },
    }
  : {
      scan: { sizes: values.huge ? [100_000, 1_000_000, 10_000_000] : [100_000, 1_000_000], runs: 5, originalSample: 5000 },
      heal: {
        orphans: 10_000,
        runs: 3,
        originalSample: 2000,
        oursProcesses: [1, 2],
        pgBossProcesses: [2],
        ceilingSweep: [1, 2, 4, 8],
        ceilingSweepOrphans: 4000,
        workerConcurrencySweep: [25, 50, 100, 200, 400],
        clusteredPerMortgage: 100,
      },
      queue: { jobs: 10_000, runs: 3 },
      storm: { orphans: 10_000, runs: 3 },
      flood: values.huge
        ? { enqueueOrphans: 20_000, tickOrphans: 1_000_000, healOrphans: 1_000_000, runs: 5 }
        : { enqueueOrphans: 20_000, tickOrphans: 200_000, healOrphans: 100_000, runs: 5 },
      realtime: { rate: 200, durationSeconds: 60, burst: 50_000, cap: 20_000 },
      viewers: { rate: 100, durationSeconds: 20, rounds: 3 },
      history: { orphans: 10_000, runs: 3, requests: 50, reconciliations: 2, reconcileTimeoutMs: 900_000, readBudgetMs: 60_000 },
    };

const started = Date.now();
const say = (line: string) => process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);

cleanupOnSignals();
const results: Sections = {};
let realtime: RealtimeResult | undefined;
let viewers: ViewersResult[] | undefined;
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
    const r = await withMachineLoad(() => runHealSection({ ...plan.heal, batched, unbatched, pgBoss, say }));
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
  if (sections.has("flood")) {
    say("§5 flood");
    const r = await withMachineLoad(() =>
      runFlood({ ...plan.flood, worker: { ...batched, maxBacklog: defaults.HEALING_MAX_BACKLOG }, say }),
    );
    results.flood = r.value;
    busy.flood = r.busy;
  }
  if (sections.has("realtime")) {
    say("§6 real time (fast path)");
    realtime = await runRealtimeSection({ ...plan.realtime, workerConcurrency, poolSize, say });
  }
  if (sections.has("viewers")) {
    say("§7 readers: payments while six viewers search");
    viewers = await runViewersSection({ ...plan.viewers, say });
  }
  if (sections.has("history")) {
    say(`§8 history: five servicer years${values.quick ? " (a tenth)" : ""} beside an empty database`);
    const r = await withMachineLoad(() => runHistorySection({ ...plan.history, quick: values.quick, processes: 2, batched, say }));
    results.history = r.value;
    busy.history = r.busy;
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
  const text = [renderTables(results, ratios, targets), ...(realtime ? [renderRealtime(realtime)] : []), ...(viewers ? viewers.map(renderViewers) : [])].join("\n\n");
  process.stdout.write(`\n${text}\n\n`);
  const document = {
    mode,
    date: new Date().toISOString(),
    durationSeconds: Math.round((Date.now() - started) / 1000),
    machine: { ...machineBefore, loadavgAfter: machine().loadavg, busyDuringSections: busy },
    settings: { batched, unbatched, pgBoss, maxBacklog: defaults.HEALING_MAX_BACKLOG, plan },
    ratios,
    notes,
    targets,
    ...results,
    ...(realtime ? { realtime } : {}),
    ...(viewers ? { viewers } : {}),
    table: text,
  };
  const historyOnly = sections.size === 1 && sections.has("history") && values.out === undefined && existsSync(out);
  if (historyOnly) {
    // Only §8 ran: keep the other sections' figures of the last full run, add (or replace) §8's.
    const previous = JSON.parse(readFileSync(out, "utf8")) as Record<string, unknown> & { ratios?: Record<string, unknown>; targets?: Record<string, unknown>; notes?: Record<string, unknown> };
    const measured = <T extends { value?: unknown } | number | null>(entries: Record<string, T>) =>
      Object.fromEntries(Object.entries(entries).filter(([, v]) => v !== null && (typeof v !== "object" || v.value !== null)));
    const merged = {
      ...previous,
      ratios: { ...previous.ratios, ...measured(ratios) },
      notes: { ...previous.notes, ...notes },
      targets: { ...previous.targets, ...measured(targets) },
      history: results.history,
      historyRun: { mode, date: document.date, durationSeconds: document.durationSeconds, machine: document.machine, settings: { batched, plan: plan.history } },
      historyTable: text,
    };
    writeFileSync(out, `${JSON.stringify(merged, null, 2)}\n`);
  } else writeFileSync(out, `${JSON.stringify(document, null, 2)}\n`);
  say(`wrote ${out}`);
}
