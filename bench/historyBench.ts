// §8 History (issue 22 item 2, first figures): the same measurements on the history data set
// (bench/historyData.ts: five servicer years, built once and reused) and on an empty database in
// the same run. The empty one holds the same open escalations (so the ops reads have the same rows
// to show) and nothing else. Per database: the healing rate of new orphans with the service's worker
// processes (scan timed on its own), a reconciliation run, and p50/p99 of the ops reads through the
// real HTTP server (`node bin/dispersal.js server`).
import { fileURLToPath } from "node:url";
import { connectDatabase, isStatementCancelled, type Database } from "../src/db/client.js";
import { runReconciliation } from "../src/db/reconciliation.js";
import { scanForOrphans } from "../src/jobs/scan.js";
import { orphanDeadlineOf } from "../src/jobs/reconcile.js";
import { seedOrphans } from "./benchData.js";
import { benchQueuePrefix, createBenchDatabase } from "./benchResources.js";
import { openBenchPipeline, spawnChildren, startWorkerProcesses } from "./benchPipeline.js";
import { timeHealing, type WorkerSettings } from "./healBench.js";
import { buildHistory, countHistory, emptyShape, historyShape, openHistoryDatabase, type HistoryBuild, type HistoryCounts } from "./historyData.js";
import { figure, waitUntil, type Figure } from "./measure.js";

const BIN = fileURLToPath(new URL("../bin/dispersal.js", import.meta.url));
const VIEWER = { name: "history-viewer", secret: "history-viewer-secret-0123" };

export interface HistoryOptions {
  quick: boolean;
  /** New orphans healed per run (10,000; quick 2,000). */
  orphans: number;
  runs: number;
  /** Requests per ops read (after two of warm-up). */
  requests: number;
  /** Reconciliation runs per database. */
  reconciliations: number;
  /** statement_timeout of the reconciliation's session: a check past it ends the run (reported as a lower bound). */
  reconcileTimeoutMs: number;
  /** Time budget of one ops read: it stops after `requests` or this (at least 3 requests), and one request after 30 s. */
  readBudgetMs: number;
  processes: number;
  batched: WorkerSettings;
  say(line: string): void;
}

export interface OpsRead {
  p50Ms: number;
  p99Ms: number;
  requests: number;
  /** HTTP statuses answered (all 200 expected). */
  statuses: Record<string, number>;
  bytes: number;
}

export interface HistorySide {
  database: string;
  counts: HistoryCounts;
  healing: { orphans: number; perSecond: Figure; seconds: Figure; cpuMsPerObligation: { postgres: number; workers: number; redis: number } };
  /** scanForOrphans finding and enqueueing the new orphans, beside the history's escalations. */
  scanMs: Figure;
  /** status "cancelled": a check ran past the statement timeout, so ms is a lower bound. */
  reconciliation: { ms: Figure; status: string; defectCount: number; cancelled?: string };
  ops: Record<string, OpsRead>;
}

export interface HistorySectionResult {
  mode: "quick" | "full";
  build: HistoryBuild;
  empty: HistorySide;
  history: HistorySide;
  /** p99 at history ÷ p99 on empty, per read both have. */
  opsP99Ratios: Record<string, number>;
  /** The Postgres settings the figures were measured with (docs/performance.md: the settings the service needs). */
  postgresSettings: Record<string, string>;
}

const SETTINGS = ["shared_buffers", "work_mem", "effective_cache_size", "random_page_cost", "max_parallel_workers_per_gather", "autovacuum", "autovacuum_vacuum_scale_factor", "synchronous_commit", "server_version"];

