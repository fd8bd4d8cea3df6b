// The retrigger queue's failed-event handler: on the final failure of a round, park the settled
// cash in SUSPENSE (exactly once: db/healing.ts escalateToSuspense). If this process dies before it
// commits, the scan's backstop escalates the obligation instead.
import type { Job } from "bullmq";
import { escalateToSuspense, type EscalationOutcome } from "../db/healing.js";
import { isOutage } from "../db/client.js";
import { failpoint, passFailpoint } from "../failpoint.js";
import { normaliseId } from "../domain/ids.js";
import type { RetriggerJobData } from "../queues/names.js";
import type { PipelineContext } from "./context.js";
import { isRefusal } from "./jobFailures.js";
import { GroupCommit } from "./groupCommit.js";

/** Failures that are not the obligation's fault: a stalled-job limit or our unrecoverable (not escalated) class. */
function isEscalatable(job: Job<RetriggerJobData>, error: Error | undefined): boolean {
  if (!error) return false;
  if (error.name === "UnrecoverableError" || isRefusal(error.message)) return false;
  if (/stalled more than allowable limit|started more than allowable limit/.test(error.message)) return false;
  return job.attemptsMade >= (job.opts.attempts ?? 1);
}

export async function escalateFailedJob(
  ctx: PipelineContext,
  job: Job<RetriggerJobData> | undefined,
  error: Error,
  batches?: EscalationBatches,
): Promise<EscalationOutcome | "not-final"> {
  if (!job || !isEscalatable(job, error)) return "not-final";
  // The processor validated it (or the job was failed as unrecoverable, never escalated); lower case
  // so that the audit row names the obligation as Postgres does.
  const obligationId = normaliseId(job.data?.obligationId);
  if (!obligationId) return "not-final";
  failpoint("escalate.before-transaction");
  const context = { actor: "dispersal-healing", reason: error.message, attemptCount: job.attemptsMade, ...(job.id ? { jobId: job.id } : {}) };
  for (let attempt = 1; ; attempt++) {
    try {
      const outcome = batches
        ? await batches.escalate(obligationId, context)
        : await ctx.database.db.transaction((tx) => escalateToSuspense(tx, obligationId, context).then(passFailpoint("escalate.before-commit")));
      failpoint("escalate.after-commit");
      const fields = { obligationId, jobId: job.id, attempts: job.attemptsMade, outcome, error: error.message };
      if (outcome === "escalated") ctx.log.error(fields, "dispersal escalated to suspense");
      else ctx.log.info(fields, "escalation not needed");
      return outcome;
    } catch (escalationError) {
      if (isOutage(escalationError) && attempt < 3) {
        await new Promise((r) => setTimeout(r, ctx.settings.INFRA_RETRY_DELAY_MS));
        continue;
      }
      // Left to the scan's backstop, which escalates any round that used its attempts with no live job.
      ctx.log.error({ obligationId, jobId: job.id, error: (escalationError as Error).message }, "escalation failed; the next scan's backstop will escalate");
      throw escalationError;
    }
  }
}

type EscalationContext = Parameters<typeof escalateToSuspense>[2];

interface PendingEscalation {
  obligationId: string;
  context: EscalationContext;
  resolve(outcome: EscalationOutcome): void;
  reject(error: unknown): void;
}

/**
 * Group commit for escalations (an escalation storm ends thousands of rounds at once): the final
 * failures one process sees within a few milliseconds are escalated in one transaction, each by
 * the same escalateToSuspense as alone (exactly once: it locks the obligation row first), in
 * obligation id order so that two batches cannot deadlock. A batch that fails for a reason other
 * than an outage escalates each obligation in a transaction of its own.
 */
export class EscalationBatches {
  private readonly group: GroupCommit<PendingEscalation>;

  /** maxSize: HEALING_BATCH_SIZE; a batch gathers the final failures seen within `lingerMs` of its first. */
  constructor(
    private readonly ctx: PipelineContext,
    options: { maxSize: number; lingerMs: number },
  ) {
    this.group = new GroupCommit({ ...options, maxWaitMs: options.lingerMs }, (batch) => this.run(batch));
  }

  escalate(obligationId: string, context: EscalationContext): Promise<EscalationOutcome> {
    return new Promise((resolve, reject) => this.group.add({ obligationId, context, resolve, reject }));
  }

  drained(): Promise<void> {
    return this.group.drained();
  }

  private async run(batch: PendingEscalation[]): Promise<void> {
    const ordered = [...batch].sort((a, b) => (a.obligationId < b.obligationId ? -1 : a.obligationId > b.obligationId ? 1 : 0));
    const unique = ordered.filter((p, i) => i === 0 || ordered[i - 1]!.obligationId !== p.obligationId);
    const alone = ordered.filter((p, i) => i > 0 && ordered[i - 1]!.obligationId === p.obligationId);
    try {
      const outcomes = await this.ctx.database.db.transaction(async (tx) => {
        // Sent together: each escalation touches only its own obligation's rows and accounts, and
        // every one's first statement (the obligation row's lock) goes out in id order, before any
        // second statement, so two batches still take the shared locks in one order.
        // Every one is waited for, even after one failed: none may send a statement once the
        // transaction has been left.
        const settled = await Promise.allSettled(unique.map((p) => escalateToSuspense(tx, p.obligationId, p.context)));
        const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
        if (failed) throw failed.reason;
        const results = settled.map((r) => (r as PromiseFulfilledResult<EscalationOutcome>).value);
        failpoint("batch.escalate.before-commit");
        return results;
      });
      failpoint("batch.escalate.after-commit");
      unique.forEach((p, i) => p.resolve(outcomes[i]!));
    } catch (error) {
      if (isOutage(error)) {
        for (const p of unique) p.reject(error);
      } else {
        alone.push(...unique);
      }
    }
    for (const p of alone) {
      this.ctx.database.db.transaction((tx) => escalateToSuspense(tx, p.obligationId, p.context)).then(p.resolve, p.reject);
    }
  }
}
