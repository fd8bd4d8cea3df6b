// §7 Readers (issue "Postgres and Redis as they fail in production", item 5): the payments intake's
// latency while six viewers loop on a search whose trigrams every mortgage reference shares (a
// 200-character query), beside the same latency with nobody searching, in one run against one
// `server` and two `worker` processes. Run twice: with the product's search throttle
// (SEARCHES_PER_USER_PER_MINUTE's default), and with it lifted, so that the readers' own pool,
// statement timeout and bounded query alone protect the writers.
import { fileURLToPath } from "node:url";
import { seedObligations } from "../src/db/seed.js";
import { runSimulation } from "../src/settlementSimulation.js";
import { benchQueuePrefix, createBenchDatabase } from "./benchResources.js";
import { openBenchPipeline, spawnChildren, startWorkerProcesses } from "./benchPipeline.js";
import { waitUntil } from "./measure.js";

const BIN = fileURLToPath(new URL("../bin/dispersal.js", import.meta.url));
const SERVICE = { name: "bench-feed", secret: "bench-feed-service-secret" };
const VIEWERS = Array.from({ length: 6 }, (_, i) => ({ name: `viewer${i}`, secret: `bench-viewer-secret-${i}` }));

export interface ViewersResult {
  ratePerSecond: number;
  durationSeconds: number;
  /** Whether the viewers met the search throttle of the defaults, or none. */
  throttle: "default" | "lifted";
  /** Rounds of each kind, alternated (idle, searching, idle, …) after a discarded warm-up. */
  rounds: number;
  idle: { p50Ms: Spread; p99Ms: Spread; achievedPerSecond: number[] };
  searching: { p50Ms: Spread; p99Ms: Spread; achievedPerSecond: number[]; searches: number; searchAnswers: Record<string, number> };
  /** Median p99 of a payment while six viewers search ÷ median p99 with nobody searching (target ≤ 2). */
  p99Ratio: number | null;
}

/** The median of several rounds and their range. */
export interface Spread {
  median: number | null;
  min: number | null;
  max: number | null;
}

function spread(values: Array<number | null>): Spread {
  const known = values.filter((v): v is number => v !== null).sort((a, b) => a - b);
  if (known.length === 0) return { median: null, min: null, max: null };
  const mid = Math.floor(known.length / 2);
  const median = known.length % 2 === 1 ? known[mid]! : (known[mid - 1]! + known[mid]!) / 2;
  return { median: Number(median.toFixed(1)), min: known[0]!, max: known[known.length - 1]! };
}

export async function runViewersSection(options: { rate: number; durationSeconds: number; rounds: number; say(line: string): void }): Promise<ViewersResult[]> {
  const results: ViewersResult[] = [];
  for (const throttle of ["default", "lifted"] as const) {
    options.say(`  search throttle ${throttle}`);
    results.push(await viewersRun({ ...options, throttle }));
  }
  return results;
}

