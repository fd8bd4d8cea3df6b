// A model of the whole lifecycle: fast-check drives random command sequences (settle obligations with
// or without cash, or while workers with a settlement listener run; break and repair a mortgage's positions, scan, let the workers run, kill a worker
// at a failpoint, flush Redis, terminate Postgres connections under the workers, requeue, reconcile;
// and what other systems do: late cash, a payment returned, entries deleted, an escalation waived
// or moved to another mortgage)
// against the real services, and a small pure model predicts each obligation's outcome. After every
// command the ledger invariants hold; after the final recovery every obligation is dispersed or
// escalated exactly once per round, as the model says.
//   MODEL_RUNS (default 100) runs; a failure prints its seed and path: MODEL_SEED=… MODEL_PATH=… replays it.
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { sql } from "drizzle-orm";
import fc from "fast-check";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { connectDatabase, isOutage } from "../../src/db/client.js";
import { topUpSuspense } from "../../src/db/healing.js";
import { returnPayment } from "../../src/db/payments.js";
import { ObligationNotSettledError } from "../../src/domain/errors.js";
import { postEntries } from "../../src/db/ledger.js";
import { runReconciliation } from "../../src/db/reconciliation.js";
import type { FailpointName } from "../../src/failpoint.js";
import { idempotencyKeys } from "../../src/domain/ledgerRules.js";
import { accrualAndCash } from "../helpers/factories.js";
import type { PipelineContext } from "../../src/jobs/context.js";
import { requestRequeue } from "../../src/jobs/requeue.js";
import { scanForOrphans } from "../../src/jobs/scan.js";
import { startSettlementListener } from "../../src/jobs/settlementListener.js";
import { startWorkers } from "../../src/jobs/worker.js";
import { log } from "../../src/log.js";
import { createRedisConnection } from "../../src/queues/connection.js";
import { openQueues } from "../../src/queues/queues.js";
import { createTestDatabase } from "../helpers/testDb.js";
import { ChildGroup, sleep, waitFor } from "./children.js";
import { recordFaults } from "./faultCounts.js";
import { ephemeralPort, makeTempDir, startRedis } from "./redisServers.js";
import { note } from "./scenario.js";

const RUNS = Number(process.env.MODEL_RUNS ?? 100);
const SEED = process.env.MODEL_SEED ? Number(process.env.MODEL_SEED) : Math.floor(Math.random() * 2 ** 31);
const PATH = process.env.MODEL_PATH;
const WORKER_APP = "dispersal-model-worker";

// ---------------------------------------------------------------------------------------------
// The services: a Redis of this file's own (flushed at will), one database, in-process workers.
const children = new ChildGroup();
const redisDir = makeTempDir("model");
const redisPort = await ephemeralPort();
await startRedis(children, redisPort, redisDir.dir);
const redisUrl = `redis://127.0.0.1:${redisPort}`;
const created = await createTestDatabase();
const check = connectDatabase(created.url, { max: 2, applicationName: "model-check" });
const settingsEnv = {
  DATABASE_URL: created.url,
  REDIS_URL: redisUrl,
  QUEUE_PREFIX: "{model}",
  HEALING_BACKOFF_MS: "10",
  WORKER_LOCK_DURATION_MS: "1000",
  WORKER_STALLED_INTERVAL_MS: "500",
  INFRA_RETRY_DELAY_MS: "50",
  HEALING_SCAN_EVERY_MS: "3600000",
  WORKER_CONCURRENCY: "8",
  LOG_LEVEL: "silent",
};
const config = loadConfig(settingsEnv);
const workerDb = connectDatabase(created.url, { max: 6, applicationName: WORKER_APP });
const connection = createRedisConnection(config, "model");
connection.on("error", () => {});
const ctx: PipelineContext = { database: workerDb, readers: workerDb, queues: openQueues(connection, config.QUEUE_PREFIX), settings: config, log };
const admin = new Redis({ host: "127.0.0.1", port: redisPort, maxRetriesPerRequest: 2 });

afterAll(async () => {
  await children.killAll();
  await ctx.queues.close().catch(() => {});
  connection.disconnect();
  admin.disconnect();
  await workerDb.close();
  await check.close();
  await created.drop();
  redisDir.remove();
});

// ---------------------------------------------------------------------------------------------
// The model.
type State = "orphan" | "queued" | "dispersed" | "escalated" | "uncertain" | "unsettled";

interface ModelObligation {
  id: string;
  mortgage: number;
  amount: bigint;
  /** Cash received net of returns. */
  cash: bigint;
  /** It has had a CASH_RECEIVED (returned or not): its net settled cash is then `cash`, not `amount`. */
  hasCash: boolean;
  /** What the journal allocates to it (payables + fee, net of reversals). */
  allocated: bigint;
  state: State;
  requeues: number;
  /** What its SUSPENSE holds: net settled cash − allocated while escalated or requeued, 0 once dispersed. */
  parked: bigint;
  /** Another system waived it while escalated: it stays escalated, and a requeue is refused. */
  waived: boolean;
}

