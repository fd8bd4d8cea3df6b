// §5 Flood: what a week-long upstream outage leaves behind. (a) The scan's enqueue rate against
// BullMQ's own addBulk of the same jobs; (b) a scan tick against a huge number of orphans with a
// full backlog, and a top-up tick with one page of room; (c) every orphan healed end to end by two
// worker processes under the default backlog cap, with the peak Redis memory growth and the peak
// RSS of every process.
import { readFileSync } from "node:fs";
import { Redis } from "ioredis";
import { scanForOrphans } from "../src/jobs/scan.js";
import { JOB, retriggerJobOptions } from "../src/queues/names.js";
import { retriggerBacklog } from "../src/queues/retriggerJobs.js";
import { benchQueuePrefix, createBenchDatabase, REDIS_URL, type BenchDatabase } from "./benchResources.js";
import { openBenchPipeline, startWorkerProcesses, type BenchPipeline } from "./benchPipeline.js";
import { ledgerDefects, seedOrphans } from "./benchData.js";
import { figure, sleep, waitUntil, withMachineLoad, type Figure } from "./measure.js";

export interface FloodResult {
  enqueue: { orphans: number; scanPerSecond: Figure; addBulkPerSecond: Figure; ratio: number };
  tick: { orphans: number; cap: number; fullBacklogMs: Figure; topUpPageMs: Figure; topUpEnqueued: number };
  heal: {
    orphans: number;
    cap: number;
    processes: number;
    seconds: number;
    perSecond: number;
    /** Peak of Redis used_memory over its value before the workers started. */
    redisPeakGrowthMb: number;
    /** Peak backlog sampled (waiting + delayed + prioritised + active). */
    backlogPeak: number;
    peakRssMb: { bench: number; workers: number[] };
    settings: Record<string, number>;
    ledgerDefects: Record<string, number>;
  };
}

export interface FloodOptions {
  enqueueOrphans: number;
  tickOrphans: number;
  healOrphans: number;
  runs: number;
  worker: { workerConcurrency: number; poolSize: number; batchSize: number; maxBacklog: number };
  say(line: string): void;
}

const mb = (bytes: number) => Number((bytes / 1024 / 1024).toFixed(1));

