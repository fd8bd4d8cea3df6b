// A crash at every step: for each failpoint of src/failpoint.ts (FAILPOINTS, the one registry), the
// same small data set goes through an operator's requeue, a scan, the workers and the reconciliation
// with that failpoint armed in the process that reaches it (a CLI child: it is SIGKILLed there); the
// dispersal transaction's steps (dispersal.*) once with batches of one (HEALING_BATCH_SIZE=1) and
// once with batches of N. Then fresh workers and the next scans recover, and the end state must
// equal a crash-free run's: the same dispersal entries, the same postings (by key and amount),
// balances and healing outcomes; at most one escalation per round, no SUSPENSE reversal without its
// dispersal, reconciliation clean. Payment returns (return.*) kill the CLI's `return-payment` inside
// and after its transaction, then the same return is sent again; a worker is killed while it
// re-disperses obligations whose cash another system returned by SQL. Two more scenarios
// freeze a worker mid-job (before and after its commit) until its lock runs out, so that a second
// worker runs the same job at the same time. The four-eyes requeue's approval failpoints kill the
// second operator's approval (a child process) on the same data; the settlement listener's kill a
// listening worker while a dozen obligations are settled by SQL, and a fresh worker's listener
// (its catch-up scan) recovers: each obligation dispersed exactly once, as in the crash-free run.
import { readFileSync } from "node:fs";
import { userInfo } from "node:os";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FAILPOINTS, type FailpointName } from "../../src/failpoint.js";
import { returnPayment } from "../../src/db/payments.js";
import { postCashReversalBySql } from "../helpers/otherSystems.js";
import { QUEUE } from "../../src/queues/names.js";
import { reconcileLedger } from "../../src/jobs/reconcile.js";
import { fileURLToPath } from "node:url";
import { approveRequeue, requestRequeue } from "../../src/jobs/requeue.js";
import { startSettlementListener, type SettlementListener } from "../../src/jobs/settlementListener.js";
import { readHeartbeats } from "../../src/queues/listenerHeartbeats.js";
import { scanForOrphans } from "../../src/jobs/scan.js";
import { startWorkers, type Workers } from "../../src/jobs/worker.js";
import { runReconciliation } from "../../src/db/reconciliation.js";
import { setRequeuePolicy } from "../../src/db/requeueRequests.js";
import { crashInvariantViolations, moneyFingerprint, seedCrashData, seedListenerData, seedReturnData, type CrashData } from "./crashData.js";
import { measureEndState } from "./endState.js";
import { recordFaults } from "./faultCounts.js";
import { sleep, waitFor, type Child } from "./children.js";
import { note, Scenario } from "./scenario.js";

type Phase = "requeue" | "approve" | "scan" | "worker" | "reconcile" | "listener" | "return";

/** A failpoint armed in a process that runs with this HEALING_BATCH_SIZE. */
interface CrashPoint {
  at: FailpointName;
  batchSize: number;
}

/** N: the batch size of the batched runs (the worker batches up to HEALING_BATCH_SIZE jobs in one transaction). */
const BATCH_SIZE_N = 8;

/**
 * The batch sizes a failpoint is killed at: the dispersal transaction's steps at 1 and N (a job
 * alone is a batch of one); a batch of escalations exists only with batches (N); the rest at 1.
 */
function batchSizesOf(failpoint: FailpointName): number[] {
  if (failpoint.startsWith("dispersal.")) return [1, BATCH_SIZE_N];
  if (failpoint.startsWith("batch.")) return [BATCH_SIZE_N];
  return [1];
}

const pointsOf = (failpoints: readonly FailpointName[]): CrashPoint[] => failpoints.flatMap((at) => batchSizesOf(at).map((batchSize) => ({ at, batchSize })));
const describePoint = (p: CrashPoint) => `${p.at} (HEALING_BATCH_SIZE=${p.batchSize})`;

