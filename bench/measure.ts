// Figures (median, min, max of several runs), a memory sampler, and what else ran on the machine
// while we measured (the benchmark shares its two cores with whatever else is running).
import { cpus, loadavg } from "node:os";
import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

// `tsx bench/run.ts` runs without --expose-gc; this is the documented way to get gc() anyway.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** A full collection before a measured run, so that garbage left by an earlier one is not collected during it. */
export function collectGarbage(): void {
  gc();
}

export interface Figure {
  median: number;
  min: number;
  max: number;
  runs: number[];
  unit: string;
}

export function figure(runs: number[], unit: string, digits = 1): Figure {
  if (runs.length === 0) throw new Error("a figure needs at least one run");
  const sorted = [...runs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  const round = (n: number) => Number(n.toFixed(digits));
  return { median: round(median), min: round(sorted[0]!), max: round(sorted[sorted.length - 1]!), runs: runs.map(round), unit };
}

/** Throughput of each run from its duration. */
export function ratePerSecond(count: number, durationsMs: number[]): Figure {
  return figure(durationsMs.map((ms) => (count * 1000) / ms), "obligations/s", 0);
}

export async function timed<T>(work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await work();
  return { ms: performance.now() - started, value };
}

export interface MemoryPeak {
  rssMb: number;
  heapUsedMb: number;
  /** Growth over the values just before the measured work. */
  rssGrowthMb: number;
  heapGrowthMb: number;
}

/** Samples process.memoryUsage() every few milliseconds while `work` runs. */
export async function withMemoryPeak<T>(work: () => Promise<T>, everyMs = 2): Promise<{ value: T; peak: MemoryPeak }> {
  const before = process.memoryUsage();
  let rss = before.rss;
  let heap = before.heapUsed;
  const sample = () => {
    const now = process.memoryUsage();
    rss = Math.max(rss, now.rss);
    heap = Math.max(heap, now.heapUsed);
  };
  const timer = setInterval(sample, everyMs);
  try {
    const value = await work();
    sample();
    const mb = (bytes: number) => Number((bytes / 1024 / 1024).toFixed(1));
    return { value, peak: { rssMb: mb(rss), heapUsedMb: mb(heap), rssGrowthMb: mb(rss - before.rss), heapGrowthMb: mb(heap - before.heapUsed) } };
  } finally {
    clearInterval(timer);
  }
}

function cpuTicks(): { busy: number; total: number } {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  const total = fields.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** How busy the whole machine was (all processes, 0..1) while `work` ran. */
export async function withMachineLoad<T>(work: () => Promise<T>): Promise<{ value: T; busy: number }> {
  const before = cpuTicks();
  const value = await work();
  const after = cpuTicks();
  const total = after.total - before.total;
  return { value, busy: total > 0 ? Number(((after.busy - before.busy) / total).toFixed(2)) : 0 };
}

/** CPU time (user + system) a process has used so far, in ms; undefined when it is gone or /proc is not there. */
export function processCpuMs(pid: number): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // USER_HZ
  } catch {
    return undefined;
  }
}

export function machine(): { cores: number; model: string; loadavg: number[]; node: string } {
  return { cores: cpus().length, model: cpus()[0]?.model ?? "unknown", loadavg: loadavg().map((n) => Number(n.toFixed(2))), node: process.version };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function waitUntil(probe: () => Promise<boolean>, options: { timeoutMs: number; what: string; everyMs?: number }): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${options.what}`);
    await sleep(options.everyMs ?? 20);
  }
}
