// §5 Real time (the fast path): (a) sustained settlements through the payments intake API (a
// `server` process and 2 `worker` processes, each worker listening), settle→dispersed latency from
// Postgres's timestamps and the retrigger backlog sampled each second; (b) one SQL statement that
// settles a whole batch (50,000 in the full run): time until every one is dispersed, the backlog's
// peak against HEALING_MAX_BACKLOG, and the worker processes' memory while the burst goes through.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { seedObligations } from "../src/db/seed.js";
import { runSimulation, type Percentiles, type SimulationSummary } from "../src/settlementSimulation.js";
import { benchQueuePrefix, createBenchDatabase } from "./benchResources.js";
import { openBenchPipeline, spawnChildren, startWorkerProcesses } from "./benchPipeline.js";
import { processCpuMs, sleep, waitUntil, withMachineLoad } from "./measure.js";

const BIN = fileURLToPath(new URL("../bin/dispersal.js", import.meta.url));
const SERVICE = { name: "bench-feed", secret: "bench-feed-service-secret" };

export interface RealtimeResult {
  sustained: {
    ratePerSecond: number;
    durationSeconds: number;
    workerProcesses: number;
    achievedPerSecond: number;
    answers: Record<string, number>;
    settleToDispersedMs: Percentiles;
    httpMs: Percentiles;
    /** Live retrigger jobs sampled each second while payments were sent. */
    backlogSeries: number[];
    backlogMax: number;
    /** Least-squares slope of the backlog over the run (jobs per second): ~0 when it does not grow. */
    backlogSlopePerSecond: number;
    fixableNotDispersed: number;
    machineBusy: number;
    /** CPU ms per payment spent by the server process (HTTP + intake transaction) and by the 2 workers (listener + dispersal). */
    cpuMsPerPayment: { server: number | null; workers: number | null };
  };
  burst: {
    obligations: number;
    cap: number;
    /** From the statement's commit to the last dispersal (Postgres clock). */
    seconds: number;
    dispersedPerSecond: number;
    dispersed: number;
    backlogMax: number;
    capRespected: boolean;
    /** Peak resident memory of each worker process during the burst, and its growth over the start. */
    workerRssMb: Array<{ peak: number; growth: number }>;
    notifications: string;
    machineBusy: number;
  };
  targets: Array<{ target: string; value: number | string | null; met: boolean }>;
}

export async function runRealtimeSection(options: {
  rate: number;
  durationSeconds: number;
  burst: number;
  cap: number;
  workerConcurrency: number;
  poolSize: number;
  say(line: string): void;
}): Promise<RealtimeResult> {
  const sustained = await sustainedSettlements(options);
  const burst = await burstSettlement(options);
  const targets = [
    { target: "settle→dispersed p50 <= 100 ms", value: sustained.settleToDispersedMs.p50, met: (sustained.settleToDispersedMs.p50 ?? Infinity) <= 100 },
    { target: "settle→dispersed p99 <= 1000 ms", value: sustained.settleToDispersedMs.p99, met: (sustained.settleToDispersedMs.p99 ?? Infinity) <= 1000 },
    { target: `sustained ${options.rate}/s achieved (>= 95 %)`, value: sustained.achievedPerSecond, met: sustained.achievedPerSecond >= options.rate * 0.95 },
    { target: "backlog not growing (slope <= 1 job/s)", value: sustained.backlogSlopePerSecond, met: sustained.backlogSlopePerSecond <= 1 },
    { target: `burst of ${options.burst} fully dispersed`, value: burst.dispersed, met: burst.dispersed === options.burst },
    { target: `burst backlog <= cap ${options.cap}`, value: burst.backlogMax, met: burst.capRespected },
  ];
  return { sustained, burst, targets };
}