interface Model {
  mortgages: { id: string; fixable: boolean; units: number[] }[];
  obligations: ModelObligation[];
  kills: number;
  /** The journal as it was after the previous command (highest sequence, and a hash of every row up to it). */
  journal: { maxSequence: bigint; hash: string };
}

const settledAmount = (o: ModelObligation) => (o.hasCash ? o.cash : o.amount);
const unallocated = (o: ModelObligation) => (settledAmount(o) > o.allocated ? settledAmount(o) - o.allocated : 0n);
const isFinal = (s: State) => s === "dispersed" || s === "escalated" || s === "unsettled";

/** A round ends dispersed when the journal already allocates the net cash (nothing to split) or the positions can take it. */
function end(model: Model, o: ModelObligation): void {
  if (settledAmount(o) === o.allocated || model.mortgages[o.mortgage]!.fixable) {
    o.state = "dispersed";
    o.allocated = settledAmount(o);
    o.parked = 0n;
  } else {
    o.state = "escalated";
    o.parked = unallocated(o);
  }
}

/** What the healing pipeline does to one obligation once the workers have run its live job. */
function afterDrain(model: Model, o: ModelObligation): void {
  if (o.state === "queued") end(model, o);
}

/** Recovery (scans and workers until a scan finds nothing) ends every obligation by its mortgage's positions. */
function afterRecovery(model: Model, o: ModelObligation): void {
  if (!isFinal(o.state)) end(model, o);
}

/** The scan's backstop tops up what SUSPENSE lacks after cash posted by another system. */
function afterScan(o: ModelObligation): void {
  if (o.state === "orphan") o.state = "queued";
  if (o.state !== "dispersed" && o.parked > 0n && !o.waived) o.parked = unallocated(o);
}

/**
 * Obligations whose SUSPENSE may wait for the next scan's top-up (cash posted by another system after
 * the escalation; an uncertain one may have been escalated again since, which tops it up too).
 */
const awaitingTopUp = (model: Readonly<Model>) => model.obligations.filter((o) => o.parked > 0n && o.parked !== unallocated(o));

/** Dispersed obligations whose entries another system deleted, until the healer restores them (reconciliation names them meanwhile). */
const awaitingRestore = (model: Readonly<Model>) => model.obligations.filter((o) => o.state !== "dispersed" && o.state !== "unsettled" && o.allocated > 0n);

// ---------------------------------------------------------------------------------------------
// The real side of the commands.
async function drain(options: { terminatePostgres?: boolean } = {}): Promise<void> {
  const workers = startWorkers(ctx);
  try {
    if (options.terminatePostgres) {
      await sleep(5 + Math.floor(Math.random() * 30));
      await terminateWorkerConnections();
    }
    await waitFor(async () => (await liveJobs()) === 0, { timeoutMs: 30_000, what: "the retrigger queue to drain", everyMs: 20 });
  } finally {
    await workers.close();
  }
  // An escalation that lost its connection three times is left to the backstop: it is not in the queue any more.
  expect(await liveJobs()).toBe(0);
}

async function liveJobs(): Promise<number> {
  const counts = await ctx.queues.retrigger.getJobCounts("waiting", "active", "delayed", "prioritized", "waiting-children");
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

/** Ends the workers' backends of this test's database (never another database's, never the checker's). */
async function terminateWorkerConnections(): Promise<number> {
  faultsInjected++;
  const rows = await check.db.execute<{ pid: number }>(sql`
    select pg_terminate_backend(pid) as pid from pg_stat_activity
     where datname = ${created.name} and application_name in (${WORKER_APP}, 'dispersal-model-child')`);
  return rows.length;
}

/**
 * A scan or reconciliation that meets a connection the Postgres fault cut fails as a scheduled one
 * would; the next one runs. Here the next one is run at once.
 */
async function retryingOutages<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (!isOutage(error) || attempt >= 10) throw error;
      await sleep(20);
    }
  }
}

const scan = () => retryingOutages(() => scanForOrphans(ctx, "model"));

/** Production's recovery: scan, let the workers run, until a scan finds nothing. */
async function recover(): Promise<void> {
  for (let round = 0; round < 8; round++) {
    const summary = await scan();
    if (summary.found === 0 && (await liveJobs()) === 0) return;
    await drain();
  }
  throw new Error("recovery: the scan still finds orphans after 8 rounds");
}

