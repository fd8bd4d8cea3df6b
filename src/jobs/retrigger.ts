// Processor of one retrigger job: disperse one orphaned obligation (DESIGN.md §4). Domain failures
// use up the round's attempts; an outage of Postgres does not (the job is put back, delayed).
import { DelayedError, type Job } from "bullmq";
import { z } from "zod";
import { idSchema } from "../domain/ids.js";
import { DomainError, InvalidJobDataError, ObligationNotFoundError, ObligationNotSettledError } from "../domain/errors.js";
import { classifyDatabaseError, isOutage } from "../db/client.js";
import type { DispersalResult } from "../db/dispersals.js";
import { endRefusedRound, recordFailedAttempt } from "../db/healing.js";
import { failpoint } from "../failpoint.js";
import type { RetriggerJobData } from "../queues/names.js";
import type { PipelineContext } from "./context.js";
import type { DispersalBatches } from "./dispersalBatches.js";
import { refuse } from "./jobFailures.js";

/**
 * Exactly the obligation id: a job carrying more (an actor, a hand-made field) was not made by
 * enqueueRetriggers and is refused whole, so no field of job data can ever be mistaken for who acts.
 * (A job of an older version with `requestedBy` fails without retry; its obligation, `requeued` and
 * not escalated, is enqueued again by the next scan.)
 */
const jobData = z.strictObject({ obligationId: idSchema });

/** Bull Board's retry only needs to know which obligation a job was for; the requeue checks the rest. */
const jobObligation = z.object({ obligationId: idSchema });

export interface RetriggerResult {
  obligationId: string;
  outcome: "dispersed" | "already-dispersed";
  entries: number;
  settledAmount: string;
  resolvedEscalation: boolean;
}


export function parseRetriggerData(data: unknown): RetriggerJobData {
  const parsed = jobData.safeParse(data);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join(".") || "data"}: ${i.message}`).join("; ");
    throw new InvalidJobDataError(`malformed retrigger job data (${detail.slice(0, 300)})`);
  }
  return parsed.data;
}

export function obligationOfJob(data: unknown): string | undefined {
  const parsed = jobObligation.safeParse(data);
  return parsed.success ? parsed.data.obligationId : undefined;
}

/**
 * The retrigger processor: the job joins the batch this process is gathering (a job alone is a
 * batch of one) and completes or fails on its own with the batch's outcome for its obligation.
 */
export function retriggerProcessor(ctx: PipelineContext, batches: DispersalBatches) {
  return async function processRetrigger(job: Job<RetriggerJobData>, token?: string): Promise<RetriggerResult> {
    let obligationId: string;
    try {
      obligationId = parseRetriggerData(job.data).obligationId;
    } catch (error) {
      ctx.log.warn({ jobId: job.id, error: (error as Error).message }, "retrigger job rejected: malformed data");
      throw refuse((error as Error).message);
    }
    const attempt = job.attemptsMade + 1;
    const started = performance.now();
    const outcome = await batches.disperse({ obligationId, attempt, ...(job.id ? { jobId: job.id } : {}) });
    if (outcome.kind === "dispersed") return dispersed(ctx, job, obligationId, attempt, outcome.dispersal, outcome.resolvedEscalation, started);
    return handleFailure(ctx, job, token, obligationId, attempt, outcome.error, outcome.attemptRecorded);
  };
}

function dispersed(ctx: PipelineContext, job: Job<RetriggerJobData>, obligationId: string, attempt: number, dispersal: DispersalResult, resolvedEscalation: boolean, started: number): RetriggerResult {
  ctx.log.info(
    { obligationId, jobId: job.id, attempt, entries: dispersal.entries.length, replayed: dispersal.replayed, resolvedEscalation, ms: Math.round(performance.now() - started) },
    resolvedEscalation ? "escalated obligation dispersed: suspense reversed" : "obligation dispersed",
  );
  return {
    obligationId,
    outcome: dispersal.replayed ? "already-dispersed" : "dispersed",
    entries: dispersal.entries.length,
    settledAmount: dispersal.settledAmount.toString(),
    resolvedEscalation,
  };
}

/** `attemptRecorded`: the batch already wrote the failed attempt in its transaction (the same row recordFailedAttempt writes). */
async function handleFailure(ctx: PipelineContext, job: Job<RetriggerJobData>, token: string | undefined, obligationId: string, attempt: number, error: unknown, attemptRecorded = false): Promise<never> {
  if (isOutage(error)) return putBackForOutage(ctx, job, token, obligationId, error);
  const message = (error as Error).message ?? String(error);
  if (error instanceof DomainError && !error.retryable) {
    ctx.log.warn({ obligationId, jobId: job.id, code: error.code, error: message }, "retrigger job failed without retry");
    if (error instanceof ObligationNotSettledError || error instanceof ObligationNotFoundError) {
      try {
        await endRefusedRound(ctx.database.db, obligationId, message);
      } catch (endError) {
        if (isOutage(endError)) return putBackForOutage(ctx, job, token, obligationId, endError);
        throw endError;
      }
    }
    throw refuse(`${error.code}: ${message}`);
  }
  try {
    failpoint("retrigger.before-record-failure");
    if (!attemptRecorded) await recordFailedAttempt(ctx.database.db, obligationId, attempt, message, job.id);
  } catch (recordError) {
    if (isOutage(recordError)) return putBackForOutage(ctx, job, token, obligationId, recordError);
    throw recordError;
  }
  failpoint("retrigger.after-record-failure");
  ctx.log.warn({ obligationId, jobId: job.id, attempt, of: job.opts.attempts, error: message }, "dispersal attempt failed");
  throw error;
}

/** An outage is not the obligation's fault: delay the job without counting an attempt. */
async function putBackForOutage(ctx: PipelineContext, job: Job<RetriggerJobData>, token: string | undefined, obligationId: string, error: unknown): Promise<never> {
  const infra = classifyDatabaseError(error, ctx.database.url) as Error;
  const delay = ctx.settings.INFRA_RETRY_DELAY_MS * (1 + Math.random());
  ctx.log.warn({ obligationId, jobId: job.id, error: infra.message, delayMs: Math.round(delay) }, "postgres unavailable: job put back without using an attempt");
  await job.moveToDelayed(Date.now() + delay, token);
  throw new DelayedError();
}
