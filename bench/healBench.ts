// §2 Healing: orphans healed end to end (scan, enqueue, disperse with every posting) by 1 and 2
// worker processes of the service, side by side with (a) the queue-free ceiling — the same
// transaction driven straight at Postgres —, (b) the original sequential loop and (c) pg-boss.
import { fileURLToPath } from "node:url";
import type PgBoss from "pg-boss";
import { connectDatabase, type Database } from "../src/db/client.js";
import { disperseBatch, type DispersalOutcome } from "../src/db/dispersalBatch.js";
import { findOrphanedObligations } from "../src/db/healing.js";
import { scanForOrphans } from "../src/jobs/scan.js";
import { benchQueuePrefix, createBenchDatabase, REDIS_URL, type BenchDatabase } from "./benchResources.js";
import { openBenchPipeline, spawnChildren, startWorkerProcesses } from "./benchPipeline.js";
import { Redis } from "ioredis";
import { figure, processCpuMs, waitUntil, withMachineLoad, type Figure } from "./measure.js";
import { enqueueOrphansOnPgBoss, openPgBoss } from "./pgBossQueue.js";
import { ledgerDefects, seedOrphans } from "./benchData.js";

const PGBOSS_WORKER = fileURLToPath(new URL("./pgBossWorker.ts", import.meta.url));

export interface HealRun {
  ms: number;
  /** Share of the machine's CPU in use during the run (all processes). */
  machineBusy: number;
  /** CPU used per obligation healed, in ms, by who used it. */
  cpuPerObligation: CpuShares;
}

export interface CpuShares {
  /** The Postgres backends connected to the bench database. */
  postgres: number;
  redis: number;
  /** Worker processes (ours or pg-boss). */
  workers: number;
  /** The benchmark process: scan and enqueue, polling; the whole work for the ceiling and the original loop. */
  bench: number;
}

export interface Contender {
  name: string;
  description: string;
  orphans: number;
  /** True when timed over a sample and scaled to `orphans` (the original loop). */
  extrapolatedFrom?: number;
  seconds: Figure;
  perSecond: Figure;
  machineBusy: Figure;
  /** Median over the runs of the CPU ms spent per obligation, by process group. */
  cpuMsPerObligation: CpuShares & { total: number };
  settings: Record<string, number | string>;
}

export interface HealSectionResult {
  orphans: number;
  contenders: Contender[];
  ceilingSweep: Array<{ concurrency: number; pool: number; perSecond: number }>;
  /** Our 2 worker processes (batched) at other WORKER_CONCURRENCY values, one run each. */
  workerConcurrencySweep: Array<{ workerConcurrency: number; poolSize: number; batchSize: number; perSecond: number }>;
  ledgerDefects: Record<string, number>;
}

/** The settings of our worker processes for one contender. */
export interface WorkerSettings {
  workerConcurrency: number;
  poolSize: number;
  /** HEALING_BATCH_SIZE; 1 is the one-transaction-per-obligation pipeline. */
  batchSize: number;
}

export interface HealSectionOptions {
  orphans: number;
  runs: number;
  /** Orphans the original sequential loop is timed over (then scaled to `orphans`). */
  originalSample: number;
  oursProcesses: number[];
  pgBossProcesses: number[];
  /** Ours, batched: the service's defaults unless BENCH_* say otherwise. */
  batched: WorkerSettings;
  /** Ours, one transaction per obligation (HEALING_BATCH_SIZE=1), at its best settings of earlier runs. */
  unbatched: WorkerSettings;
  /** pg-boss's workers: jobs at a time and pool per process. */
  pgBoss: { concurrency: number; poolSize: number };
  ceilingSweep: number[];
  ceilingSweepOrphans: number;
  workerConcurrencySweep: number[];
  /** Orphans per mortgage of the clustered contender (the spread one has one per mortgage). */
  clusteredPerMortgage: number;
  say(line: string): void;
}

async function remainingOrphans(database: Database): Promise<number> {
  const [row] = await database.sql<{ n: number }[]>`select count(*)::int as n from obligations where status = 'settled' and not dispersed`;
  return row!.n;
}