/** Where a worker is killed (src/failpoint.ts FAILPOINTS), and the HEALING_BATCH_SIZE it runs with. */
const KILL_POINTS: ReadonlyArray<{ at: FailpointName; batchSize: 1 | 8 }> = [
  { at: "retrigger.after-record-failure", batchSize: 1 },
  { at: "dispersal.after-allocate", batchSize: 1 },
  { at: "dispersal.after-record", batchSize: 1 },
  { at: "escalate.before-transaction", batchSize: 1 },
  { at: "escalate.after-commit", batchSize: 1 },
  { at: "dispersal.after-lock", batchSize: 8 },
  { at: "dispersal.before-commit", batchSize: 8 },
  { at: "dispersal.after-commit", batchSize: 8 },
  { at: "dispersal.before-complete", batchSize: 8 },
  { at: "batch.escalate.after-commit", batchSize: 8 },
];

const WORKER_CHILD = fileURLToPath(new URL("./modelWorker.ts", import.meta.url));

/** A worker process with a failpoint armed: it runs the queue until it is killed there (or SIGKILLed once the queue is empty). */
async function killAWorker(killPoint: (typeof KILL_POINTS)[number]): Promise<boolean> {
  const child = children.spawn("model-worker", process.execPath, ["--import", "tsx", WORKER_CHILD], {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? "/root",
    ...settingsEnv,
    DISPERSAL_FAILPOINTS: `${killPoint.at}=kill`,
    HEALING_BATCH_SIZE: String(killPoint.batchSize),
  });
  const idle = waitFor(async () => ((await liveJobs()) === 0 ? true : undefined), { timeoutMs: 30_000, what: "the worker to finish or die", everyMs: 25 });
  const result = await Promise.race([child.exited, idle.then(() => "idle" as const)]);
  void idle.catch(() => {});
  const exit = result === "idle" ? await child.kill("SIGKILL") : result;
  if (exit.signal !== "SIGKILL") throw new Error(`model worker exited by itself (${JSON.stringify(exit)}):\n${child.output().slice(-2000)}`);
  return result !== "idle";
}

async function journalSnapshot(upTo?: bigint): Promise<{ maxSequence: bigint; hash: string }> {
  const [row] = await check.db.execute<{ max: bigint | null; hash: string | null }>(sql`
    select max(sequence) as max,
           md5(string_agg(concat_ws('|', id, sequence, entry_type, effective_date, amount, debit_account_id, credit_account_id,
                                    idempotency_key, mortgage_id, obligation_id, lender_id, reverses_entry_id, reason, metadata::text,
                                    actor, channel, created_at), ',' order by sequence)) as hash
      from cash_journal_entries ${upTo === undefined ? sql`` : sql`where sequence <= ${upTo}`}`);
  return { maxSequence: BigInt(row!.max ?? 0n), hash: row!.hash ?? "" };
}

interface RealObligation {
  id: string;
  dispersed: boolean;
  healing: string | null;
  suspense: bigint;
  settled: bigint;
  escalations: number;
  requeues: number;
}

async function readObligations(ids: string[]): Promise<Map<string, RealObligation>> {
  const rows = await check.db.execute<{ id: string; dispersed: boolean; healing: string | null; suspense: bigint; settled: bigint; escalations: bigint; requeues: bigint }>(sql`
    select o.id::text, o.dispersed, h.status as healing,
           obligation_suspense(o.id)::text as suspense, obligation_net_cash(o.id)::text as settled,
           (select count(*) from audit_log l where l.resource_id = o.id::text and l.action = 'dispersal.self_healing_escalated') as escalations,
           (select count(*) from audit_log l where l.resource_id = o.id::text and l.action = 'dispersal.self_healing_requeued') as requeues
      from obligations o left join dispersal_healing_attempts h on h.obligation_id = o.id
     where o.id in (select (jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb))::uuid)`);
  return new Map(rows.map((r) => [r.id, { ...r, suspense: BigInt(r.suspense), settled: BigInt(r.settled), escalations: Number(r.escalations), requeues: Number(r.requeues) }]));
}

