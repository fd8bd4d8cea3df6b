// One fault scenario's world: its own database (cloned from the template), its own queue prefix, an
// in-test pipeline context (for scans and queue inspection), worker processes of the real CLI, and
// the orphans it seeds. close() ends every process and removes the database and the queue keys.
import { randomBytes } from "node:crypto";
import { sql } from "drizzle-orm";
import { loadConfig, type Config } from "../../src/config.js";
import { connectDatabase, type Database } from "../../src/db/client.js";
import type { PipelineContext } from "../../src/jobs/context.js";
import { scanForOrphans, type ScanSummary } from "../../src/jobs/scan.js";
import { log } from "../../src/log.js";
import { createRedisConnection } from "../../src/queues/connection.js";
import { openQueues } from "../../src/queues/queues.js";
import { TEST_REDIS_URL } from "../helpers/env.js";
import { givenOrphans } from "../helpers/orphans.js";
import { createTestDatabase } from "../helpers/testDb.js";
import { deleteKeysWithPrefix } from "../helpers/redisKeys.js";
import { ChildGroup, sleep, waitFor, type Child } from "./children.js";

/** Timings of every worker process of the suite: fast retries, fast stall detection, no scheduled scans. */
export const FAST_WORKER_SETTINGS = {
  HEALING_BACKOFF_MS: "200",
  WORKER_LOCK_DURATION_MS: "2000",
  WORKER_STALLED_INTERVAL_MS: "1000",
  INFRA_RETRY_DELAY_MS: "300",
  HEALING_SCAN_EVERY_MS: "3600000",
  WORKER_CONCURRENCY: "8",
  LOG_LEVEL: "warn",
} as const;

export interface ScenarioOptions {
  redisUrl?: string;
  /** host:port,… of a Redis Cluster; the prefix must then carry a hash tag. */
  clusterNodes?: string;
  prefix?: string;
  /** A database of the scenario's own servers (migrated by the caller) instead of a clone on the shared cluster. */
  database?: { name: string; url: string; drop(): Promise<void> };
}

export interface Orphans {
  fixable: string[];
  /** On mortgages whose positions are all zero: they can only end escalated. */
  unfixable: string[];
}

/** A timestamped line on the test's output: how long each phase of a fault scenario took. */
export function note(message: string, fields: Record<string, unknown> = {}): void {
  if (process.env.FAULTS_QUIET) return;
  process.stderr.write(`[faults ${new Date().toISOString().slice(11, 23)}] ${message}${Object.keys(fields).length ? ` ${JSON.stringify(fields, (_k, v) => (typeof v === "bigint" ? Number(v) : v))}` : ""}\n`);
}

export class Scenario {
  readonly children = new ChildGroup();
  private constructor(
    readonly databaseName: string,
    readonly databaseUrl: string,
    /** The test's own connection (application_name fault-check: never a target of pg_terminate_backend). */
    readonly database: Database,
    readonly ctx: PipelineContext,
    readonly config: Config,
    private readonly dropDatabase: () => Promise<void>,
    private readonly options: ScenarioOptions,
  ) {}

  static async open(options: ScenarioOptions = {}): Promise<Scenario> {
    const created = options.database ?? (await createTestDatabase());
    const database = connectDatabase(created.url, { max: 6, applicationName: "fault-check" });
    const prefix = options.prefix ?? `{f${randomBytes(5).toString("hex")}}`;
    const config = loadConfig({
      DATABASE_URL: created.url,
      REDIS_URL: options.redisUrl ?? TEST_REDIS_URL,
      ...(options.clusterNodes ? { REDIS_CLUSTER_NODES: options.clusterNodes } : {}),
      QUEUE_PREFIX: prefix,
      ...FAST_WORKER_SETTINGS,
    });
    const connection = createRedisConnection(config, "fault-check");
    connection.on("error", () => {}); // Redis faults are the point here; the scans retry through them
    const queues = openQueues(connection, prefix);
    const ctx: PipelineContext = { database, readers: database, queues, settings: config, log };
    return new Scenario(created.name, created.url, database, ctx, config, created.drop, options);
  }

  get prefix(): string {
    return this.ctx.queues.prefix;
  }

  /** Environment of a worker process of this scenario. */
  workerEnv(overrides: Record<string, string> = {}): Record<string, string> {
    return {
      DATABASE_URL: this.databaseUrl,
      REDIS_URL: this.config.REDIS_URL,
      ...(this.options.clusterNodes ? { REDIS_CLUSTER_NODES: this.options.clusterNodes } : {}),
      QUEUE_PREFIX: this.prefix,
      ...FAST_WORKER_SETTINGS,
      ...overrides,
    };
  }

  spawnWorker(name: string, overrides: Record<string, string> = {}): Child {
    return this.children.cli(name, ["worker"], this.workerEnv(overrides));
  }