/** Which step of the scenario reaches a failpoint (so that it is armed in that step's process). */
function phaseOf(failpoint: FailpointName): Phase {
  if (failpoint.startsWith("return.")) return "return";
  if (failpoint.startsWith("requeue.")) return "requeue";
  if (failpoint.startsWith("approve.")) return "approve";
  if (failpoint.startsWith("listener.")) return "listener";
  if (failpoint.startsWith("scan.") || failpoint.startsWith("backstop.") || failpoint.startsWith("topup.")) return "scan";
  if (failpoint.startsWith("reconcile.")) return "reconcile";
  return "worker";
}

interface Outcome {
  fired: boolean;
  fingerprint: Record<string, string[]>;
  violations: Record<string, string[]>;
  reconciliationDefects: number;
  end: Awaited<ReturnType<typeof measureEndState>>;
}

const CHILD_TIMEOUT_MS = 60_000;

/** The armed process's settings: the failpoint, and the batch size it is killed at. */
function armedEnv(point: CrashPoint, action: "kill" | "pause"): Record<string, string> {
  return {
    DISPERSAL_FAILPOINTS: `${point.at}=${action}`,
    HEALING_BATCH_SIZE: String(point.batchSize),
    // The scan leaves a cursor only when it stops at the backlog cap.
    ...(point.at === "scan.after-cursor" ? { HEALING_MAX_BACKLOG: "5" } : {}),
  };
}

/**
 * A scan killed mid-tick leaves its scan lock in Redis until its TTL (a minute) runs out; the next
 * scan waits for it. The test fast-forwards that minute instead of sleeping through it.
 */
async function letDeadScanLockExpire(scenario: Scenario): Promise<void> {
  await scenario.ctx.queues.connection.pexpire(`${scenario.prefix}:${QUEUE.healing}:scan-lock`, 1);
}

/** The CLI acts only as the operator its OS user is mapped to (OPS_CLI_USERS). */
const CLI_OPERATOR = { OPS_USERS: "crash-test:operator:crash-test-operator-secret", OPS_CLI_USERS: `${userInfo().username}:crash-test` };

async function runArmedChild(scenario: Scenario, label: string, args: string[], point: CrashPoint, cliUsers: Record<string, string> = CLI_OPERATOR): Promise<boolean> {
  return awaitArmedChild(scenario, label, scenario.children.cli(label, args, scenario.workerEnv({ ...cliUsers, ...armedEnv(point, "kill") })), point.at);
}

const APPROVE_CHILD = fileURLToPath(new URL("./approveChild.ts", import.meta.url));

/** The second operator's approval of the pending requeues, in a child with the failpoint armed. */
async function runArmedApproval(scenario: Scenario, obligationIds: string[], point: CrashPoint): Promise<boolean> {
  const env = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", ...scenario.workerEnv(armedEnv(point, "kill")), REQUEUE_APPROVALS: "2" };
  const child = scenario.children.spawn("approve", process.execPath, ["--import", "tsx", APPROVE_CHILD, APPROVER, ...obligationIds], env);
  return awaitArmedChild(scenario, "approve", child, point.at);
}

async function awaitArmedChild(scenario: Scenario, label: string, child: Child, failpoint: string): Promise<boolean> {
  const exit = await Promise.race([child.exited, sleep(CHILD_TIMEOUT_MS).then(() => undefined)]);
  if (!exit) throw new Error(`${label} with ${failpoint} armed did not end within ${CHILD_TIMEOUT_MS} ms:\n${child.output().slice(-2000)}`);
  if (exit.signal === "SIGKILL") {
    await letDeadScanLockExpire(scenario);
    return true;
  }
  if (exit.code !== 0) throw new Error(`${label} failed (${JSON.stringify(exit)}):\n${child.output().slice(-2000)}`);
  return false;
}