/** The invariants that hold after every command, and the model's prediction for every obligation whose state it knows. */
async function checkInvariants(model: Model, after: string): Promise<void> {
  const waiting = JSON.stringify(awaitingTopUp(model).map((o) => o.id));
  const kind = after.split("(")[0]!.replace(/ at .*/, "");
  commandsRun.set(kind, (commandsRun.get(kind) ?? 0) + 1);
  const [ledger] = await check.db.execute<{ totals_off: bigint; conservation_off: bigint; suspense_off: bigint }>(sql`
    select (select count(*) from cash_accounts a
              left join (select debit_account_id as id, sum(amount) as total from cash_journal_entries group by 1) d on d.id = a.id
              left join (select credit_account_id as id, sum(amount) as total from cash_journal_entries group by 1) c on c.id = a.id
             where a.cumulative_debits <> coalesce(d.total, 0) or a.cumulative_credits <> coalesce(c.total, 0)) as totals_off,
           (select count(*) from obligations o where o.dispersed
               and (coalesce((select sum(d.amount) from dispersal_entries d where d.obligation_id = o.id and d.status <> 'reversed'), 0)
                    + coalesce((select sum(f.amount) from servicing_fee_entries f where f.obligation_id = o.id and f.status <> 'reversed'), 0)
                    <> obligation_net_cash(o.id)
                    or obligation_allocated(o.id) <> obligation_net_cash(o.id))) as conservation_off,
           (select count(*) from obligations o
             where exists (select 1 from cash_accounts a where a.family = 'SUSPENSE' and a.obligation_id = o.id)
               and o.id not in (select (jsonb_array_elements_text(${waiting}::jsonb))::uuid)
               and obligation_suspense(o.id) not in (0, greatest(obligation_net_cash(o.id) - obligation_allocated(o.id), 0))) as suspense_off`);
  expect({ after, totalsOff: Number(ledger!.totals_off), conservationOff: Number(ledger!.conservation_off), suspenseOff: Number(ledger!.suspense_off) }).toEqual({
    after,
    totalsOff: 0,
    conservationOff: 0,
    suspenseOff: 0,
  });

  const before = await journalSnapshot(model.journal.maxSequence);
  expect({ after, journalRowsUnchanged: before.hash === model.journal.hash }).toEqual({ after, journalRowsUnchanged: true });
  model.journal = await journalSnapshot();

  const real = await readObligations(model.obligations.map((o) => o.id));
  const seen: unknown[] = [];
  const expected: unknown[] = [];
  for (const o of model.obligations) {
    if (o.state === "uncertain") continue;
    const r = real.get(o.id)!;
    const escalated = o.state === "escalated";
    expected.push({
      id: o.id,
      dispersed: o.state === "dispersed",
      escalated,
      suspense: o.parked,
      escalations: o.requeues + (escalated ? 1 : 0),
      requeues: o.requeues,
    });
    seen.push({ id: o.id, dispersed: r.dispersed, escalated: !r.dispersed && r.healing === "escalated", suspense: r.suspense, escalations: r.escalations, requeues: r.requeues });
  }
  expect({ after, obligations: seen }).toEqual({ after, obligations: expected });
}

// ---------------------------------------------------------------------------------------------
// The commands.
type Real = { run: number };
type Cmd = fc.AsyncCommand<Model, Real>;

/** Settles a new obligation by SQL (another system's insert: its trigger notifies the settlement listeners). */
async function settleObligation(model: Model, settle: { mortgage: number; cash: "none" | "full" | "partial"; amount: bigint }): Promise<ModelObligation> {
  const m = model.mortgages[settle.mortgage % model.mortgages.length]!;
  const id = randomUUID();
  const { amount } = settle;
  const cash = settle.cash === "none" ? 0n : settle.cash === "full" ? amount : amount / 3n;
  await check.db.transaction(async (tx) => {
    await tx.execute(sql`insert into obligations (id, mortgage_id, type, amount, status, due_date, settled_at)
      values (${id}::uuid, ${m.id}::uuid, ${amount % 2n === 0n ? "regular_interest" : "principal_repayment"}, ${amount.toString()}::bigint, 'settled', current_date, now())`);
    await postEntries(tx, accrualAndCash({ obligationId: id, mortgageId: m.id, amount }, cash > 0n ? [cash] : []));
  });
  const o: ModelObligation = { id, mortgage: settle.mortgage % model.mortgages.length, amount, cash, hasCash: cash > 0n, allocated: 0n, state: "orphan", requeues: 0, parked: 0n, waived: false };
  model.obligations.push(o);
  return o;
}

class SettleCommand implements Cmd {
  constructor(readonly mortgage: number, readonly cash: "none" | "full" | "partial", readonly amount: bigint) {}
  check = () => true;
  async run(model: Model): Promise<void> {
    await settleObligation(model, this);
    await checkInvariants(model, this.toString());
  }
  toString = () => `settle(mortgage ${this.mortgage}, cash ${this.cash}, ${this.amount})`;
}

/**
 * Settles an obligation while workers with a settlement listener run: the listener's connect asks
 * for a catch-up scan (the whole backlog, as a scan), the notification enqueues the new one at once;
 * the command ends when the healing and retrigger queues are idle and the new one is final.
 */
