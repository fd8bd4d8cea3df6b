// The retrigger queue's failed-event handler: on the final failure of a round, park the settled
// cash in SUSPENSE (exactly once: db/healing.ts escalateToSuspense). If this process dies before it
// commits, the scan's backstop escalates the obligation instead.
import type { Job } from "bullmq";
import { escalateToSuspense, type EscalationOutcome } from "../db/healing.js";
import { isOutage } from "../db/client.js";
import { normaliseId } from "../domain/ids.js";
import type { RetriggerJobData } from "../queues/names.js";
import type { PipelineContext } from "./context.js";
import { UNRECOVERABLE_PREFIX } from "./retrigger.js";

/** Failures that are not the obligation's fault: a stalled-job limit or our unrecoverable (not escalated) class. */
function isEscalatable(job: Job<RetriggerJobData>, error: Error | undefined): boolean {
  if (!error) return false;
  if (error.name === "UnrecoverableError" || error.message.startsWith(UNRECOVERABLE_PREFIX)) return false;
  if (/stalled more than allowable limit|started more than allowable limit/.test(error.message)) return false;
  return job.attemptsMade >= (job.opts.attempts ?? 1);
}

export async function escalateFailedJob(ctx: PipelineContext, job: Job<RetriggerJobData> | undefined, error: Error): Promise<EscalationOutcome | "not-final"> {
  if (!job || !isEscalatable(job, error)) return "not-final";
  // The processor validated it (or the job was failed as unrecoverable, never escalated); lower case
  // so that the audit row names the obligation as Postgres does.
  const obligationId = normaliseId(job.data?.obligationId);
  if (!obligationId) return "not-final";
  for (let attempt = 1; ; attempt++) {
    try {
      const outcome = await ctx.database.db.transaction((tx) =>
        escalateToSuspense(tx, obligationId, {
          actor: "dispersal-healing",
          reason: error.message,
          attemptCount: job.attemptsMade,
          ...(job.id ? { jobId: job.id } : {}),
        }),
      );
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
