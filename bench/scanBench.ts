// §1 Scan: find and enqueue the orphans among N settled obligations, ours (scanForOrphans with a
// real queue) against the original per-obligation algorithm, with our peak memory and the plan of
// the scan's page query.
import { sql } from "drizzle-orm";
import { orphanPageQuery } from "../src/db/healing.js";
import { scanForOrphans } from "../src/jobs/scan.js";
import { benchQueuePrefix, createBenchDatabase } from "./benchResources.js";
import { openBenchPipeline, type BenchPipeline } from "./benchPipeline.js";
import { collectGarbage, figure, withMemoryPeak, type Figure } from "./measure.js";
import { runOriginalScan } from "./originalScan.js";
import { healOrphansDownTo, ledgerDefects, seedScanHistory } from "./benchData.js";

/** Which series a point belongs to: about 1% orphans, exactly 100, or 0.01%. */
export type ScanSeries = "1%" | "100 orphans" | "0.01%";

export interface ScanPoint {
  series: ScanSeries;
  settled: number;
  orphans: number;
  /** Orphans as a share of the settled obligations, in percent. */
  orphanPercent: number;
  ours: Figure;
  peakRssMb: Figure;
  heapGrowthMb: Figure;
}

export interface OriginalPoint {
  series: ScanSeries;
  settled: number;
  orphans: number;
  /** Extrapolated: load every id + (time of the sample) × settled / sample. */
  extrapolated: Figure;
  loadIds: Figure;
  sample: number;
  perObligationMs: Figure;
  peakRssMb: Figure;
  heapGrowthMb: Figure;
}

export interface ScanPlan {
  series: ScanSeries;
  settled: number;
  orphans: number;
  usesPartialIndex: boolean;
  seqScanOnObligations: boolean;
  executionMs: number;
  plan: string;
}

export interface ScanSectionResult {
  points: ScanPoint[];
  original: OriginalPoint[];
  plans: ScanPlan[];
  seeding: Array<{ settled: number; orphans: number; journalEntries: number; ms: number; ledgerDefects: Record<string, number> | "not checked" }>;
}

export interface ScanSectionOptions {
  sizes: number[];
  runs: number;
  originalSample: number;
  /** Sizes at which the plan of the page query is recorded. */
  explainAt: number[];
  /** Check every account's totals against its journal lines after seeding, up to this size. */
  checkLedgerUpTo: number;
  say(line: string): void;
}

export async function runScanSection(options: ScanSectionOptions): Promise<ScanSectionResult> {
  const result: ScanSectionResult = { points: [], original: [], plans: [], seeding: [] };
  for (const settled of options.sizes) {
    const label = settled >= 1_000_000 ? `${settled / 1_000_000}m` : `${settled / 1000}k`;
    const database = await createBenchDatabase(`scan_${label}`);
    const pipeline = openBenchPipeline(database, benchQueuePrefix(`scan-${label}`));
    try {
      const started = performance.now();
      const seeded = await seedScanHistory(database, {
        settled,
        orphanShare: 0.01,
        onProgress: (done) => options.say(`  seeding ${label}: ${done.toLocaleString("en")} settled obligations`),
      });
      const seedMs = Math.round(performance.now() - started);
      const defects = settled <= options.checkLedgerUpTo ? await ledgerDefects(database) : "not checked";
      result.seeding.push({ settled, orphans: seeded.orphans, journalEntries: seeded.journalEntries, ms: seedMs, ledgerDefects: defects });
      options.say(
        `  seeded ${label}: ${seeded.orphans.toLocaleString("en")} orphans, ${seeded.journalEntries.toLocaleString("en")} journal lines in ${(seedMs / 1000).toFixed(1)} s; ledger defects: ${JSON.stringify(defects)}`,
      );

      // Most orphans first: each point heals the previous one's surplus (healing cannot make orphans).
      const series: Array<{ series: ScanSeries; orphans: number }> = [
        { series: "1%" as const, orphans: seeded.orphans },
        { series: "100 orphans" as const, orphans: 100 },
        { series: "0.01%" as const, orphans: Math.max(1, Math.round(settled / 10_000)) },
      ].sort((a, b) => b.orphans - a.orphans);
      for (const { series: name, orphans } of series) {
        if (orphans > seeded.orphans || (name === "100 orphans" && (orphans === seeded.orphans || orphans === settled / 10_000))) continue;
        const healed = await healOrphansDownTo(database, orphans);
        if (healed > 0) options.say(`  healed ${healed.toLocaleString("en")} orphans (real dispersals) to leave ${orphans}`);
        const point = await measureOurScan(pipeline, name, settled, orphans, options.runs);
        result.points.push(point);
        options.say(`  ours     N=${label} orphans=${orphans}: ${point.ours.median} ms (min ${point.ours.min}, max ${point.ours.max}); peak RSS ${point.peakRssMb.max} MB`);
        if (name === "100 orphans") continue;
        if (options.explainAt.includes(settled)) result.plans.push(await explainScanPage(pipeline, name, settled, orphans));
        const original = await measureOriginalScan(pipeline, name, settled, orphans, options);
        result.original.push(original);
        options.say(
          `  original N=${label} orphans=${orphans}: ${(original.extrapolated.median / 1000).toFixed(1)} s extrapolated from ${original.sample.toLocaleString("en")} obligations (load ids ${original.loadIds.median} ms)`,
        );
      }
    } finally {
      await pipeline.close();
      await database.drop();
    }
  }
  return result;
}