class ListenerSettleCommand implements Cmd {
  constructor(readonly mortgage: number, readonly cash: "none" | "full" | "partial", readonly amount: bigint) {}
  check = () => true;
  async run(model: Model): Promise<void> {
    const workers = startWorkers(ctx);
    const listener = startSettlementListener(ctx, { databaseUrl: created.url, reconnectMs: 50, heartbeatMs: 1_000 });
    let o: ModelObligation;
    try {
      await listener.listening();
      o = await settleObligation(model, this);
      await waitFor(
        async () => {
          if (listener.status().catchUpScans === 0 || listener.status().notifications === 0) return false;
          const healing = await ctx.queues.healing.getJobCounts("active", "wait", "prioritized");
          if (Object.values(healing).some((n) => n > 0) || (await liveJobs()) > 0) return false;
          const real = (await readObligations([o.id])).get(o.id)!;
          return real.dispersed || real.healing === "escalated";
        },
        { timeoutMs: 30_000, what: "the listener's obligation to be dispersed or escalated, and the queues idle", everyMs: 20 },
      );
    } finally {
      await listener.stop();
      await workers.close();
    }
    // The model applies a scan and a drain to every obligation, but the listener's catch-up scan may
    // have run before an earlier round had settled (a killed worker's stalled job, an escalation cut
    // by the Postgres fault; seed 53203138 path 27): the real side does both explicitly too.
    await scan();
    await drain();
    // The catch-up scan, then the workers, for every obligation; the new one through its notification.
    for (const each of model.obligations) {
      afterScan(each);
      afterDrain(model, each);
    }
    await checkInvariants(model, this.toString());
  }
  toString = () => `settle while the listener runs(mortgage ${this.mortgage}, cash ${this.cash}, ${this.amount})`;
}

class PositionsCommand implements Cmd {
  constructor(readonly mortgage: number, readonly fixable: boolean) {}
  check = (model: Readonly<Model>) =>
    !model.obligations.some((o) => o.mortgage === this.mortgage % model.mortgages.length && o.state === "uncertain");
  async run(model: Model): Promise<void> {
    const m = model.mortgages[this.mortgage % model.mortgages.length]!;
    await check.db.execute(sql`
      update mortgage_positions p set units = case when ${this.fixable} then u.units else 0 end
        from (select lender_id, units from jsonb_to_recordset(${JSON.stringify(m.units.map((units, i) => ({ lender_id: lenderId(m.id, i), units })))}::jsonb)
              as t(lender_id uuid, units bigint)) u
       where p.mortgage_id = ${m.id}::uuid and p.lender_id = u.lender_id`);
    m.fixable = this.fixable;
    await checkInvariants(model, this.toString());
  }
  toString = () => `positions(mortgage ${this.mortgage}, ${this.fixable ? "fixable" : "unfixable"})`;
}

class ScanCommand implements Cmd {
  check = () => true;
  async run(model: Model): Promise<void> {
    await scan();
    for (const o of model.obligations) afterScan(o);
    await checkInvariants(model, this.toString());
  }
  toString = () => "scan";
}

class DrainCommand implements Cmd {
  constructor(readonly terminatePostgres: boolean) {}
  check = () => true;
  async run(model: Model): Promise<void> {
    await drain({ terminatePostgres: this.terminatePostgres });
    for (const o of model.obligations) {
      // An escalation whose connection was cut may be left to the next scan's backstop.
      if (this.terminatePostgres && o.state === "queued" && !model.mortgages[o.mortgage]!.fixable) o.state = "uncertain";
      else afterDrain(model, o);
    }
    await checkInvariants(model, this.toString());
  }
  toString = () => (this.terminatePostgres ? "run workers, Postgres connections terminated" : "run workers");
}

class KillWorkerCommand implements Cmd {
  constructor(readonly killPoint: (typeof KILL_POINTS)[number]) {}
  check = (model: Readonly<Model>) => model.kills === 0 && model.obligations.some((o) => o.state === "queued");
  async run(model: Model): Promise<void> {
    model.kills++;
    faultsInjected++;
    await killAWorker(this.killPoint);
    for (const o of model.obligations) if (o.state === "queued") o.state = "uncertain";
    await checkInvariants(model, this.toString());
  }
  toString = () => `kill a worker at ${this.killPoint.at} (batches of ${this.killPoint.batchSize})`;
}

class FlushRedisCommand implements Cmd {
  check = () => true;
  async run(model: Model): Promise<void> {
    faultsInjected++;
    await admin.flushall();
    // Jobs are gone; the database still knows every obligation: the next scan finds them again.
    for (const o of model.obligations) if (o.state === "queued") o.state = "orphan";
    await checkInvariants(model, this.toString());
  }
  toString = () => "flush redis";
}

class TerminatePostgresCommand implements Cmd {
  check = () => true;
  async run(model: Model): Promise<void> {
    await terminateWorkerConnections();
    // Idle pooled connections: once the server has ended them, the pool notices and opens new ones.
    await waitFor(
      async () => {
        const [row] = await check.db.execute<{ n: bigint }>(sql`
          select count(*) as n from pg_stat_activity where datname = ${created.name} and application_name = ${WORKER_APP}`);
        return row!.n === 0n;
      },
      { timeoutMs: 10_000, what: "the terminated backends to end", everyMs: 10 },
    );
    await sleep(50);
    await checkInvariants(model, this.toString());
  }
  toString = () => "terminate the workers' Postgres connections";
}