async function untilAllDispersed(database: Database, timeoutMs: number): Promise<void> {
  // Twice a second: the orphan index holds the dead versions of every row dispersed since the
  // last vacuum, so a tight poll would cost the contenders a good share of a core.
  await waitUntil(async () => (await remainingOrphans(database)) === 0, { timeoutMs, what: "every orphan dispersed", everyMs: 500 });
}

async function postgresBackends(database: Database): Promise<number[]> {
  const rows = await database.sql<{ pid: number }[]>`select pid from pg_stat_activity where datname = current_database()`;
  return rows.map((r) => r.pid);
}

async function redisServerPid(): Promise<number | undefined> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 3 });
  try {
    const match = /process_id:(\d+)/.exec(await redis.info("server"));
    return match ? Number(match[1]) : undefined;
  } finally {
    redis.disconnect();
  }
}

function cpuOf(pids: Iterable<number>): Map<number, number> {
  const used = new Map<number, number>();
  for (const pid of pids) {
    const ms = processCpuMs(pid);
    if (ms !== undefined) used.set(pid, ms);
  }
  return used;
}

/** CPU used between two readings; processes that appeared meanwhile count from zero. */
function cpuBetween(before: Map<number, number>, after: Map<number, number>): number {
  let ms = 0;
  for (const [pid, now] of after) ms += now - (before.get(pid) ?? 0);
  return ms;
}

/**
 * Times `work` by the database's clock: from just before it starts to the start of the last
 * dispersal transaction (resolveHealing sets resolved_at = now()), so the poll's granularity does
 * not count. That transaction's own few milliseconds are left out. Also reads the CPU each group
 * of processes used meanwhile (Linux /proc; zeros elsewhere).
 */
export async function timeHealing(database: Database, healed: number, workerPids: number[], work: () => Promise<void>): Promise<HealRun> {
  const redisPid = await redisServerPid();
  const backendsBefore = cpuOf(await postgresBackends(database));
  const redisBefore = cpuOf(redisPid ? [redisPid] : []);
  const workersBefore = cpuOf(workerPids);
  const benchBefore = process.cpuUsage();
  const { value: ms, busy } = await withMachineLoad(async () => {
    const [start] = await database.sql<{ ms: number }[]>`select extract(epoch from clock_timestamp())::float8 * 1000 as ms`;
    await work();
    const [end] = await database.sql<{ ms: number | null }[]>`
      select extract(epoch from max(resolved_at))::float8 * 1000 as ms
        from dispersal_healing_attempts where resolved_at >= to_timestamp(${start!.ms / 1000})`;
    if (end?.ms === null || end?.ms === undefined) throw new Error("no dispersal was resolved during the run");
    return end.ms - start!.ms;
  });
  const bench = process.cpuUsage(benchBefore);
  const per = (cpuMs: number) => Number((cpuMs / healed).toFixed(3));
  return {
    ms,
    machineBusy: busy,
    cpuPerObligation: {
      postgres: per(cpuBetween(backendsBefore, cpuOf(await postgresBackends(database)))),
      redis: per(cpuBetween(redisBefore, cpuOf(redisPid ? [redisPid] : []))),
      workers: per(cpuBetween(workersBefore, cpuOf(workerPids))),
      bench: per((bench.user + bench.system) / 1000),
    },
  };
}

function timeoutFor(orphans: number): number {
  return 120_000 + orphans * 50;
}