/** A worker child with the failpoint armed, until it is killed there or the queue is drained without it firing. */
async function runArmedWorker(scenario: Scenario, point: CrashPoint): Promise<boolean> {
  const child = scenario.spawnWorker("armed-worker", armedEnv(point, "kill"));
  const drained = scenario.waitQuiescent({ timeoutMs: CHILD_TIMEOUT_MS }).then(() => "drained" as const);
  const result = await Promise.race([child.exited, drained]);
  if (result === "drained") {
    await child.kill("SIGKILL");
    return false;
  }
  void drained.catch(() => {});
  if (result.signal !== "SIGKILL") throw new Error(`armed worker exited (${JSON.stringify(result)}):\n${child.output().slice(-2000)}`);
  await letDeadScanLockExpire(scenario);
  return true;
}

async function endOf(scenario: Scenario, data: CrashData, fired: boolean): Promise<Outcome> {
  return endStateOf(scenario, { fixable: data.fixable, unfixable: [...data.unfixable, ...data.exhausted, ...data.lateCash] }, fired);
}

async function endStateOf(scenario: Scenario, groups: { fixable: string[]; unfixable: string[] }, fired: boolean): Promise<Outcome> {
  const end = await measureEndState(scenario.database, groups);
  const report = await runReconciliation(scenario.database.db, { scanIntervalMs: 0 });
  return {
    fired,
    fingerprint: await moneyFingerprint(scenario.database),
    violations: await crashInvariantViolations(scenario.database),
    reconciliationDefects: report.defectCount,
    end,
  };
}

/** Recovery the way production does it: fresh workers, scans until one finds nothing. */
async function recover(scenario: Scenario, workers: Workers): Promise<void> {
  const scans = await scenario.settle({ timeoutMs: 90_000 });
  expect(scans.at(-1)!.found).toBe(0);
  await workers.settled();
}

async function runCrashScenario(point: CrashPoint | undefined): Promise<Outcome> {
  const scenario = await Scenario.open();
  let workers: Workers | undefined;
  try {
    const data = await seedCrashData(scenario.database);
    const phase = point ? phaseOf(point.at) : undefined;
    let fired = false;

    if (phase === "approve") {
      // Four eyes: one operator asks, a second one approves in a process killed at the failpoint.
      // The policy is Postgres's (a worker child may have written its first row): set it there.
      await scenario.database.db.transaction((tx) => setRequeuePolicy(tx, 2, "crash-test"));
      const fourEyes = scenario.ctx;
      for (const o of data.escalated) await requestRequeue(fourEyes, o, { actor: "crash-test", channel: "cli", reason: "positions repaired" });
      fired = await runArmedApproval(scenario, data.escalated, point!);
      // The approver saw the approval die and approves again what is still pending (an approval that
      // committed left nothing pending: the next scan enqueues its `requeued` row).
      for (const o of await stillPending(scenario, data.escalated)) await approveRequeue(fourEyes, o, APPROVER, "api");
      // One approval carried out per request, by the second operator, whichever process committed it.
      const [approvals] = await scenario.database.db.execute<{ n: bigint }>(sql`
        select count(*) as n from requeue_requests where status = 'carried_out' and approved_by = ${APPROVER}`);
      expect(Number(approvals!.n)).toBe(data.escalated.length);
    } else if (phase === "requeue") {
      fired = await runArmedChild(scenario, "requeue", ["requeue", ...data.escalated, "--actor", "crash-test", "--reason", "positions repaired"], point!);
      // The operator saw the command die and runs it again for what is still escalated (a requeue
      // that committed is refused as not escalated: the next scan enqueues it).
      for (const o of await stillEscalated(scenario, data.escalated)) await requestRequeue(scenario.ctx, o, { actor: "crash-test", channel: "cli", reason: "positions repaired" });
    } else {
      for (const o of data.escalated) await requestRequeue(scenario.ctx, o, { actor: "crash-test", channel: "cli", reason: "positions repaired" });
    }

    if (phase === "scan") fired = await runArmedChild(scenario, "scan", ["scan"], point!);
    else await scanForOrphans(scenario.ctx, "crash-test");

    if (phase === "worker") fired = await runArmedWorker(scenario, point!);
    // Fresh workers: they take over what the killed one held (once its lock runs out) and finish the rest.
    workers = startWorkers(scenario.ctx);
    await recover(scenario, workers);

    if (phase === "reconcile") fired = await runArmedChild(scenario, "reconcile", ["reconcile"], point!);
    else await reconcileLedger(scenario.ctx);
    // Reconciliation changes no money: the next scan finds nothing to do, crashed or not.
    expect((await scanForOrphans(scenario.ctx, "crash-test")).found).toBe(0);
    await workers.close();
    workers = undefined;
    return await endOf(scenario, data, fired);
  } finally {
    await workers?.close().catch(() => {});
    await scenario.close();
  }
}

