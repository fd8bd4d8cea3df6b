// Failpoints: named await boundaries where money or queue state changes, at which a test can make the
// process die or throw ("a crash at every step"). Inert unless armed: by DISPERSAL_FAILPOINTS in a
// child process's environment (test-only, see docs/testing.md), or by armFailpoint() inside a test process.
//   DISPERSAL_FAILPOINTS="dispersal.after-commit=kill,escalate.before-commit=throw"
// `pause` stops the process (SIGSTOP) once, until a test continues it: a worker frozen mid-job whose
// lock runs out, so that a second worker runs the same job at the same time.

export type FailpointAction = "kill" | "throw" | "pause";

/**
 * Every failpoint in the code, the one registry: the crash test (test/faults/crashPoints.test.ts)
 * arms each one and fails when one never fires. A failpoint() call takes only a name listed here
 * (FailpointName: another string does not type-check), so a new call site adds its name here.
 * Names say where the kill lands: `<path>.<step>`, the steps of a transaction in their order.
 */
export const FAILPOINTS = [
  // THE dispersal transaction (db/dispersalBatch.ts disperseBatch; its commit in
  // jobs/dispersalBatches.ts), in order. The crash test arms each at batch size 1 and N.
  "dispersal.after-lock", // obligation rows locked in id order, each round authorized; nothing written
  "dispersal.after-allocate", // entries and fee entries written (reversed, restored, new allocation); no healing row, no posting
  "dispersal.after-record", // failed attempts recorded, healing rows resolved (SUSPENSE reversed, audited); no entry posted
  "dispersal.before-commit", // every entry posted: the transaction's last statement done, not committed
  "dispersal.after-commit", // committed, no job handed its outcome yet (a throw here runs the batch again, member by member: replays)
  "dispersal.before-complete", // committed and counted, about to hand each job its outcome (BullMQ then completes or fails it)
  // db/payments.ts returnPayment: a returned payment, one transaction (CLI return-payment, POST …/return)
  "return.after-reversal", // the REVERSAL of the payment's CASH_RECEIVED posted and the status set; no re-dispersal yet
  "return.before-commit", // pending allocations reversed, the net dispersed again, SUSPENSE restated, audited; not committed
  "return.after-commit", // committed, nothing answered yet
  // jobs/retrigger.ts: a failed attempt's record outside the dispersal transaction
  "retrigger.before-record-failure",
  "retrigger.after-record-failure",
  // jobs/escalate.ts and db/healing.ts: escalation of a round's final failure
  "escalate.before-transaction",
  "escalate.after-posting",
  "escalate.before-commit",
  "escalate.after-commit",
  // jobs/escalate.ts: a batch of escalations in one transaction (HEALING_BATCH_SIZE > 1)
  "batch.escalate.before-commit",
  "batch.escalate.after-commit",
  // jobs/scan.ts: the page loop and its backstop
  "scan.before-enqueue",
  "scan.after-enqueue",
  "backstop.before-commit",
  "backstop.after-commit",
  "topup.before-commit",
  "topup.after-commit",
  "scan.after-cursor",
  // jobs/requeue.ts
  "requeue.before-commit",
  "requeue.after-commit",
  "requeue.after-enqueue",
  "requeue.after-record-job",
  // jobs/requeue.ts: four-eyes requeue (REQUEUE_APPROVALS=2), a second operator's approval carried out
  "approve.before-commit",
  "approve.after-commit",
  "approve.after-enqueue",
  "approve.after-record-job",
  // jobs/settlementListener.ts: the fast path (LISTEN/NOTIFY)
  "listener.after-drain",
  "listener.after-enqueue",
  "listener.after-catch-up-request",
  // db/reconciliation.ts and jobs/reconcile.ts
  "reconcile.after-start",
  "reconcile.after-run",
] as const;

export type FailpointName = (typeof FAILPOINTS)[number];

export class FailpointError extends Error {
  readonly code = "FAILPOINT";
  constructor(readonly failpoint: FailpointName) {
    super(`failpoint ${failpoint} fired`);
    this.name = "FailpointError";
  }
}

const REGISTERED: ReadonlySet<string> = new Set(FAILPOINTS);
const armed = new Map<string, FailpointAction>(parseSpec(process.env.DISPERSAL_FAILPOINTS ?? ""));

function parseSpec(spec: string): [string, FailpointAction][] {
  return spec
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const [name, action = "kill"] = entry.split("=");
      if (action !== "kill" && action !== "throw" && action !== "pause") throw new Error(`DISPERSAL_FAILPOINTS: unknown action "${action}" for ${name}`);
      // A misspelt or renamed name would arm nothing: the crash test would wait for a kill that never comes.
      if (!REGISTERED.has(name!)) throw new Error(`DISPERSAL_FAILPOINTS: no failpoint "${name}" (src/failpoint.ts FAILPOINTS)`);
      return [name!, action];
    });
}

/** Arms (or with undefined, disarms) a failpoint in this process. For tests only. */
export function armFailpoint(name: FailpointName, action: FailpointAction | undefined): void {
  if (action) armed.set(name, action);
  else armed.delete(name);
}

/** A named step. Does nothing unless a test armed it; then kills this process, throws, or pauses it once. */
export function failpoint(name: FailpointName): void {
  if (armed.size === 0) return;
  const action = armed.get(name);
  if (!action) return;
  if (action === "pause") {
    armed.delete(name);
    process.kill(process.pid, "SIGSTOP");
    return;
  }
  if (action === "kill") {
    process.kill(process.pid, "SIGKILL");
  }
  throw new FailpointError(name);
}

/** For a promise chain: `work(tx).then(passFailpoint("x.before-commit"))` hits the failpoint, then passes the value on. */
export function passFailpoint<T>(name: FailpointName): (value: T) => T {
  return (value) => {
    failpoint(name);
    return value;
  };
}