async function healWithOurWorkers(
  database: BenchDatabase,
  processes: number,
  orphans: number,
  settings: WorkerSettings,
  label: string,
  perMortgage?: number,
): Promise<HealRun> {
  const pipeline = openBenchPipeline(database, benchQueuePrefix(`heal-${label}`), { HEALING_MAX_BACKLOG: String(Math.max(20_000, orphans)) });
  const workers = await startWorkerProcesses(pipeline, processes, {
    WORKER_CONCURRENCY: String(settings.workerConcurrency),
    DATABASE_POOL_SIZE: String(settings.poolSize),
    HEALING_BATCH_SIZE: String(settings.batchSize),
    HEALING_MAX_BACKLOG: String(Math.max(20_000, orphans)),
  });
  try {
    await seedOrphans(database, { count: orphans, ...(perMortgage ? { perMortgage } : {}) });
    return await timeHealing(database, orphans, workers.pids, async () => {
      const summary = await scanForOrphans(pipeline.ctx, "bench");
      if (summary.enqueued !== orphans) throw new Error(`scan enqueued ${summary.enqueued} of ${orphans} orphans`);
      await untilAllDispersed(database, timeoutFor(orphans));
    });
  } finally {
    await workers.stop();
    await pipeline.close();
  }
}

/** The same transaction as the unbatched retrigger processor, at `concurrency` straight against Postgres: no queue, no Redis. */
async function healDirectly(database: BenchDatabase, orphans: number, concurrency: number, pool: number): Promise<HealRun> {
  await seedOrphans(database, { count: orphans });
  const direct = connectDatabase(database.url, { max: pool, applicationName: "bench-ceiling" });
  try {
    await direct.sql`select 1`;
    const run = await timeHealing(database, orphans, [], async () => {
      const ids: string[] = [];
      for (let after: string | null = null; ; ) {
        const page = await findOrphanedObligations(direct.db, { after, limit: 1000 });
        ids.push(...page.map((o) => o.obligationId));
        if (page.length < 1000) break;
        after = page[page.length - 1]!.obligationId;
      }
      let next = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < ids.length) {
            const obligationId = ids[next++]!;
            await direct.db.transaction(async (tx) => expectDispersed(await disperseBatch(tx, [{ obligationId, attempt: 1 }])));
          }
        }),
      );
    });
    if ((await remainingOrphans(database)) !== 0) throw new Error("ceiling run left orphans");
    return run;
  } finally {
    await direct.close();
  }
}

/**
 * The batched queue-free ceiling: what the production dispersal transaction (db/dispersalBatch.ts
 * disperseBatch, the one the workers' DispersalBatches commit) reaches straight at Postgres,
 * `concurrency` batches of `batchSize` at a time.
 */
async function healDirectlyInBatches(database: BenchDatabase, orphans: number, concurrency: number, batchSize: number): Promise<HealRun> {
  await seedOrphans(database, { count: orphans });
  const direct = connectDatabase(database.url, { max: concurrency, applicationName: "bench-ceiling" });
  try {
    await direct.sql`select 1`;
    const run = await timeHealing(database, orphans, [], async () => {
      const ids: string[] = [];
      for (let after: string | null = null; ; ) {
        const page = await findOrphanedObligations(direct.db, { after, limit: 1000 });
        ids.push(...page.map((o) => o.obligationId));
        if (page.length < 1000) break;
        after = page[page.length - 1]!.obligationId;
      }
      let next = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < ids.length) {
            const batch = ids.slice(next, next + batchSize);
            next += batch.length;
            await direct.db.transaction(async (tx) => expectDispersed(await disperseBatch(tx, batch.map((obligationId) => ({ obligationId, attempt: 1 })))));
          }
        }),
      );
    });
    if ((await remainingOrphans(database)) !== 0) throw new Error("batched ceiling run left orphans");
    return run;
  } finally {
    await direct.close();
  }
}

/** The ceiling measures the production transaction by construction: every obligation of it must have been dispersed. */
function expectDispersed(outcomes: ReadonlyMap<string, DispersalOutcome>): void {
  for (const [obligationId, outcome] of outcomes) {
    if (outcome.kind !== "dispersed") throw new Error(`ceiling could not disperse ${obligationId}: ${String((outcome.error as Error)?.message ?? outcome.error)}`);
  }
}