class RequeueCommand implements Cmd {
  constructor(readonly pick: number) {}
  check = (model: Readonly<Model>) => model.obligations.some((o) => o.state === "escalated");
  async run(model: Model): Promise<void> {
    const escalated = model.obligations.filter((o) => o.state === "escalated");
    const o = escalated[this.pick % escalated.length]!;
    if (o.waived) {
      // Not settled any more: refused, and it stays escalated and listed.
      const refusal = await retryingOutages(() =>
        requestRequeue(ctx, o.id, { actor: "model-operator", channel: "cli", reason: "the model asks for a new round" }).then(
          () => undefined,
          (error: unknown) => (isOutage(error) ? Promise.reject(error) : error),
        ),
      );
      expect(refusal).toBeInstanceOf(ObligationNotSettledError);
      await checkInvariants(model, this.toString());
      return;
    }
    try {
      await requestRequeue(ctx, o.id, { actor: "model-operator", channel: "cli", reason: "the model asks for a new round" });
      o.state = "queued";
    } catch (error) {
      if (!isOutage(error)) throw error;
      // Cut by the Postgres fault: not requeued, or requeued with or without its job (the scan enqueues it then).
      const [row] = await check.db.execute<{ status: string }>(sql`select status from dispersal_healing_attempts where obligation_id = ${o.id}::uuid`);
      if (row!.status === "escalated") {
        await checkInvariants(model, this.toString());
        return;
      }
      o.requeues++;
      o.state = "uncertain";
    }
    o.requeues++;
    await checkInvariants(model, this.toString());
  }
  toString = () => `requeue(escalated #${this.pick})`;
}

class LateCashCommand implements Cmd {
  constructor(readonly pick: number, readonly viaIntake: boolean) {}
  check = (model: Readonly<Model>) => model.obligations.some((o) => o.state === "escalated" && !o.waived && o.cash < o.amount);
  async run(model: Model): Promise<void> {
    const candidates = model.obligations.filter((o) => o.state === "escalated" && !o.waived && o.cash < o.amount);
    const o = candidates[this.pick % candidates.length]!;
    const mortgageId = model.mortgages[o.mortgage]!.id;
    // The rest of what is owed; for one settled without any cash received, all of it (its settled amount stays).
    const late = o.amount - o.cash;
    await check.db.transaction(async (tx) => {
      await postEntries(tx, [{
        entryType: "CASH_RECEIVED",
        amount: late,
        debit: { family: "TRUST_CASH", mortgageId },
        credit: { family: "BORROWER_RECEIVABLE", obligationId: o.id },
        idempotencyKey: idempotencyKeys.cashReceived("other-system", `model-late-${o.id}`),
        mortgageId,
        obligationId: o.id,
        actor: "other-system",
      }]);
      // The payments intake tops SUSPENSE up in the same transaction; another system's SQL does not (the scan's backstop will).
      if (this.viaIntake) await topUpSuspense(tx, o.id, { actor: "model-intake", reason: "late cash" });
    });
    o.cash += late;
    o.hasCash = true;
    if (this.viaIntake) o.parked = unallocated(o);
    await checkInvariants(model, this.toString());
  }
  toString = () => `late cash(escalated #${this.pick}, ${this.viaIntake ? "payments intake" : "another system"})`;
}

/** Every payment of a dispersed obligation returned through the intake: its allocations reversed, it is due again. */
class ReturnCommand implements Cmd {
  constructor(readonly pick: number) {}
  check = (model: Readonly<Model>) => model.obligations.some((o) => o.state === "dispersed" && o.cash > 0n);
  async run(model: Model): Promise<void> {
    const candidates = model.obligations.filter((o) => o.state === "dispersed" && o.cash > 0n);
    const o = candidates[this.pick % candidates.length]!;
    const payments = await check.db.execute<{ key: string }>(sql`
      select idempotency_key as key from cash_journal_entries where obligation_id = ${o.id}::uuid and entry_type = 'CASH_RECEIVED' order by sequence`);
    for (const { key } of payments) {
      // Posted as the account "other-system" (test/helpers/factories.ts, late cash): it returns them.
      const reference = key.slice(idempotencyKeys.cashReceived("other-system", "").length);
      await returnPayment(check.db, { obligationId: o.id, reference, reason: "the model's cheque bounced", actor: "other-system", channel: "api" });
    }
    o.cash = 0n;
    o.allocated = 0n;
    o.state = "unsettled";
    await checkInvariants(model, this.toString());
  }
  toString = () => `return every payment(dispersed #${this.pick})`;
}