const APPROVER = "crash-approver";

async function stillPending(scenario: Scenario, ids: string[]): Promise<string[]> {
  const rows = await scenario.database.db.execute<{ id: string }>(sql`
    select obligation_id::text as id from requeue_requests
     where status = 'pending' and obligation_id in (select (jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb))::uuid)`);
  return rows.map((r) => r.id);
}

async function stillEscalated(scenario: Scenario, ids: string[]): Promise<string[]> {
  const rows = await scenario.database.db.execute<{ id: string }>(sql`
    select obligation_id::text as id from dispersal_healing_attempts
     where status = 'escalated' and obligation_id in (select (jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb))::uuid)`);
  return rows.map((r) => r.id);
}

function processState(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0];
  } catch {
    return undefined;
  }
}

/**
 * A worker frozen (SIGSTOP, by the failpoint's `pause`) at `failpoint` while it runs a job: its lock
 * runs out, a second worker takes the job over and runs it, and only then is the first one continued.
 */
async function runStallScenario(failpoint: "dispersal.before-commit" | "dispersal.after-commit"): Promise<Outcome & { redelivered: boolean }> {
  const scenario = await Scenario.open();
  let workers: Workers | undefined;
  let frozen: Child | undefined;
  try {
    const data = await seedCrashData(scenario.database);
    for (const o of data.escalated) await requestRequeue(scenario.ctx, o, { actor: "crash-test", channel: "cli", reason: "positions repaired" });
    await scanForOrphans(scenario.ctx, "crash-test");

    // Frozen inside its transaction, the worker holds the row locks of the obligation and its mortgage's
    // accounts: Postgres ends that session after DATABASE_IDLE_TRANSACTION_TIMEOUT_MS, or the same
    // mortgage's other dispersals (and a batch holding one of them) would wait for as long as it hangs.
    frozen = scenario.spawnWorker("frozen-worker", { ...armedEnv({ at: failpoint, batchSize: BATCH_SIZE_N }, "pause"), WORKER_CONCURRENCY: "1", DATABASE_IDLE_TRANSACTION_TIMEOUT_MS: "1500" });
    await waitFor(async () => processState(frozen!.pid) === "T" || !frozen!.alive(), { timeoutMs: CHILD_TIMEOUT_MS, what: "the worker to freeze at the failpoint", everyMs: 20 });
    expect(frozen.alive()).toBe(true);
    const [held] = (await scenario.ctx.queues.retrigger.getJobs(["active"])).filter((j) => j.processedBy?.endsWith(`:${frozen!.pid}`));
    expect(held).toBeDefined();
    note("worker frozen mid-job", { failpoint, jobId: held!.id, obligationId: held!.data.obligationId });

    // The second worker (this process) takes the job over once the frozen one's lock has run out.
    workers = startWorkers(scenario.ctx);
    const me = `:${process.pid}`;
    let last = "";
    const takenOver = await scenario.explainFailure(waitFor(
      async () => {
        const job = await scenario.ctx.queues.retrigger.getJob(held!.id!);
        last = `job ${held!.id}: ${job ? `${await job.getState()}, stalled ${job.stalledCounter}, processed by ${job.processedBy}` : "gone"}; this process ${process.pid}`;
        return job && job.stalledCounter >= 1 && job.processedBy?.endsWith(me) && (await job.isCompleted()) ? job : undefined;
      },
      { timeoutMs: 30_000, what: "the second worker to take over the frozen worker's job and finish it", everyMs: 50 },
    ).catch((error: Error) => {
      error.message += `\n${last}`;
      throw error;
    }));
    expect(processState(frozen.pid)).toBe("T");
    note("job taken over and finished while the first worker is frozen", { state: await takenOver.getState(), result: takenOver.returnvalue });
    process.kill(frozen.pid, "SIGCONT");
    await recover(scenario, workers);
    await workers.close();
    workers = undefined;
    return { ...(await endOf(scenario, data, true)), redelivered: true };
  } finally {
    if (frozen?.alive()) process.kill(frozen.pid, "SIGCONT");
    await workers?.close().catch(() => {});
    await scenario.close();
  }
}