async function sustainedSettlements(options: { rate: number; durationSeconds: number; workerConcurrency: number; poolSize: number; say(line: string): void }) {
  const database = await createBenchDatabase("realtime", { max: 4 });
  const prefix = benchQueuePrefix("realtime");
  const pipeline = openBenchPipeline(database, prefix);
  // Open obligations only (nothing settled yet), on mortgages whose lenders all hold units.
  const needed = options.rate * options.durationSeconds;
  await seedObligations(database, {
    mortgages: Math.ceil((needed * 1.4) / 10),
    obligations: Math.ceil(needed * 1.4),
    settledShare: 0,
    lendersPerMortgage: { min: 2, max: 6 },
    withHistoricalDispersals: false,
  });
  await database.sql`vacuum analyze`;
  const env = {
    WORKER_CONCURRENCY: String(options.workerConcurrency),
    DATABASE_POOL_SIZE: String(options.poolSize),
    OPS_USERS: `${SERVICE.name}:service:${SERVICE.secret}`,
  };
  const workers = await startWorkerProcesses(pipeline, 2, env);
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const server = spawnChildren(1, [BIN, "server"], {
    DATABASE_URL: database.url,
    REDIS_URL: pipeline.config.REDIS_URL,
    QUEUE_PREFIX: prefix,
    HEALING_SCAN_EVERY_MS: String(24 * 3600 * 1000),
    LOG_LEVEL: "warn",
    PORT: String(port),
    ...env,
  }, "server");
  try {
    const baseUrl = `http://127.0.0.1:${port}`;
    await waitUntil(async () => (await fetch(`${baseUrl}/readyz`).catch(() => undefined))?.ok === true, { timeoutMs: 60_000, what: "the server", everyMs: 200 });
    const backlogSeries: number[] = [];
    const sampler = setInterval(() => {
      void pipeline.ctx.queues.retrigger.getJobCounts("waiting", "active", "delayed", "prioritized").then((c) => backlogSeries.push(Object.values(c).reduce((a, b) => a + b, 0)), () => {});
    }, 1000);
    let summary: SimulationSummary;
    let busy: number;
    const cpu = () => ({ server: processCpuMs(server.pids[0]!), workers: sumCpu(workers.pids) });
    const cpuBefore = cpu();
    try {
      ({ value: summary, busy } = await withMachineLoad(() =>
        runSimulation(pipeline.ctx, {
          baseUrl,
          credentials: SERVICE,
          ratePerSecond: options.rate,
          durationSeconds: options.durationSeconds,
          waitSeconds: 60,
          onProgress: (line) => options.say(`  ${line}`),
        }),
      ));
    } finally {
      clearInterval(sampler);
    }
    const cpuAfter = cpu();
    const answered = Object.values(summary.payments.byStatus).reduce((a, b) => a + b, 0);
    const perPayment = (after: number | undefined, before: number | undefined) =>
      after === undefined || before === undefined || answered === 0 ? null : Number(((after - before) / answered).toFixed(2));
    const sending = backlogSeries.slice(0, options.durationSeconds);
    // A 5xx is a defect to look at, not a figure: show what the server logged for it.
    if (Object.keys(summary.payments.byStatus).some((status) => status.startsWith("5"))) {
      const failures = server.output().split("\n").filter((line) => /request failed/.test(line));
      options.say(`  server errors (${failures.length} logged):\n${failures.slice(-5).join("\n")}`);
    }
    options.say(
      `  sustained: ${summary.payments.achievedPerSecond}/s, settle→dispersed p50 ${summary.settleToDispersedMs.p50} ms p99 ${summary.settleToDispersedMs.p99} ms, backlog max ${Math.max(0, ...sending)}`,
    );
    return {
      ratePerSecond: options.rate,
      durationSeconds: options.durationSeconds,
      workerProcesses: 2,
      achievedPerSecond: summary.payments.achievedPerSecond,
      answers: summary.payments.byStatus,
      settleToDispersedMs: summary.settleToDispersedMs,
      httpMs: summary.payments.httpMs,
      backlogSeries: sending,
      backlogMax: Math.max(0, ...sending),
      backlogSlopePerSecond: slope(sending),
      fixableNotDispersed: summary.obligations.fixableNotDispersed,
      machineBusy: busy,
      cpuMsPerPayment: { server: perPayment(cpuAfter.server, cpuBefore.server), workers: perPayment(cpuAfter.workers, cpuBefore.workers) },
    };
  } finally {
    await server.stop();
    await workers.stop();
    await pipeline.close();
    await database.drop();
  }
}