/** Another system deletes a dispersed obligation's entries ("redo the dispersal"): the healer restores them, never posts again. */
class DeleteEntriesCommand implements Cmd {
  constructor(readonly pick: number) {}
  check = (model: Readonly<Model>) => model.obligations.some((o) => o.state === "dispersed" && o.allocated > 0n);
  async run(model: Model): Promise<void> {
    const candidates = model.obligations.filter((o) => o.state === "dispersed" && o.allocated > 0n);
    const o = candidates[this.pick % candidates.length]!;
    const deleted = await check.db.execute(sql`delete from dispersal_entries where obligation_id = ${o.id}::uuid returning id`);
    if (deleted.length > 0) o.state = "orphan";
    await checkInvariants(model, this.toString());
  }
  toString = () => `delete entries(dispersed #${this.pick})`;
}

/** Another system waives an escalated obligation: it stays escalated (SUSPENSE kept), a requeue is refused. */
class WaiveCommand implements Cmd {
  constructor(readonly pick: number) {}
  check = (model: Readonly<Model>) => model.obligations.some((o) => o.state === "escalated" && !o.waived && !awaitingTopUp(model).includes(o));
  async run(model: Model): Promise<void> {
    const candidates = model.obligations.filter((o) => o.state === "escalated" && !o.waived && !awaitingTopUp(model).includes(o));
    const o = candidates[this.pick % candidates.length]!;
    await check.db.execute(sql`update obligations set status = 'waived' where id = ${o.id}::uuid`);
    o.waived = true;
    await checkInvariants(model, this.toString());
  }
  toString = () => `waive(escalated #${this.pick})`;
}

/** Another system files an escalated obligation under another mortgage: SUSPENSE is not parked twice; its positions decide the next round. */
class MoveCommand implements Cmd {
  constructor(readonly pick: number, readonly to: number) {}
  check = (model: Readonly<Model>) => model.obligations.some((o) => o.state === "escalated");
  async run(model: Model): Promise<void> {
    const candidates = model.obligations.filter((o) => o.state === "escalated");
    const o = candidates[this.pick % candidates.length]!;
    const to = (o.mortgage + 1 + (this.to % (model.mortgages.length - 1))) % model.mortgages.length;
    await check.db.execute(sql`update obligations set mortgage_id = ${model.mortgages[to]!.id}::uuid where id = ${o.id}::uuid`);
    o.mortgage = to;
    await checkInvariants(model, this.toString());
  }
  toString = () => `move(escalated #${this.pick} to another mortgage)`;
}

class ReconcileCommand implements Cmd {
  // Reconciliation rightly reports a SUSPENSE short of its settled amount until the scan tops it up,
  // and deleted entries until the healer restores them.
  check = (model: Readonly<Model>) => awaitingTopUp(model).length === 0 && awaitingRestore(model).length === 0;
  async run(model: Model): Promise<void> {
    // A long scan interval: orphans waiting for the next scan are not late here.
    const report = await retryingOutages(() => runReconciliation(workerDb.db, { scanIntervalMs: 3_600_000 }));
    expect({ reconciliation: report.findings }).toEqual({ reconciliation: cleanFindings(report.findings) });
    expect(report.defectCount).toBe(0);
    await checkInvariants(model, this.toString());
  }
  toString = () => "reconcile";
}

function cleanFindings(findings: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(findings).map(([k, v]) => [k, typeof v === "object" && v ? { count: 0, sample: [] } : v]));
}

const lenderId = (mortgageId: string, i: number) => `${mortgageId.slice(0, 24)}${(0xa0 + i).toString(16).padStart(12, "0")}`;

const settle = fc
  .tuple(fc.nat(2), fc.constantFrom("none" as const, "full" as const, "partial" as const), fc.bigInt(1_000n, 5_000_000n))
  .map(([m, cash, amount]) => new SettleCommand(m, cash, amount));
const settleWhileListening = fc
  .tuple(fc.nat(2), fc.constantFrom("none" as const, "full" as const, "partial" as const), fc.bigInt(1_000n, 5_000_000n))
  .map(([m, cash, amount]) => new ListenerSettleCommand(m, cash, amount));