async function emptyRetriggerQueue(pipeline: BenchPipeline): Promise<void> {
  await pipeline.ctx.queues.retrigger.obliterate({ force: true });
}

async function measureOurScan(pipeline: BenchPipeline, series: ScanSeries, settled: number, orphans: number, runs: number): Promise<ScanPoint> {
  const durations: number[] = [];
  const rss: number[] = [];
  const heap: number[] = [];
  for (let run = -1; run < runs; run++) {
    await emptyRetriggerQueue(pipeline);
    collectGarbage();
    const started = performance.now();
    const { value: summary, peak } = await withMemoryPeak(() => scanForOrphans(pipeline.ctx, "bench"));
    const ms = performance.now() - started;
    if (summary.found !== orphans || summary.enqueued !== orphans) {
      throw new Error(`scan of N=${settled} found ${summary.found} and enqueued ${summary.enqueued}, expected ${orphans}`);
    }
    if (run < 0) continue; // warm-up: connections, prepared statements, Lua scripts
    durations.push(ms);
    rss.push(peak.rssMb);
    heap.push(peak.heapGrowthMb);
  }
  await emptyRetriggerQueue(pipeline);
  return {
    series,
    settled,
    orphans,
    orphanPercent: Number(((orphans / settled) * 100).toFixed(4)),
    ours: figure(durations, "ms"),
    peakRssMb: figure(rss, "MB"),
    heapGrowthMb: figure(heap, "MB"),
  };
}

async function measureOriginalScan(pipeline: BenchPipeline, series: ScanSeries, settled: number, orphans: number, options: ScanSectionOptions): Promise<OriginalPoint> {
  const runs = [];
  for (let run = -1; run < options.runs; run++) {
    await emptyRetriggerQueue(pipeline);
    collectGarbage();
    const measured = await runOriginalScan(pipeline.ctx.database, pipeline.ctx.queues, { sample: options.originalSample, backoffMs: pipeline.config.HEALING_BACKOFF_MS });
    if (run >= 0) runs.push(measured); // the first run warms the caches, as ours does
  }
  await emptyRetriggerQueue(pipeline);
  if (runs.some((r) => r.settled !== settled)) throw new Error(`original scan loaded ${runs[0]!.settled} ids, expected ${settled}`);
  return {
    series,
    settled,
    orphans,
    extrapolated: figure(runs.map((r) => r.extrapolatedMs), "ms", 0),
    loadIds: figure(runs.map((r) => r.loadIdsMs), "ms"),
    sample: runs[0]!.sample,
    perObligationMs: figure(runs.map((r) => r.sampleMs / r.sample), "ms", 3),
    peakRssMb: figure(runs.map((r) => r.memory.rssMb), "MB"),
    heapGrowthMb: figure(runs.map((r) => r.memory.heapGrowthMb), "MB"),
  };
}

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  Plans?: PlanNode[];
}

function planNodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(planNodes)];
}

/** EXPLAIN (ANALYZE) of the very query findOrphanedObligations sends for the first page. */
async function explainScanPage(pipeline: BenchPipeline, series: ScanSeries, settled: number, orphans: number): Promise<ScanPlan> {
  const { db } = pipeline.ctx.database;
  const page = orphanPageQuery({ after: null, limit: pipeline.config.HEALING_SCAN_PAGE_SIZE });
  const [json] = await db.execute<{ "QUERY PLAN": Array<{ Plan: PlanNode; "Execution Time": number }> }>(
    sql`explain (analyze, buffers, format json) ${page}`,
  );
  const text = await db.execute<{ "QUERY PLAN": string }>(sql`explain (analyze, buffers) ${page}`);
  const nodes = planNodes(json!["QUERY PLAN"][0]!.Plan);
  return {
    series,
    settled,
    orphans,
    usesPartialIndex: nodes.some((n) => n["Index Name"] === "obligations_healing_scan_idx"),
    seqScanOnObligations: nodes.some((n) => n["Node Type"] === "Seq Scan" && n["Relation Name"] === "obligations"),
    executionMs: json!["QUERY PLAN"][0]!["Execution Time"],
    plan: text.map((r) => r["QUERY PLAN"]).join("\n"),
  };
}