  /**
   * Orphans in flight: `fixable` on mortgages with positions 5000/3000/2000 (a third of them
   * regular_interest with a servicing fee, so the fee entry and posting are exercised too) and
   * `unfixable` on mortgages whose positions are all zero.
   */
  async seedOrphans(options: { fixable: number; unfixable: number }): Promise<Orphans> {
    const set = await givenOrphans(this.database, { count: options.fixable + options.unfixable, unfixable: options.unfixable, perMortgage: 25 });
    const unfixable = new Set(set.unfixableIds);
    const fixable = set.obligationIds.filter((id) => !unfixable.has(id));
    await this.database.db.execute(sql`
      with fee_mortgages as (
        select distinct o.mortgage_id from obligations o
         where o.id in (select (jsonb_array_elements_text(${JSON.stringify(fixable)}::jsonb))::uuid)
           and ('x' || substr(o.mortgage_id::text, 1, 8))::bit(32)::int % 3 = 0),
      m as (update mortgages set servicing_fee_bps = 75 where id in (select mortgage_id from fee_mortgages) returning id)
      update obligations set type = 'regular_interest' where mortgage_id in (select id from m)`);
    return { fixable, unfixable: set.unfixableIds };
  }

  /** How many of the settled obligations are finished: dispersed, or escalated to SUSPENSE. */
  async progress(): Promise<{ settled: number; dispersed: number; escalated: number; open: number }> {
    const [row] = await this.database.db.execute<{ settled: bigint; dispersed: bigint; escalated: bigint }>(sql`
      select count(*) as settled,
             count(*) filter (where o.dispersed) as dispersed,
             count(*) filter (where not o.dispersed and h.status = 'escalated') as escalated
        from obligations o left join dispersal_healing_attempts h on h.obligation_id = o.id
       where o.status = 'settled'`);
    const settled = Number(row!.settled);
    const dispersed = Number(row!.dispersed);
    const escalated = Number(row!.escalated);
    return { settled, dispersed, escalated, open: settled - dispersed - escalated };
  }

  async waitForProgress(share: number, timeoutMs = 60_000): Promise<void> {
    await this.explainFailure(
      waitFor(
        async () => {
          const p = await this.progress();
          return (p.dispersed + p.escalated) / Math.max(1, p.settled) >= share;
        },
        { timeoutMs, what: `${Math.round(share * 100)}% of the orphans finished`, everyMs: 50 },
      ),
    );
  }

  /** What the processes and the queue were doing, appended to the error of a wait that timed out. */
  async explainFailure<T>(work: Promise<T>): Promise<T> {
    try {
      return await work;
    } catch (error) {
      const counts = await this.ctx.queues.retrigger.getJobCounts().catch((e: Error) => e.message);
      const progress = await this.progress().catch((e: Error) => e.message);
      const children = [...this.children.all()].map((c) => `--- ${c.name} (pid ${c.pid}, ${c.alive() ? "alive" : "exited"}):\n${c.output().slice(-3000)}`);
      (error as Error).message += `\nqueue: ${JSON.stringify(counts)}\nprogress: ${JSON.stringify(progress)}\n${children.join("\n")}`;
      throw error;
    }
  }

  /** Retrigger jobs still live in Redis (waiting, active, delayed, prioritized). */
  async liveJobs(): Promise<number> {
    const counts = await this.ctx.queues.retrigger.getJobCounts("waiting", "active", "delayed", "prioritized", "waiting-children");
    return Object.values(counts).reduce((a, b) => a + b, 0);
  }

  /** No live job and no change in the database for `quietMs`. */
  async waitQuiescent(options: { timeoutMs?: number; quietMs?: number } = {}): Promise<void> {
    const quietMs = options.quietMs ?? 1500;
    let last = "";
    let since = Date.now();
    await this.explainFailure(waitFor(
      async () => {
        const [live, p] = await Promise.all([this.liveJobs(), this.progress()]);
        const [attempts] = await this.database.db.execute<{ fingerprint: string }>(sql`
          select coalesce(sum(attempt_count), 0)::text || '/' || count(*)::text || '/' || coalesce(max(updated_at)::text, '') as fingerprint
            from dispersal_healing_attempts`);
        const state = `${live}|${p.dispersed}|${p.escalated}|${attempts!.fingerprint}`;
        if (state !== last || live > 0) {
          last = state;
          since = Date.now();
          return false;
        }
        return Date.now() - since >= quietMs;
      },
      { timeoutMs: options.timeoutMs ?? 90_000, what: "the queue to drain and the database to be quiet", everyMs: 250 },
    ));
  }

  /**
   * Lets the pipeline finish the way production does: wait until nothing moves, scan (enqueue what
   * is left, backstop-escalate rounds whose escalation was lost), repeat until a scan finds nothing.
   */
  async settle(options: { timeoutMs?: number; maxScans?: number } = {}): Promise<ScanSummary[]> {
    const scans: ScanSummary[] = [];
    const deadline = Date.now() + (options.timeoutMs ?? 120_000);
    for (let round = 0; round < (options.maxScans ?? 6); round++) {
      await this.waitQuiescent({ timeoutMs: Math.max(5_000, deadline - Date.now()) });
      const summary = await scanForOrphans(this.ctx, "fault-suite");
      scans.push(summary);
      note("settle: scan", { ...summary });
      if (summary.found === 0) return scans;
      await sleep(300);
    }
    return scans;
  }

  private closing: Promise<void> | undefined;

  /** Ends every process of the scenario, closes its connections, drops its database (once). */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    await this.children.killAll();
    await this.ctx.queues.close().catch(() => {});
    this.ctx.queues.connection.disconnect();
    if (!this.options.clusterNodes) await deleteKeysWithPrefix(this.config.REDIS_URL, this.prefix).catch(() => {});
    await this.database.close();
    await this.dropDatabase();
  }
}