export async function runHistorySection(options: HistoryOptions): Promise<HistorySectionResult> {
  const shape = historyShape(options.quick ? 0.1 : 1);
  const name = options.quick ? "dispersal_bench_history_quick" : "dispersal_bench_history";
  const { database: history, build } = await openHistoryDatabase(name, shape, options.say);

  const empty = await createBenchDatabase("history-empty", { max: 8 });
  try {
    options.say(`  empty database: the same ~${shape.openEscalations.toLocaleString("en")} open escalations, no history`);
    await buildHistory(empty, emptyShape(shape));
    // Long stories: a payment returned and paid again (two allocations), and an open escalation.
    const longStory = await pick(history, `select obligation_id::text as id from dispersal_entries where allocation = 2 order by obligation_id limit 1`);
    options.say("  measuring on the empty database");
    const emptySide = await measureSide(empty, "empty", options, {});
    options.say("  measuring on the history database");
    const historySide = await measureSide(history, "history", options, longStory ? { "story (payment returned and paid again)": `/api/obligations/${longStory}` } : {});
    const opsP99Ratios: Record<string, number> = {};
    for (const [read, e] of Object.entries(emptySide.ops)) {
      const h = historySide.ops[read];
      if (h && e.p99Ms > 0) opsP99Ratios[read] = Number((h.p99Ms / e.p99Ms).toFixed(2));
    }
    const settings = await history.sql<{ name: string; value: string }[]>`
      select name, current_setting(name) as value from pg_settings where name in ${history.sql(SETTINGS)} order by name`;
    const postgresSettings = Object.fromEntries(settings.map((r) => [r.name, r.value]));
    return { mode: options.quick ? "quick" : "full", build, empty: emptySide, history: historySide, opsP99Ratios, postgresSettings };
  } finally {
    await empty.drop();
  }
}

async function pick(database: Database, query: string): Promise<string | undefined> {
  const [row] = await database.sql.unsafe<{ id: string }[]>(query);
  return row?.id;
}

/** Settled, not dispersed and not escalated: what the healer still has to do. */
async function healable(database: Database): Promise<number> {
  const [row] = await database.sql<{ n: number }[]>`
    select count(*)::int as n from obligations o
     where o.status = 'settled' and not o.dispersed
       and not exists (select 1 from dispersal_healing_attempts h where h.obligation_id = o.id and h.status = 'escalated')`;
  return row!.n;
}

async function measureSide(database: Database, label: string, options: HistoryOptions, extraReads: Record<string, string>): Promise<HistorySide> {
  const [db] = await database.sql<{ name: string }[]>`select current_database() as name`;
  const prefix = benchQueuePrefix(`history-${label}`);
  const pipeline = openBenchPipeline(database, prefix, { HEALING_MAX_BACKLOG: String(Math.max(20_000, options.orphans)) });

  // Healing: new orphans beside the history, healed by the service's worker processes.
  const runs: Array<Awaited<ReturnType<typeof timeHealing>>> = [];
  const scans: number[] = [];
  const workers = await startWorkerProcesses(pipeline, options.processes, {
    WORKER_CONCURRENCY: String(options.batched.workerConcurrency),
    DATABASE_POOL_SIZE: String(options.batched.poolSize),
    HEALING_BATCH_SIZE: String(options.batched.batchSize),
    HEALING_MAX_BACKLOG: String(Math.max(20_000, options.orphans)),
  });
  try {
    for (let run = 0; run < options.runs; run++) {
      await seedOrphans(database, { count: options.orphans });
      await database.sql`analyze obligations`;
      const healed = await timeHealing(database, options.orphans, workers.pids, async () => {
        const started = performance.now();
        const summary = await scanForOrphans(pipeline.ctx, "bench");
        scans.push(performance.now() - started);
        if (summary.enqueued !== options.orphans) throw new Error(`scan enqueued ${summary.enqueued} of ${options.orphans} new orphans (${label})`);
        await waitUntil(async () => (await healable(database)) === 0, { timeoutMs: 120_000 + options.orphans * 50, what: `every new orphan dispersed (${label})`, everyMs: 500 });
      });
      runs.push(healed);
      options.say(`    ${label}: ${options.orphans} orphans healed in ${(healed.ms / 1000).toFixed(2)} s (scan ${scans[scans.length - 1]!.toFixed(0)} ms)`);
    }
  } finally {
    await workers.stop();
  }
  const median = (values: number[]) => figure(values, "ms", 3).median;

  // A reconciliation run, as the service's daily job calls it, on a pool of its own whose
  // statement_timeout bounds each check: at history a check may run for hours (see docs/performance.md).
  const reconciliations: number[] = [];
  let report: Awaited<ReturnType<typeof runReconciliation>> | undefined;
  let cancelled: string | undefined;
  const reconciler = connectDatabase(database.url, { max: 1, applicationName: "dispersal-bench-reconcile", statementTimeoutMs: options.reconcileTimeoutMs });
  try {
    for (let i = 0; i < options.reconciliations && !cancelled; i++) {
      const started = performance.now();
      try {
        // TODO(issue 22, incremental reconciliation): pass the daily scope here (and time the weekly full sweep beside it) once runReconciliation takes one.
        report = await runReconciliation(reconciler.db, { orphanDeadlineMs: orphanDeadlineOf(pipeline.config) });
      } catch (error) {
        if (!isStatementCancelled(error)) throw error;
        cancelled = `a check ran past statement_timeout ${options.reconcileTimeoutMs / 1000} s`;
      }
      reconciliations.push(performance.now() - started);
      options.say(`    ${label}: reconciliation ${(reconciliations[i]! / 1000).toFixed(1)} s, ${cancelled ? `CANCELLED: ${cancelled}` : `${report!.status} (${report!.defectCount} defects)`}`);
    }
  } finally {
    await reconciler.close();
  }

  // The ops reads, through the real server.
  const ops = await measureOpsReads(database, pipeline.config.REDIS_URL, prefix, options, extraReads);
  await pipeline.close();
  return {
    database: db!.name,
    counts: await countHistory(database),
    healing: {
      orphans: options.orphans,
      perSecond: figure(runs.map((r) => (options.orphans * 1000) / r.ms), "obligations/s", 0),
      seconds: figure(runs.map((r) => r.ms / 1000), "s", 2),
      cpuMsPerObligation: {
        postgres: median(runs.map((r) => r.cpuPerObligation.postgres)),
        workers: median(runs.map((r) => r.cpuPerObligation.workers)),
        redis: median(runs.map((r) => r.cpuPerObligation.redis)),
      },
    },
    scanMs: figure(scans, "ms", 1),
    reconciliation: { ms: figure(reconciliations, "ms", 0), status: cancelled ? "cancelled" : (report?.status ?? "not run"), defectCount: report?.defectCount ?? 0, ...(cancelled ? { cancelled } : {}) },
    ops,
  };
}