let baseline: Outcome;
let crashPoints = 0;

beforeAll(async () => {
  baseline = await runCrashScenario(undefined);
}, 180_000);

afterAll(() => {
  note("crash points recovered from", { crashPoints });
});

/** One scenario's counts in the fault summary; `injected`: whether its fault was really injected. */
function recordCrashPoint(what: string, outcome: Outcome, injected: boolean): void {
  recordFaults(import.meta.url, what, {
    injected: injected ? 1 : 0,
    crashPoints: injected ? 1 : 0,
    lost: outcome.end.lost,
    doubled: outcome.end.doubled,
    wrongEscalations: outcome.end.wrongEscalations,
    partialDispersals: outcome.end.partialDispersals,
    reconciliationDefects: outcome.reconciliationDefects,
  });
}

function expectSameAsBaseline(outcome: Outcome): void {
  expect(outcome.violations).toEqual({});
  expect(outcome.end.details).toEqual({});
  expect(outcome.reconciliationDefects).toBe(0);
  expect(outcome.fingerprint).toEqual(baseline.fingerprint);
}

describe("a crash at every failpoint", () => {
  it("the crash-free run ends with every obligation dispersed or escalated once, and a clean reconciliation", () => {
    expect(baseline.violations).toEqual({});
    expect(baseline.end.details).toEqual({});
    expect(baseline.reconciliationDefects).toBe(0);
    // 9 fixable + 2 requeued and resolved dispersed; 3 unfixable, 2 exhausted and 2 topped up escalated.
    const healing = baseline.fingerprint.healing!;
    expect(healing.filter((l) => / t resolved (0 0 0|1 1 1)$/.test(l))).toHaveLength(11);
    expect(healing.filter((l) => / f escalated 1 0 0$/.test(l))).toHaveLength(7);
    expect(baseline.fingerprint.postings!.filter((l) => l.startsWith("REVERSAL "))).toHaveLength(2);
    expect(FAILPOINTS.length).toBeGreaterThanOrEqual(20);
  });

  for (const point of pointsOf(FAILPOINTS.filter((f) => phaseOf(f) !== "listener" && phaseOf(f) !== "return"))) {
    it(`recovers from a kill at ${describePoint(point)} to the crash-free end state`, async () => {
      const outcome = await runCrashScenario(point);
      recordCrashPoint(`kill at ${describePoint(point)}`, outcome, outcome.fired);
      expect(outcome.fired, `failpoint ${point.at} never fired in its scenario`).toBe(true);
      crashPoints++;
      expectSameAsBaseline(outcome);
    }, 180_000);
  }

  for (const failpoint of ["dispersal.before-commit", "dispersal.after-commit"] as const) {
    it(`runs one job in two workers at once (the first frozen at ${failpoint} until its lock ran out) with the crash-free end state`, async () => {
      const outcome = await runStallScenario(failpoint);
      recordCrashPoint(`stalled redelivery, first worker frozen at ${failpoint}`, outcome, true);
      crashPoints++;
      expectSameAsBaseline(outcome);
    }, 180_000);
  }
});

/** The settlement listener's failpoints: each killed in a listening worker while obligations are settled by SQL. */
const LISTENER_FAILPOINTS = FAILPOINTS.filter((f) => phaseOf(f) === "listener");