async function burstSettlement(options: { burst: number; cap: number; workerConcurrency: number; poolSize: number; say(line: string): void }) {
  const database = await createBenchDatabase("burst", { max: 4 });
  const prefix = benchQueuePrefix("burst");
  const pipeline = openBenchPipeline(database, prefix);
  const { sql } = database;
  // About 85 % of the seeded obligations are open (the rest waived).
  await seedObligations(database, {
    mortgages: Math.ceil((options.burst * 1.3) / 10),
    obligations: Math.ceil(options.burst * 1.3),
    settledShare: 0,
    lendersPerMortgage: { min: 2, max: 6 },
    withHistoricalDispersals: false,
  });
  await sql`vacuum analyze`;
  const workers = await startWorkerProcesses(pipeline, 2, {
    WORKER_CONCURRENCY: String(options.workerConcurrency),
    DATABASE_POOL_SIZE: String(options.poolSize),
    HEALING_MAX_BACKLOG: String(options.cap),
  });
  try {
    const rssStart = workers.pids.map(rssMb);
    const rssPeak = [...rssStart];
    let backlogMax = 0;
    const sampler = setInterval(() => {
      workers.pids.forEach((pid, i) => (rssPeak[i] = Math.max(rssPeak[i]!, rssMb(pid))));
      void pipeline.ctx.queues.retrigger.getJobCounts("waiting", "active", "delayed", "prioritized").then((c) => {
        backlogMax = Math.max(backlogMax, Object.values(c).reduce((a, b) => a + b, 0));
      }, () => {});
    }, 100);
    let result: { seconds: number; dispersed: number };
    let busy: number;
    try {
      ({ value: result, busy } = await withMachineLoad(async () => {
        const [settled] = await sql<{ at: number; n: number }[]>`
          with s as (
            update obligations set status = 'settled', settled_at = now()
             where id in (select id from obligations where status in ('upcoming', 'due', 'overdue', 'partially_settled') order by id limit ${options.burst})
            returning 1)
          select extract(epoch from clock_timestamp())::float8 * 1000 as at, count(*)::int as n from s`;
        if (settled!.n !== options.burst) throw new Error(`burst settled ${settled!.n} of ${options.burst}`);
        const progress = async () => {
          const [row] = await sql<{ dispersed: number; last: number | null }[]>`
            select count(*) filter (where dispersed)::int as dispersed,
                   extract(epoch from (select max(created_at) from dispersal_entries))::float8 * 1000 as last
              from obligations where status = 'settled'`;
          return row!;
        };
        let lastLine = Date.now();
        await waitUntil(async () => {
          const p = await progress();
          if (Date.now() - lastLine > 5000) {
            lastLine = Date.now();
            options.say(`  burst: ${p.dispersed}/${options.burst} dispersed, backlog peak ${backlogMax}`);
          }
          return p.dispersed >= options.burst;
        }, { timeoutMs: 600_000 + options.burst * 20, what: "the burst dispersed", everyMs: 500 });
        const p = await progress();
        return { seconds: (p.last! - settled!.at) / 1000, dispersed: p.dispersed };
      }));
    } finally {
      clearInterval(sampler);
    }
    await sleep(200);
    options.say(`  burst: ${options.burst} settled in one statement, dispersed in ${result.seconds.toFixed(1)} s; backlog peak ${backlogMax} (cap ${options.cap})`);
    return {
      obligations: options.burst,
      cap: options.cap,
      seconds: Number(result.seconds.toFixed(2)),
      dispersedPerSecond: Math.round(result.dispersed / result.seconds),
      dispersed: result.dispersed,
      backlogMax,
      capRespected: backlogMax <= options.cap,
      workerRssMb: rssPeak.map((peak, i) => ({ peak: Number(peak.toFixed(1)), growth: Number((peak - rssStart[i]!).toFixed(1)) })),
      notifications: "one 'burst' notification (the statement settled more than 100); the listeners' catch-up scan paged through the orphans",
      machineBusy: busy,
    };
  } finally {
    await workers.stop();
    await pipeline.close();
    await database.drop();
  }
}

export function renderRealtime(r: RealtimeResult): string {
  const s = r.sustained;
  const b = r.burst;
  const lines = [
    "**Real time: settlements through the intake API (2 worker processes, 1 server)**",
    "",
    "| rate asked | achieved | settle→dispersed p50 / p90 / p99 / max (ms) | HTTP p50 / p99 (ms) | backlog max | backlog slope (jobs/s) | CPU ms per payment: server / workers | machine busy | answers |",
    "|---|---|---|---|---|---|---|---|---|",
    `| ${s.ratePerSecond}/s × ${s.durationSeconds} s | ${s.achievedPerSecond}/s | ${s.settleToDispersedMs.p50} / ${s.settleToDispersedMs.p90} / ${s.settleToDispersedMs.p99} / ${s.settleToDispersedMs.max} | ${s.httpMs.p50} / ${s.httpMs.p99} | ${s.backlogMax} | ${s.backlogSlopePerSecond} | ${s.cpuMsPerPayment.server} / ${s.cpuMsPerPayment.workers} | ${s.machineBusy} | ${Object.entries(s.answers).map(([k, v]) => `${k}: ${v}`).join(", ")} |`,
    "",
    "**Real time: one statement settles a batch**",
    "",
    "| obligations | seconds to all dispersed | dispersed/s | backlog peak | cap | worker RSS peak (growth) MB |",
    "|---|---|---|---|---|---|",
    `| ${b.obligations} | ${b.seconds} | ${b.dispersedPerSecond} | ${b.backlogMax} | ${b.cap} | ${b.workerRssMb.map((w) => `${w.peak} (+${w.growth})`).join(", ")} |`,
    "",
    "| target | value | met |",
    "|---|---|---|",
    ...r.targets.map((t) => `| ${t.target} | ${t.value} | ${t.met ? "yes" : "NO"} |`),
  ];
  return lines.join("\n");
}

function sumCpu(pids: number[]): number | undefined {
  const each = pids.map(processCpuMs);
  return each.some((ms) => ms === undefined) ? undefined : each.reduce((a: number, b) => a + b!, 0);
}

function rssMb(pid: number): number {
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kb ? Number(kb) / 1024 : 0;
  } catch {
    return 0;
  }
}

function slope(values: number[]): number {
  if (values.length < 2) return 0;
  const n = values.length;
  const meanX = (n - 1) / 2;
  const meanY = values.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  values.forEach((y, x) => {
    num += (x - meanX) * (y - meanY);
    den += (x - meanX) ** 2;
  });
  return Number((num / den).toFixed(2));
}