function rssBytes(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

async function redisUsedMemory(redis: Redis): Promise<number> {
  const match = /used_memory:(\d+)/.exec(await redis.info("memory"));
  return match ? Number(match[1]) : 0;
}

async function allOrphanIds(database: BenchDatabase): Promise<string[]> {
  return (await database.sql<{ id: string }[]>`select id from obligations where status = 'settled' and not dispersed order by id`).map((r) => r.id);
}

async function enqueueVsAddBulk(options: FloodOptions): Promise<FloodResult["enqueue"]> {
  const database = await createBenchDatabase("flood_enqueue", { max: 4 });
  const pipeline = openBenchPipeline(database, benchQueuePrefix("flood-enqueue"), { HEALING_MAX_BACKLOG: String(options.enqueueOrphans) });
  try {
    await seedOrphans(database, { count: options.enqueueOrphans });
    const ids = await allOrphanIds(database);
    const { retrigger } = pipeline.ctx.queues;
    const scanRates: number[] = [];
    const bulkRates: number[] = [];
    for (let run = -1; run < options.runs; run++) {
      await retrigger.obliterate({ force: true });
      const scanStarted = performance.now();
      const summary = await scanForOrphans(pipeline.ctx, "bench");
      const scanMs = performance.now() - scanStarted;
      if (summary.enqueued !== ids.length) throw new Error(`flood scan enqueued ${summary.enqueued} of ${ids.length}`);
      await retrigger.obliterate({ force: true });
      // BullMQ's own: the same jobs (id, deduplication, attempts, backoff, retention), pages of 1,000 one after another.
      const bulkStarted = performance.now();
      for (let i = 0; i < ids.length; i += 1000) {
        await retrigger.addBulk(
          ids.slice(i, i + 1000).map((obligationId) => ({
            name: JOB.retrigger,
            data: { obligationId },
            opts: retriggerJobOptions(obligationId, { attempts: pipeline.config.HEALING_ATTEMPTS, backoffMs: pipeline.config.HEALING_BACKOFF_MS }),
          })),
        );
      }
      const bulkMs = performance.now() - bulkStarted;
      if (run < 0) continue; // warm-up
      scanRates.push((ids.length * 1000) / scanMs);
      bulkRates.push((ids.length * 1000) / bulkMs);
      options.say(`  enqueue run ${run + 1}: scan ${Math.round((ids.length * 1000) / scanMs)}/s, addBulk ${Math.round((ids.length * 1000) / bulkMs)}/s`);
    }
    await retrigger.obliterate({ force: true });
    const scanPerSecond = figure(scanRates, "orphans/s", 0);
    const addBulkPerSecond = figure(bulkRates, "jobs/s", 0);
    return { orphans: ids.length, scanPerSecond, addBulkPerSecond, ratio: Number((scanPerSecond.median / addBulkPerSecond.median).toFixed(2)) };
  } finally {
    await pipeline.close();
    await database.drop();
  }
}

async function tickAtFullBacklog(options: FloodOptions): Promise<FloodResult["tick"]> {
  const database = await createBenchDatabase("flood_tick", { max: 4 });
  const cap = options.worker.maxBacklog;
  const pipeline = openBenchPipeline(database, benchQueuePrefix("flood-tick"), { HEALING_MAX_BACKLOG: String(cap) });
  try {
    options.say(`  seeding ${options.tickOrphans.toLocaleString("en")} orphans`);
    await seedOrphans(database, { count: options.tickOrphans });
    await database.sql`vacuum (analyze) obligations`;
    const first = await scanForOrphans(pipeline.ctx, "bench");
    if (!first.backlogFull || first.enqueued !== cap) throw new Error(`first tick enqueued ${first.enqueued}, expected the cap ${cap}`);
    const full: number[] = [];
    const topUp: number[] = [];
    let topUpEnqueued = 0;
    for (let run = 0; run < options.runs; run++) {
      const started = performance.now();
      const tick = await scanForOrphans(pipeline.ctx, "bench");
      full.push(performance.now() - started);
      if (tick.enqueued !== 0) throw new Error("a tick at a full backlog enqueued jobs");
      // One page of room, as when the workers have worked through 1,000 jobs.
      const jobs = await pipeline.ctx.queues.retrigger.getJobs(["waiting"], 0, 999);
      await Promise.all(jobs.map((job) => job.remove()));
      const startedTopUp = performance.now();
      const topped = await scanForOrphans(pipeline.ctx, "bench");
      topUp.push(performance.now() - startedTopUp);
      topUpEnqueued = topped.enqueued;
    }
    options.say(`  tick at ${options.tickOrphans.toLocaleString("en")} orphans, full backlog: ${figure(full, "ms", 1).median} ms; top-up of one page: ${figure(topUp, "ms", 1).median} ms (${topUpEnqueued} enqueued)`);
    return { orphans: options.tickOrphans, cap, fullBacklogMs: figure(full, "ms", 2), topUpPageMs: figure(topUp, "ms", 1), topUpEnqueued };
  } finally {
    await pipeline.ctx.queues.retrigger.obliterate({ force: true }).catch(() => {});
    await pipeline.close();
    await database.drop();
  }
}

async function healFlood(options: FloodOptions): Promise<FloodResult["heal"]> {
  const database = await createBenchDatabase("flood_heal", { max: 4 });
  const { worker } = options;
  const overrides = { HEALING_MAX_BACKLOG: String(worker.maxBacklog) };
  const pipeline: BenchPipeline = openBenchPipeline(database, benchQueuePrefix("flood-heal"), overrides);
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 3 });
  try {
    options.say(`  seeding ${options.healOrphans.toLocaleString("en")} orphans`);
    await seedOrphans(database, { count: options.healOrphans });
    await database.sql`vacuum (analyze) obligations`;
    const redisBefore = await redisUsedMemory(redis);
    const benchRssBefore = process.memoryUsage().rss;
    let redisPeak = redisBefore;
    let backlogPeak = 0;
    let benchRss = benchRssBefore;
    const workerRss = new Map<number, number>();
    let pids: number[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        redisPeak = Math.max(redisPeak, await redisUsedMemory(redis));
        backlogPeak = Math.max(backlogPeak, await retriggerBacklog(pipeline.ctx.queues));
        benchRss = Math.max(benchRss, process.memoryUsage().rss);
        for (const pid of pids) workerRss.set(pid, Math.max(workerRss.get(pid) ?? 0, rssBytes(pid)));
        await sleep(250);
      }
    })();
    const started = performance.now();
    // The workers' start-up scan begins the healing; the top-up keeps it going under the cap.
    const { value: workers } = await withMachineLoad(async () => {
      const children = await startWorkerProcesses(pipeline, 2, {
        WORKER_CONCURRENCY: String(worker.workerConcurrency),
        DATABASE_POOL_SIZE: String(worker.poolSize),
        HEALING_BATCH_SIZE: String(worker.batchSize),
        ...overrides,
      }, { waitForStartUpScan: false });
      pids = children.pids;
      return children;
    });
    try {
      let lastSay = Date.now();
      await waitUntil(
        async () => {
          const [row] = await database.sql<{ n: number }[]>`select count(*)::int as n from obligations where status = 'settled' and not dispersed`;
          if (Date.now() - lastSay > 30_000) {
            lastSay = Date.now();
            options.say(`  flood: ${row!.n.toLocaleString("en")} orphans left`);
          }
          return row!.n === 0;
        },
        { timeoutMs: 300_000 + options.healOrphans * 20, what: "every orphan of the flood dispersed", everyMs: 1000 },
      );
    } finally {
      sampling = false;
      await sampler;
      await workers.stop();
    }
    const seconds = (performance.now() - started) / 1000;
    const result = {
      orphans: options.healOrphans,
      cap: worker.maxBacklog,
      processes: 2,
      seconds: Number(seconds.toFixed(1)),
      perSecond: Math.round(options.healOrphans / seconds),
      redisPeakGrowthMb: mb(redisPeak - redisBefore),
      backlogPeak,
      peakRssMb: { bench: mb(benchRss), workers: [...workerRss.values()].map(mb) },
      settings: { WORKER_CONCURRENCY: worker.workerConcurrency, DATABASE_POOL_SIZE: worker.poolSize, HEALING_BATCH_SIZE: worker.batchSize, HEALING_MAX_BACKLOG: worker.maxBacklog },
      ledgerDefects: await ledgerDefects(database),
    };
    options.say(`  flood: ${options.healOrphans.toLocaleString("en")} healed in ${result.seconds} s (${result.perSecond}/s); Redis +${result.redisPeakGrowthMb} MB at peak, backlog peak ${backlogPeak}; RSS ${JSON.stringify(result.peakRssMb)} MB`);
    return result;
  } finally {
    redis.disconnect();
    await pipeline.close();
    await database.drop();
  }
}

export async function runFlood(options: FloodOptions): Promise<FloodResult> {
  options.say(`  (a) scan vs addBulk, ${options.enqueueOrphans.toLocaleString("en")} orphans`);
  const enqueue = await enqueueVsAddBulk(options);
  options.say(`  (b) scan tick, ${options.tickOrphans.toLocaleString("en")} orphans, backlog at the cap (${options.worker.maxBacklog.toLocaleString("en")})`);
  const tick = await tickAtFullBacklog(options);
  options.say(`  (c) ${options.healOrphans.toLocaleString("en")} orphans healed end to end, 2 worker processes`);
  const heal = await healFlood(options);
  return { enqueue, tick, heal };
}