async function dispersedCount(scenario: Scenario, ids: string[]): Promise<number> {
  const [row] = await scenario.database.db.execute<{ n: bigint }>(sql`
    select count(*) as n from obligations where dispersed and id in (select (jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb))::uuid)`);
  return Number(row!.n);
}

async function healingQueueIdle(scenario: Scenario): Promise<boolean> {
  // Not "delayed": the scheduler keeps its next scan (an hour away) there.
  const counts = await scenario.ctx.queues.healing.getJobCounts("active", "wait", "prioritized");
  return Object.values(counts).every((n) => n === 0);
}

/**
 * A worker with the settlement listener (the CLI's, armed at `failpoint` unless crash-free) while a
 * dozen obligations are settled by SQL, one statement each; then recovery by a fresh worker whose
 * listener connects and asks for its catch-up scan — no scheduled scan (an hour away) and no scan of
 * the test's until every obligation is dispersed.
 */
async function runListenerScenario(failpoint: string | undefined): Promise<Outcome & { seconds: number }> {
  const started = Date.now();
  const scenario = await Scenario.open();
  let workers: Workers | undefined;
  let listener: SettlementListener | undefined;
  try {
    const ids = await seedListenerData(scenario.database);
    const worker = scenario.spawnWorker("listening-worker", {
      SETTLEMENT_LISTENER_RECONNECT_MS: "200",
      HEALING_BATCH_SIZE: "1",
      ...(failpoint ? { DISPERSAL_FAILPOINTS: `${failpoint}=kill` } : {}),
    });
    const pid = String(worker.pid);
    // Listening (its start-up catch-up scan done), or already killed at its first catch-up request.
    await scenario.explainFailure(waitFor(
      async () => !worker.alive() || ((await readHeartbeats(scenario.ctx.queues)).some((h) => h.up && h.process.endsWith(`:${pid}`)) && (await healingQueueIdle(scenario))),
      { timeoutMs: CHILD_TIMEOUT_MS, what: "the worker's listener to listen", everyMs: 50 },
    ));
    for (const id of ids) await scenario.database.db.execute(sql`update obligations set status = 'settled', settled_at = now() where id = ${id}::uuid`);

    const done = waitFor(async () => (await dispersedCount(scenario, ids)) === ids.length && (await scenario.liveJobs()) === 0, {
      timeoutMs: CHILD_TIMEOUT_MS,
      what: "the listening worker to disperse every obligation",
      everyMs: 50,
    }).then(() => "done" as const);
    const result = await scenario.explainFailure(Promise.race([worker.exited, done]));
    void done.catch(() => {});
    let fired = false;
    if (result === "done") await worker.kill("SIGKILL");
    else if (result.signal === "SIGKILL") fired = true;
    else throw new Error(`listening worker exited (${JSON.stringify(result)}):\n${worker.output().slice(-2000)}`);
    await letDeadScanLockExpire(scenario);
    note("listening worker gone", { failpoint, fired, dispersed: await dispersedCount(scenario, ids) });

    workers = startWorkers(scenario.ctx);
    listener = startSettlementListener(scenario.ctx, { databaseUrl: scenario.databaseUrl, reconnectMs: 200 });
    await listener.listening();
    await scenario.explainFailure(waitFor(async () => (await dispersedCount(scenario, ids)) === ids.length, {
      timeoutMs: 90_000,
      what: "the fresh worker's listener to catch up with every obligation",
      everyMs: 100,
    }));
    await scenario.waitQuiescent();
    await listener.stop();
    listener = undefined;
    // The listener's catch-up left nothing for the next scan.
    expect((await scanForOrphans(scenario.ctx, "crash-test")).found).toBe(0);
    await workers.close();
    workers = undefined;
    return { ...(await endStateOf(scenario, { fixable: ids, unfixable: [] }, fired)), seconds: (Date.now() - started) / 1000 };
  } finally {
    await listener?.stop().catch(() => {});
    await workers?.close().catch(() => {});
    await scenario.close();
  }
}

