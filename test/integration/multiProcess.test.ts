import { describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { scanForOrphans } from "../../src/jobs/scan.js";
import { givenOrphans } from "../helpers/orphans.js";
import { testPipeline } from "../helpers/pipeline.js";
import { spawnCli, waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";

const database = await testDb();
const pipeline = testPipeline(database);
const { ctx } = pipeline;

function workerEnv(): Record<string, string> {
  return {
    DATABASE_URL: database.url,
    REDIS_URL: pipeline.config.REDIS_URL,
    QUEUE_PREFIX: ctx.queues.prefix,
    WORKER_CONCURRENCY: "8",
    HEALING_BACKOFF_MS: "50",
    HEALING_SCAN_EVERY_MS: "3600000",
    LOG_LEVEL: "warn",
  };
}

describe("several worker processes side by side", () => {
  it("two processes starting at once register one schedule, not two", async () => {
    const workers = [spawnCli(["worker"], workerEnv()), spawnCli(["worker"], workerEnv())];
    await waitFor(async () => (await ctx.queues.reconciliation.getJobSchedulersCount()) > 1 && (await ctx.queues.healing.getJobSchedulersCount()) > 0, {
      timeoutMs: 30_000,
      what: "schedulers",
    });
    await new Promise((r) => setTimeout(r, 1000));
    expect((await ctx.queues.healing.getJobSchedulers()).map((s) => s.key)).toEqual(["dispersal-healing-scan"]);
    // The daily incremental run and the weekly full sweep, once each.
    expect(await ctx.queues.reconciliation.getJobSchedulersCount()).toBe(2);
    expect((await ctx.queues.reconciliation.getJobSchedulers()).map((s) => ({ key: s.key, pattern: s.pattern, tz: s.tz })).sort((a, b) => a.key.localeCompare(b.key))).toEqual([
      { key: "dispersal-reconciliation-daily", pattern: "0 7 * * *", tz: "UTC" },
      { key: "dispersal-reconciliation-weekly-full", pattern: "30 7 * * 0", tz: "UTC" },
    ]);
    expect(await Promise.all(workers.map((w) => w.stop("SIGTERM")))).toEqual([0, 0]);
  });

  it("three workers disperse 2,000 orphans exactly once each, sharing the work", async () => {
    const orphans = await givenOrphans(database, { count: 2000, perMortgage: 40 });
    const workers = [0, 1, 2].map(() => spawnCli(["worker"], workerEnv()));
    const summary = await scanForOrphans(ctx);
    expect(summary.found).toBe(2000);
    expect(summary.enqueued).toBe(2000);

    await waitFor(
      async () => {
        const [row] = await database.db.execute<{ left: bigint }>(sql`select count(*) as left from obligations where status = 'settled' and not dispersed`);
        return row!.left === 0n;
      },
      { timeoutMs: 90_000, what: "every orphan dispersed" },
    );
    const [counts] = await database.db.execute<{ entries: bigint; pairs: bigint; postings: bigint; keys: bigint; wrong: bigint }>(sql`
      select (select count(*) from dispersal_entries) as entries,
             (select count(distinct (obligation_id, lender_id)) from dispersal_entries) as pairs,
             (select count(*) from cash_journal_entries where entry_type = 'LENDER_PAYABLE_CREATED') as postings,
             (select count(distinct idempotency_key) from cash_journal_entries) as keys,
             (select count(*) from obligations o
               where (select sum(amount) from dispersal_entries d where d.obligation_id = o.id) <> o.amount) as wrong`);
    expect(counts).toEqual({ entries: 6000n, pairs: 6000n, postings: 6000n, keys: 6000n, wrong: 0n });
    expect(orphans.obligationIds).toHaveLength(2000);

    const completed = await ctx.queues.retrigger.getJobs(["completed"], 0, 999);
    const byProcess = new Map<string, number>();
    for (const job of completed) byProcess.set(job.processedBy ?? "?", (byProcess.get(job.processedBy ?? "?") ?? 0) + 1);
    const pids = new Set([...byProcess.keys()].map((name) => name.split(":").pop()));
    expect(pids).toEqual(new Set(workers.map((w) => String(w.pid))));
    for (const n of byProcess.values()) expect(n).toBeGreaterThan(50);
    expect(await Promise.all(workers.map((w) => w.stop("SIGTERM")))).toEqual([0, 0, 0]);
  });
});