async function healWithPgBoss(database: BenchDatabase, boss: PgBoss, processes: number, orphans: number, options: HealSectionOptions): Promise<HealRun> {
  const workers = spawnChildren(
    processes,
    ["--import", "tsx", PGBOSS_WORKER],
    { DATABASE_URL: database.url, PGBOSS_CONCURRENCY: String(options.pgBoss.concurrency), DATABASE_POOL_SIZE: String(options.pgBoss.poolSize) },
    "pg-boss worker",
  );
  try {
    await waitUntil(async () => (workers.output().match(/pg-boss worker ready/g) ?? []).length >= processes, {
      timeoutMs: 60_000,
      what: "pg-boss workers",
      everyMs: 100,
    }).catch((error: Error) => {
      throw new Error(`${error.message}\n${workers.output()}`);
    });
    await seedOrphans(database, { count: orphans });
    return await timeHealing(database, orphans, workers.pids, async () => {
      const enqueued = await enqueueOrphansOnPgBoss(database, boss, 1000);
      if (enqueued !== orphans) throw new Error(`pg-boss enqueue found ${enqueued} of ${orphans} orphans`);
      await untilAllDispersed(database, timeoutFor(orphans));
    });
  } finally {
    await workers.stop();
  }
}

function medianCpu(runs: CpuShares[]): CpuShares & { total: number } {
  const median = (key: keyof CpuShares) => figure(runs.map((r) => r[key]), "ms", 3).median;
  const shares = { postgres: median("postgres"), redis: median("redis"), workers: median("workers"), bench: median("bench") };
  return { ...shares, total: Number((shares.postgres + shares.redis + shares.workers + shares.bench).toFixed(3)) };
}

function contender(name: string, description: string, orphans: number, runs: HealRun[], settings: Contender["settings"], extrapolatedFrom?: number): Contender {
  const scale = extrapolatedFrom ? orphans / extrapolatedFrom : 1;
  return {
    name,
    description,
    orphans,
    ...(extrapolatedFrom ? { extrapolatedFrom } : {}),
    seconds: figure(runs.map((r) => (r.ms * scale) / 1000), "s", 2),
    perSecond: figure(runs.map((r) => ((extrapolatedFrom ?? orphans) * 1000) / r.ms), "obligations/s", 0),
    machineBusy: figure(runs.map((r) => r.machineBusy), "share", 2),
    cpuMsPerObligation: medianCpu(runs.map((r) => r.cpuPerObligation)),
    settings,
  };
}