const requeue = fc.nat(5).map((n) => new RequeueCommand(n));
const lateCash = fc.tuple(fc.nat(5), fc.boolean()).map(([n, viaIntake]) => new LateCashCommand(n, viaIntake));
const otherSystems = [
  fc.nat(5).map((n) => new ReturnCommand(n)),
  fc.nat(5).map((n) => new DeleteEntriesCommand(n)),
  fc.nat(5).map((n) => new WaiveCommand(n)),
  fc.tuple(fc.nat(5), fc.nat(5)).map(([n, to]) => new MoveCommand(n, to)),
];
const kill = fc.constantFrom(...KILL_POINTS).map((f) => new KillWorkerCommand(f));
// fast-check picks among these uniformly (skipping those whose check fails): repeats are weights.
const commands = [
  settle,
  settle,
  settle,
  settleWhileListening,
  fc.tuple(fc.nat(2), fc.boolean()).map(([m, fixable]) => new PositionsCommand(m, fixable)),
  fc.constant(new ScanCommand()),
  fc.constant(new ScanCommand()),
  fc.boolean().map((t) => new DrainCommand(t)),
  fc.constant(new DrainCommand(false)),
  fc.constant(new DrainCommand(false)),
  kill,
  kill,
  fc.constant(new FlushRedisCommand()),
  fc.constant(new TerminatePostgresCommand()),
  requeue,
  requeue,
  requeue,
  fc.constant(new ReconcileCommand()),
  lateCash,
  lateCash,
  ...otherSystems,
];

// ---------------------------------------------------------------------------------------------
let runs = 0;
let faultsInjected = 0;
const commandsRun = new Map<string, number>();

async function newRun(): Promise<{ model: Model; real: Real }> {
  await admin.flushall();
  const mortgages: Model["mortgages"] = [];
  for (let m = 0; m < 3; m++) {
    const id = randomUUID();
    const units = m === 2 ? [10_000] : [5000, 3000, 2000];
    await check.db.transaction(async (tx) => {
      await tx.execute(sql`insert into mortgages (id, reference, principal, servicing_fee_bps, payment_frequency)
        values (${id}::uuid, ${`MODEL-${id}`}, 30000000, ${m === 1 ? 75 : 0}, 'monthly')`);
      for (const [i, u] of units.entries()) {
        await tx.execute(sql`insert into lenders (id, name) values (${lenderId(id, i)}::uuid, 'model lender')`);
        await tx.execute(sql`insert into mortgage_positions (mortgage_id, lender_id, units) values (${id}::uuid, ${lenderId(id, i)}::uuid, ${u})`);
      }
    });
    // The third mortgage starts without positions: its obligations escalate until it is repaired.
    if (m === 2) await check.db.execute(sql`update mortgage_positions set units = 0 where mortgage_id = ${id}::uuid`);
    mortgages.push({ id, fixable: m !== 2, units });
  }
  const model: Model = { mortgages, obligations: [], kills: 0, journal: await journalSnapshot() };
  // A few orphans to start from, on each mortgage, two of them escalating until their mortgage is repaired.
  for (const [m, cash] of [[0, "full"], [1, "partial"], [2, "partial"], [2, "none"]] as const) {
    await new SettleCommand(m, cash, 100_000n + BigInt(m) * 7_777n).run(model);
  }
  return { model, real: { run: ++runs } };
}

/** The end of every run: recover, then every obligation is dispersed or escalated once per round, as the model says. */
async function finish(model: Model): Promise<void> {
  await recover();
  for (const o of model.obligations) {
    afterScan(o);
    afterRecovery(model, o);
  }
  await checkInvariants(model, "final recovery");
  const report = await runReconciliation(workerDb.db, { scanIntervalMs: 0 });
  expect({ reconciliation: report.findings }).toEqual({ reconciliation: cleanFindings(report.findings) });
}

describe("the lifecycle model", () => {
  it(`agrees with the real services over ${RUNS} random command sequences, the ledger invariants holding after every command`, async () => {
    note("lifecycle model", { runs: RUNS, seed: SEED, ...(PATH ? { path: PATH } : {}) });
    const started = Date.now();
    try {
      await fc.assert(
        fc.asyncProperty(fc.commands(commands, { maxCommands: 30, size: "large" }), async (cmds) => {
          const setup = await newRun();
          await fc.asyncModelRun(() => setup, cmds);
          await finish(setup.model);
        }),
        {
          numRuns: RUNS,
          seed: SEED,
          ...(PATH ? { path: PATH } : {}),
          // Shrinking replays against real services: opt in with MODEL_SHRINK=1.
          endOnFailure: !process.env.MODEL_SHRINK,
          verbose: 1,
        },
      );
    } catch (error) {
      process.stderr.write(`\nlifecycle model failed: replay with MODEL_SEED=${SEED}${PATH ? ` MODEL_PATH=${PATH}` : ""} (fast-check's path is in the message)\n`);
      throw error;
    }
    note("lifecycle model finished", { runs, faultsInjected, commands: Object.fromEntries(commandsRun), seconds: Math.round((Date.now() - started) / 1000) });
    recordFaults(import.meta.url, `lifecycle model, seed ${SEED}`, { modelRuns: runs, injected: faultsInjected });
    expect(runs).toBeGreaterThanOrEqual(RUNS);
  }, 1_200_000);
});