describe("a crash of the settlement listener", () => {
  let listenerBaseline: Outcome;

  beforeAll(async () => {
    listenerBaseline = await runListenerScenario(undefined);
  }, 180_000);

  it("the crash-free run disperses each of the dozen obligations settled by SQL once, with a clean reconciliation", () => {
    expect(listenerBaseline.violations).toEqual({});
    expect(listenerBaseline.end.details).toEqual({});
    expect(listenerBaseline.reconciliationDefects).toBe(0);
    expect(listenerBaseline.fingerprint.healing!.filter((l) => /^\S+ t /.test(l))).toHaveLength(12);
    expect(new Set(listenerBaseline.fingerprint.dispersalEntries!.map((l) => l.split(" ")[0])).size).toBe(12);
    expect(LISTENER_FAILPOINTS.length).toBeGreaterThanOrEqual(2);
  });

  for (const failpoint of LISTENER_FAILPOINTS) {
    it(`recovers from a kill of a listening worker at ${failpoint}: each obligation dispersed once, the crash-free end state`, async () => {
      const outcome = await runListenerScenario(failpoint);
      note("listener crash scenario", { failpoint, seconds: outcome.seconds });
      recordCrashPoint(`kill at ${failpoint}`, outcome, outcome.fired);
      expect(outcome.fired, `failpoint ${failpoint} never fired in its scenario`).toBe(true);
      crashPoints++;
      expect(outcome.violations).toEqual({});
      expect(outcome.end.details).toEqual({});
      expect(outcome.reconciliationDefects).toBe(0);
      expect(outcome.fingerprint).toEqual(listenerBaseline.fingerprint);
    }, 180_000);
  }
});

/** The feed's service account: it received the payments, and only it finds them to return. */
const FEED = "crash-feed";
const FEED_CLI = { OPS_USERS: `${FEED}:service:crash-feed-service-secret`, OPS_CLI_USERS: `${userInfo().username}:${FEED}` };
const RETURN_REASON = "cheque bounced: NSF";

/** The returns' own failpoints, in the CLI's return-payment; and the worker's, while it re-disperses cash another system returned. */
const RETURN_POINTS: CrashPoint[] = [
  ...FAILPOINTS.filter((f) => phaseOf(f) === "return").map((at) => ({ at, batchSize: 1 })),
  { at: "dispersal.after-allocate", batchSize: 1 },
  { at: "dispersal.after-commit", batchSize: BATCH_SIZE_N },
];

interface ReturnOutcome extends Outcome {
  /** Per return the feed sent, whether sending it again answered `replayed` (the first one committed). */
  replayed: boolean[];
  /** `payments.cash_returned` audit rows per returned obligation. */
  returnAudits: Record<string, number>;
}

/**
 * Payments returned while processes die: the set is dispersed (crash-free), then the feed returns
 * two payments through the CLI's `return-payment` (armed at a return.* failpoint: killed inside its
 * transaction or after its commit) and sends each return again, as a feed whose command died does;
 * then another system returns two more payments by SQL, the trigger makes those obligations orphans,
 * and a worker (armed at a dispersal step) re-disperses them. Fresh workers and the scans recover.
 */