export async function runHealSection(options: HealSectionOptions): Promise<HealSectionResult> {
  const database = await createBenchDatabase("heal", { max: 4 });
  let boss: PgBoss | undefined;
  try {
    options.say(`  batched ceiling sweep over ${options.ceilingSweep.join(", ")} concurrent batches of ${options.batched.batchSize} (${options.ceilingSweepOrphans} orphans each)`);
    const ceilingSweep: HealSectionResult["ceilingSweep"] = [];
    for (const concurrency of options.ceilingSweep) {
      const run = await healDirectlyInBatches(database, options.ceilingSweepOrphans, concurrency, options.batched.batchSize);
      ceilingSweep.push({ concurrency, pool: concurrency, perSecond: Math.round((options.ceilingSweepOrphans * 1000) / run.ms) });
    }
    const best = ceilingSweep.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
    options.say(`  batched ceiling sweep: ${ceilingSweep.map((s) => `${s.concurrency}→${s.perSecond}/s`).join(", ")}; using ${best.concurrency}`);

    const workerConcurrencySweep: HealSectionResult["workerConcurrencySweep"] = [];
    for (const workerConcurrency of options.workerConcurrencySweep) {
      const settings = { ...options.batched, workerConcurrency };
      const run = await healWithOurWorkers(database, 2, options.ceilingSweepOrphans, settings, `sweep-${workerConcurrency}`);
      workerConcurrencySweep.push({ ...settings, perSecond: Math.round((options.ceilingSweepOrphans * 1000) / run.ms) });
    }
    if (workerConcurrencySweep.length > 0) {
      options.say(`  our 2 processes (batches of ${options.batched.batchSize}), WORKER_CONCURRENCY = ${workerConcurrencySweep.map((s) => `${s.workerConcurrency}→${s.perSecond}/s`).join(", ")}`);
    }

    boss = options.pgBossProcesses.length > 0 ? await openPgBoss(database) : undefined;
    const runs = new Map<string, HealRun[]>();
    const record = (name: string, run: HealRun) => {
      runs.set(name, [...(runs.get(name) ?? []), run]);
      options.say(`  round: ${name} ${(run.ms / 1000).toFixed(2)} s (machine busy ${run.machineBusy})`);
    };
    // Rounds, each contender once per round: whatever else runs on the machine meanwhile spreads over all of them.
    for (let round = 0; round < options.runs; round++) {
      for (const processes of options.oursProcesses) {
        record(`ours-${processes}p`, await healWithOurWorkers(database, processes, options.orphans, options.batched, `${processes}p-${round}`));
      }
      record("ours-unbatched-2p", await healWithOurWorkers(database, 2, options.orphans, options.unbatched, `unbatched-${round}`));
      record("clustered-2p", await healWithOurWorkers(database, 2, options.orphans, options.batched, `clustered-${round}`, options.clusteredPerMortgage));
      record("spread-2p", await healWithOurWorkers(database, 2, options.orphans, options.batched, `spread-${round}`, 1));
      record("ceiling", await healDirectlyInBatches(database, options.orphans, best.concurrency, options.batched.batchSize));
      record("ceiling-unbatched", await healDirectly(database, options.orphans, 8, 8));
      for (const processes of options.pgBossProcesses) record(`pgboss-${processes}p`, await healWithPgBoss(database, boss!, processes, options.orphans, options));
      record("original", await healDirectly(database, options.originalSample, 1, 1));
    }

    const settingsOf = (w: WorkerSettings) => ({ WORKER_CONCURRENCY: w.workerConcurrency, DATABASE_POOL_SIZE: w.poolSize, HEALING_BATCH_SIZE: w.batchSize });
    const contenders: Contender[] = [
      ...options.oursProcesses.map((p) =>
        contender(`ours-${p}p`, `BullMQ, ${p} worker process${p > 1 ? "es" : ""} (node bin/dispersal.js worker), batched`, options.orphans, runs.get(`ours-${p}p`)!, { processes: p, ...settingsOf(options.batched) }),
      ),
      contender("ours-unbatched-2p", "the same, one transaction per obligation (HEALING_BATCH_SIZE=1)", options.orphans, runs.get("ours-unbatched-2p")!, { processes: 2, ...settingsOf(options.unbatched) }),
      contender("clustered-2p", `batched, ${options.clusteredPerMortgage} orphans per mortgage, enqueued in id order (mortgage by mortgage)`, options.orphans, runs.get("clustered-2p")!, { processes: 2, ...settingsOf(options.batched) }),
      contender("spread-2p", "batched, 1 orphan per mortgage", options.orphans, runs.get("spread-2p")!, { processes: 2, ...settingsOf(options.batched) }),
      contender("ceiling", "batched queue-free ceiling: the batch transaction straight at Postgres, in one process", options.orphans, runs.get("ceiling")!, {
        concurrency: best.concurrency,
        batchSize: options.batched.batchSize,
      }),
      contender("ceiling-unbatched", "queue-free, one transaction per obligation, straight at Postgres", options.orphans, runs.get("ceiling-unbatched")!, { concurrency: 8, pool: 8 }),
      ...options.pgBossProcesses.map((p) =>
        contender(`pgboss-${p}p`, `pg-boss 10, ${p} worker process${p > 1 ? "es" : ""}, retryLimit 3 + retryBackoff`, options.orphans, runs.get(`pgboss-${p}p`)!, {
          processes: p,
          concurrency: options.pgBoss.concurrency,
          pool: options.pgBoss.poolSize,
        }),
      ),
      contender("original", "original loop: one obligation after the other", options.orphans, runs.get("original")!, { concurrency: 1 }, options.originalSample),
    ];
    const defects = await ledgerDefects(database);
    return { orphans: options.orphans, contenders, ceilingSweep, workerConcurrencySweep, ledgerDefects: defects };
  } finally {
    await boss?.stop({ graceful: false, close: true, wait: true }).catch(() => {});
    await database.drop();
  }
}