async function viewersRun(options: { rate: number; durationSeconds: number; rounds: number; throttle: "default" | "lifted"; say(line: string): void }): Promise<ViewersResult> {
  const database = await createBenchDatabase("viewers", { max: 4 });
  const prefix = benchQueuePrefix("viewers");
  const pipeline = openBenchPipeline(database, prefix);
  const needed = options.rate * options.durationSeconds * (2 * options.rounds + 1); // every run pays its own obligations
  await seedObligations(database, { mortgages: Math.ceil((needed * 1.4) / 10), obligations: Math.ceil(needed * 1.4), settledShare: 0, lendersPerMortgage: { min: 2, max: 6 }, withHistoricalDispersals: false });
  await database.sql`vacuum analyze`;
  const users = [`${SERVICE.name}:service:${SERVICE.secret}`, ...VIEWERS.map((v) => `${v.name}:viewer:${v.secret}`)].join(",");
  const env = { OPS_USERS: users, ...(options.throttle === "lifted" ? { SEARCHES_PER_USER_PER_MINUTE: "1000000" } : {}) };
  const workers = await startWorkerProcesses(pipeline, 2, env);
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  // BENCH_SERVER_CPU_PROF=<dir>: the server writes V8 CPU profiles into <dir>/<throttle>/ when it stops
  // (node --cpu-prof: one per thread; the main thread's is the largest, tsx's loader thread has one too).
  const profile = process.env.BENCH_SERVER_CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_SERVER_CPU_PROF}/${options.throttle}`] : [];
  const server = spawnChildren(1, [...profile, BIN, "server"], {
    DATABASE_URL: database.url, REDIS_URL: pipeline.config.REDIS_URL, QUEUE_PREFIX: prefix,
    HEALING_SCAN_EVERY_MS: String(24 * 3600 * 1000), LOG_LEVEL: "warn", PORT: String(port), ...env,
  }, "server");
  const baseUrl = `http://127.0.0.1:${port}`;
  const pay = () => runSimulation(pipeline.ctx, { baseUrl, credentials: SERVICE, ratePerSecond: options.rate, durationSeconds: options.durationSeconds, waitSeconds: 30 });
  type Run = Awaited<ReturnType<typeof pay>>;
  try {
    await waitUntil(async () => (await fetch(`${baseUrl}/readyz`).catch(() => undefined))?.ok === true, { timeoutMs: 60_000, what: "the server", everyMs: 200 });
    await pay(); // warm-up (connections, JIT, caches): not counted

    // Every reference is SEED-<tag>-<7 digits>: each trigram of this query is in all of them.
    const query = encodeURIComponent("SEED-".repeat(40));
    const searchAnswers: Record<string, number> = {};
    let searches = 0;
    const whileSearching = async (): Promise<Run> => {
      let stop = false;
      const loops = VIEWERS.map(async (viewer) => {
        const authorization = `Basic ${Buffer.from(`${viewer.name}:${viewer.secret}`).toString("base64")}`;
        while (!stop) {
          const answer = await fetch(`${baseUrl}/api/search?q=${query}`, { headers: { authorization } }).catch(() => undefined);
          await answer?.arrayBuffer().catch(() => undefined);
          const status = String(answer?.status ?? "error");
          searchAnswers[status] = (searchAnswers[status] ?? 0) + 1;
          searches++;
        }
      });
      try {
        return await pay();
      } finally {
        stop = true;
        await Promise.all(loops);
      }
    };
    const idle: Run[] = [];
    const searching: Run[] = [];
    for (let round = 0; round < options.rounds; round++) {
      idle.push(await pay());
      searching.push(await whileSearching());
      options.say(`  round ${round + 1}: payment p99 ${idle[round]!.payments.httpMs.p99} ms idle, ${searching[round]!.payments.httpMs.p99} ms with six viewers searching`);
    }
    const p99 = (runs: Run[]) => spread(runs.map((r) => r.payments.httpMs.p99));
    const p50 = (runs: Run[]) => spread(runs.map((r) => r.payments.httpMs.p50));
    const idleP99 = p99(idle).median;
    const searchingP99 = p99(searching).median;
    return {
      ratePerSecond: options.rate,
      durationSeconds: options.durationSeconds,
      throttle: options.throttle,
      rounds: options.rounds,
      idle: { p50Ms: p50(idle), p99Ms: p99(idle), achievedPerSecond: idle.map((r) => r.payments.achievedPerSecond) },
      searching: { p50Ms: p50(searching), p99Ms: p99(searching), achievedPerSecond: searching.map((r) => r.payments.achievedPerSecond), searches, searchAnswers },
      p99Ratio: idleP99 && searchingP99 ? Number((searchingP99 / idleP99).toFixed(2)) : null,
    };
  } finally {
    await server.stop();
    await workers.stop();
    await pipeline.close();
    await database.drop();
  }
}

export function renderViewers(r: ViewersResult): string {
  const range = (p: Spread) => `${p.median} ms (${p.min}–${p.max})`;
  const row = (name: string, p50: Spread, p99: Spread) => `${name.padEnd(24)} p50 ${range(p50).padEnd(22)} p99 ${range(p99)}`;
  return [
    `§7 Readers (search throttle ${r.throttle}): payments intake at ${r.ratePerSecond}/s, ${r.rounds} rounds of ${r.durationSeconds} s each way (medians, min–max), one server, two workers`,
    row("nobody searching", r.idle.p50Ms, r.idle.p99Ms),
    row("six viewers searching", r.searching.p50Ms, r.searching.p99Ms),
    `searches answered: ${r.searching.searches} ${JSON.stringify(r.searching.searchAnswers)}`,
    `p99 ratio (searching ÷ idle, medians): ${r.p99Ratio ?? "n/a"} — target <= 2: ${r.p99Ratio !== null && r.p99Ratio <= 2 ? "met" : "NOT met"}`,
  ].join("\n");
}