async function runReturnScenario(point: CrashPoint | undefined): Promise<ReturnOutcome> {
  const scenario = await Scenario.open();
  let workers: Workers | undefined;
  try {
    const data = await seedReturnData(scenario.database, FEED);
    workers = startWorkers(scenario.ctx);
    await recover(scenario, workers);
    await workers.close();
    workers = undefined;

    const phase = point ? phaseOf(point.at) : undefined;
    let fired = false;
    const replayed: boolean[] = [];
    for (const r of data.returns) {
      const args = ["return-payment", r.obligationId, "--reference", r.reference, "--reason", RETURN_REASON];
      if (phase === "return") fired = (await runArmedChild(scenario, "return-payment", args, point!, FEED_CLI)) || fired;
      else {
        const child = scenario.children.cli("return-payment", args, scenario.workerEnv(FEED_CLI));
        const exit = await child.exited;
        if (exit.code !== 0) throw new Error(`return-payment failed (${JSON.stringify(exit)}):\n${child.output().slice(-2000)}`);
      }
      // Sent again (the feed saw its command die, or retries anyway): once committed, the same answer and nothing new.
      const again = await returnPayment(scenario.database.db, { obligationId: r.obligationId, reference: r.reference, reason: RETURN_REASON, actor: FEED, channel: "api" });
      replayed.push(again.replayed);
    }

    // Another system returns two more payments by SQL: the trigger makes their obligations orphans.
    for (const cashEntryId of data.returnedBySql) await postCashReversalBySql(scenario.database, cashEntryId);
    await scanForOrphans(scenario.ctx, "crash-test");
    if (phase === "worker") fired = await runArmedWorker(scenario, point!);
    workers = startWorkers(scenario.ctx);
    await recover(scenario, workers);
    await reconcileLedger(scenario.ctx);
    expect((await scanForOrphans(scenario.ctx, "crash-test")).found).toBe(0);
    await workers.close();
    workers = undefined;

    const audits = await scenario.database.db.execute<{ id: string; n: bigint }>(sql`
      select resource_id as id, count(*) as n from audit_log where action = 'payments.cash_returned' group by resource_id`);
    // R1 ends `due` (not dispersed, rightly): the end state's groups hold the obligations still settled.
    return {
      ...(await endStateOf(scenario, { fixable: data.stillSettled, unfixable: [] }, fired)),
      replayed,
      returnAudits: Object.fromEntries(audits.map((a) => [a.id, Number(a.n)])),
    };
  } finally {
    await workers?.close().catch(() => {});
    await scenario.close();
  }
}

describe("a crash while a payment is returned", () => {
  let returnBaseline: ReturnOutcome;

  beforeAll(async () => {
    returnBaseline = await runReturnScenario(undefined);
  }, 180_000);

  it("the crash-free run reverses the returned allocations, disperses the net again and reconciles clean", () => {
    expect(returnBaseline.violations).toEqual({});
    expect(returnBaseline.end.details).toEqual({});
    expect(returnBaseline.reconciliationDefects).toBe(0);
    expect(returnBaseline.replayed).toEqual([true, true]);
    expect(Object.values(returnBaseline.returnAudits)).toEqual([1, 1]);
    const entries = returnBaseline.fingerprint.dispersalEntries!;
    // R1: its one allocation reversed; R2 (in the return's transaction), R3 and R4 (by the workers): allocation 1 reversed, 2 pending.
    expect(entries.filter((l) => / 1 reversed /.test(l))).toHaveLength(12);
    expect(entries.filter((l) => / 2 pending /.test(l))).toHaveLength(9);
    expect(entries).toHaveLength(21);
    expect(returnBaseline.fingerprint.postings!.filter((l) => l.startsWith("REVERSAL ") && l.includes("cash-received"))).toHaveLength(4);
  });

  for (const point of RETURN_POINTS) {
    it(`recovers from a kill at ${describePoint(point)} to the crash-free end state: each return happened once`, async () => {
      const outcome = await runReturnScenario(point);
      recordCrashPoint(`kill at ${describePoint(point)} (payment returns)`, outcome, outcome.fired);
      expect(outcome.fired, `failpoint ${point.at} never fired in its scenario`).toBe(true);
      crashPoints++;
      // Killed before its commit, the return did not happen and sending it again did it; after, it replays.
      const committed = phaseOf(point.at) !== "return" || point.at === "return.after-commit";
      expect(outcome.replayed).toEqual([committed, committed]);
      expect(outcome.returnAudits).toEqual(returnBaseline.returnAudits);
      expect(outcome.violations).toEqual({});
      expect(outcome.end.details).toEqual({});
      expect(outcome.reconciliationDefects).toBe(0);
      expect(outcome.fingerprint).toEqual(returnBaseline.fingerprint);
    }, 180_000);
  }
});