async function measureOpsReads(database: Database, redisUrl: string, prefix: string, options: HistoryOptions, extraReads: Record<string, string>): Promise<Record<string, OpsRead>> {
  const escalated = await pick(database, `select obligation_id::text as id from dispersal_healing_attempts where status = 'escalated' order by obligation_id limit 1`);
  const [mortgage] = await database.sql<{ id: string; reference: string }[]>`
    select m.id::text, m.reference from mortgages m join obligations o on o.mortgage_id = m.id
     where o.id = ${escalated ?? "00000000-0000-0000-0000-000000000000"}::uuid`;
  const reads: Record<string, string> = {
    "escalations list": "/api/escalations",
    "escalations of a mortgage (filter)": `/api/escalations?mortgageId=${mortgage?.id ?? ""}`,
    "resolved (filter)": "/api/escalations?status=resolved",
    "escalations CSV": "/api/escalations.csv",
    "/ops page (money at risk, lists, groups)": "/ops",
    "/metrics (money at risk gauges)": "/metrics",
    "story of an escalated obligation (API)": `/api/obligations/${escalated}`,
    "story page of an escalated obligation": `/ops/obligations/${escalated}`,
    // Every reference starts with SEED-: a prefix every mortgage shares.
    "search by a shared prefix": "/api/search?q=SEED-",
    "search by one reference": `/api/search?q=${encodeURIComponent(mortgage?.reference ?? "SEED-")}`,
    ...extraReads,
  };
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const server = spawnChildren(1, [BIN, "server"], {
    DATABASE_URL: databaseUrlOf(database), REDIS_URL: redisUrl, QUEUE_PREFIX: prefix,
    HEALING_SCAN_EVERY_MS: String(24 * 3600 * 1000), LOG_LEVEL: "warn", PORT: String(port),
    OPS_USERS: `${VIEWER.name}:viewer:${VIEWER.secret}`, SEARCHES_PER_USER_PER_MINUTE: "1000000",
  }, "server");
  const baseUrl = `http://127.0.0.1:${port}`;
  const authorization = `Basic ${Buffer.from(`${VIEWER.name}:${VIEWER.secret}`).toString("base64")}`;
  try {
    await waitUntil(async () => (await fetch(`${baseUrl}/readyz`).catch(() => undefined))?.ok === true, { timeoutMs: 60_000, what: "the server", everyMs: 200 });
    const results: Record<string, OpsRead> = {};
    for (const [read, path] of Object.entries(reads)) {
      const statuses: Record<string, number> = {};
      const times: number[] = [];
      let bytes = 0;
      const readStarted = performance.now();
      for (let i = 0; i < options.requests + 2; i++) {
        if (times.length >= 3 && performance.now() - readStarted > options.readBudgetMs) break;
        const started = performance.now();
        let status = "timeout";
        try {
          const answer = await fetch(`${baseUrl}${path}`, { headers: { authorization }, signal: AbortSignal.timeout(30_000) });
          bytes = (await answer.arrayBuffer()).byteLength;
          status = String(answer.status);
        } catch (error) {
          if ((error as Error).name !== "TimeoutError") throw error;
        }
        const ms = performance.now() - started;
        if (i < 2 && status !== "timeout") continue; // warm-up: connections, plans, caches
        times.push(ms);
        statuses[status] = (statuses[status] ?? 0) + 1;
      }
      options.say(`    ${read}: p50 ${percentile(times, 0.5)} ms, p99 ${percentile(times, 0.99)} ms (${times.length} requests ${JSON.stringify(statuses)})`);
      results[read] = { p50Ms: percentile(times, 0.5), p99Ms: percentile(times, 0.99), requests: times.length, statuses, bytes };
    }
    return results;
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${server.output()}`);
  } finally {
    await server.stop();
  }
}

function databaseUrlOf(database: Database): string {
  return database.url;
}

function percentile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return Number(sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!.toFixed(1));
}

export function renderHistory(r: HistorySectionResult): string {
  const fmt = (f: Figure, d = 0) => `${f.median.toFixed(d)} (${f.min.toFixed(d)}–${f.max.toFixed(d)})`;
  const b = r.build;
  const recon = (side: HistorySide) => `${side.reconciliation.cancelled ? "> " : ""}${(side.reconciliation.ms.median / 1000).toFixed(1)} (${side.reconciliation.status})`;
  const lines = [
    `§8 History (${r.mode}): ${b.name}, ${b.reused ? "reused" : "built"} (built ${b.builtAt} in ${(b.buildMs / 1000).toFixed(0)} s, ${(b.bytes / 1024 ** 3).toFixed(1)} GB on disk): ` +
      `${r.history.counts.obligations.toLocaleString("en")} obligations (${r.history.counts.dispersed.toLocaleString("en")} dispersed), ${r.history.counts.journalEntries.toLocaleString("en")} journal rows, ` +
      `${r.history.counts.openEscalations.toLocaleString("en")} open escalations, ${r.history.counts.resolvedEscalations.toLocaleString("en")} resolved, ${r.history.counts.returnedPayments.toLocaleString("en")} returned payments, ${r.history.counts.auditRows.toLocaleString("en")} audit rows`,
    `empty database: ${r.empty.counts.obligations.toLocaleString("en")} obligations, ${r.empty.counts.journalEntries.toLocaleString("en")} journal rows, ${r.empty.counts.openEscalations.toLocaleString("en")} open escalations`,
    `| figure | empty | history | history ÷ empty |`,
    `|---|---|---|---|`,
    `| healing ${r.history.healing.orphans.toLocaleString("en")} new orphans (obligations/s) | ${fmt(r.empty.healing.perSecond)} | ${fmt(r.history.healing.perSecond)} | ${(r.history.healing.perSecond.median / r.empty.healing.perSecond.median).toFixed(2)} |`,
    `| scan of the new orphans (ms) | ${fmt(r.empty.scanMs)} | ${fmt(r.history.scanMs)} | ${(r.history.scanMs.median / r.empty.scanMs.median).toFixed(2)} |`,
    `| reconciliation run (s) | ${recon(r.empty)} | ${recon(r.history)} | ${r.history.reconciliation.cancelled ? "> " : ""}${(r.history.reconciliation.ms.median / r.empty.reconciliation.ms.median).toFixed(1)} |`,
    ...Object.entries(r.history.ops).map(([read, h]) => {
      const e = r.empty.ops[read];
      return `| ${read}: p50 / p99 ms | ${e ? `${e.p50Ms} / ${e.p99Ms}` : "—"} | ${h.p50Ms} / ${h.p99Ms}${Object.keys(h.statuses).join(",") === "200" ? "" : ` (HTTP ${JSON.stringify(h.statuses)})`} | ${r.opsP99Ratios[read] ?? "—"} |`;
    }),
    `Postgres: ${Object.entries(r.postgresSettings ?? {}).map(([k, v]) => `${k}=${v}`).join(", ")}`,
  ];
  return lines.join("\n");
}
