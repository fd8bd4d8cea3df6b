// The whole story of one obligation as the API and the story page show it: the database's record
// (db/obligationStory.ts), the current BullMQ retrigger job if any, and one timeline merged from the
// audit log, the ledger postings, the healing row and the job. Money stays strings of integer cents.
import type { Job } from "bullmq";
import { loadObligationStory, type ObligationStoryRecord, type StoryPosting } from "../db/obligationStory.js";
import type { PipelineContext } from "../jobs/context.js";
import { withinDeadline } from "../deadline.js";

const JOB_LOOKUP_DEADLINE_MS = 2000;

export interface StoryJob {
  id: string;
  state: string;
  attemptsMade: number;
  attempts: number;
  failedReason: string | null;
  createdAt: string;
  processedAt: string | null;
  finishedAt: string | null;
  /** True when it is the obligation's live job (deduplication still points at it). */
  live: boolean;
}

export interface TimelineItem {
  at: string;
  kind: "obligation" | "posting" | "audit" | "healing" | "job";
  /** The audit action name for audit items (e.g. dispersal.self_healing_escalated); a descriptive name otherwise. */
  action: string;
  actor: string | null;
  reason: string | null;
  amount: string | null;
  detail: Record<string, unknown>;
}

export interface ObligationStory extends ObligationStoryRecord {
  dispersal: { toLenders: string; fee: string; total: string };
  job: StoryJob | null;
  /** Why job is null although a job may exist (Redis did not answer in time). */
  jobUnavailable: string | null;
  timeline: TimelineItem[];
}

export async function buildObligationStory(ctx: PipelineContext, obligationId: string): Promise<ObligationStory | undefined> {
  const record = await loadObligationStory(ctx.readers.db, obligationId);
  if (!record) return undefined;
  let job: StoryJob | null = null;
  let jobUnavailable: string | null = null;
  try {
    job = await withinDeadline(currentJob(ctx, obligationId, record.healing?.lastJobId ?? null), JOB_LOOKUP_DEADLINE_MS, "retrigger job lookup");
  } catch (error) {
    jobUnavailable = `the retrigger job could not be read from Redis: ${(error as Error).message}`;
    ctx.log.warn({ obligationId, error: (error as Error).message }, "obligation story without its job");
  }
  const toLenders = record.dispersalEntries.reduce((sum, e) => sum + BigInt(e.amount), 0n);
  const fee = BigInt(record.servicingFee?.amount ?? "0");
  return {
    ...record,
    dispersal: { toLenders: toLenders.toString(), fee: fee.toString(), total: (toLenders + fee).toString() },
    job,
    jobUnavailable,
    timeline: timelineOf(record, job),
  };
}

/** The live job (deduplication id = obligation id) or else the last one the healing row names. */
async function currentJob(ctx: PipelineContext, obligationId: string, lastJobId: string | null): Promise<StoryJob | null> {
  const queue = ctx.queues.retrigger;
  const liveId = await queue.getDeduplicationJobId(obligationId);
  for (const id of [liveId, lastJobId]) {
    if (!id) continue;
    const found: Job | undefined = await queue.getJob(id);
    if (!found) continue;
    return {
      id,
      state: await found.getState(),
      attemptsMade: found.attemptsMade,
      attempts: found.opts.attempts ?? 1,
      failedReason: found.failedReason || null,
      createdAt: new Date(found.timestamp).toISOString(),
      processedAt: found.processedOn ? new Date(found.processedOn).toISOString() : null,
      finishedAt: found.finishedOn ? new Date(found.finishedOn).toISOString() : null,
      live: id === liveId,
    };
  }
  return null;
}

function reasonOf(metadata: Record<string, unknown>): string | null {
  const reason = metadata.reason;
  return typeof reason === "string" && reason !== "" ? reason : null;
}

function postingAction(p: StoryPosting): string {
  return `ledger.${p.entryType.toLowerCase()}`;
}

export function timelineOf(record: ObligationStoryRecord, job: StoryJob | null): TimelineItem[] {
  const items: TimelineItem[] = [];
  const o = record.obligation;
  items.push({ at: o.createdAt, kind: "obligation", action: "obligation.created", actor: null, reason: null, amount: o.amount, detail: { type: o.type, dueDate: o.dueDate } });
  if (o.settledAt) items.push({ at: o.settledAt, kind: "obligation", action: "obligation.settled", actor: null, reason: null, amount: null, detail: {} });
  for (const p of record.postings) {
    items.push({
      at: p.createdAt,
      kind: "posting",
      action: postingAction(p),
      actor: p.actor,
      reason: p.reason,
      amount: p.amount,
      detail: { entryId: p.id, idempotencyKey: p.idempotencyKey, debit: p.debit.family, credit: p.credit.family, channel: p.channel, lenderId: p.debit.lenderId ?? p.credit.lenderId },
    });
  }
  for (const a of record.audit) {
    items.push({ at: a.createdAt, kind: "audit", action: a.action, actor: a.actor, reason: reasonOf(a.metadata), amount: null, detail: { severity: a.severity, ...a.metadata } });
  }
  const h = record.healing;
  if (h?.lastAttemptAt && h.attemptCount > 0) {
    // The healing row keeps only the latest attempt of the round (the audit log keeps the rounds).
    const succeeded = h.status === "resolved";
    items.push({
      at: h.lastAttemptAt,
      kind: "healing",
      action: succeeded ? "healing.attempt_succeeded" : "healing.attempt_failed",
      actor: null,
      reason: succeeded ? null : h.lastError,
      amount: null,
      detail: { attempt: h.attemptCount, status: h.status },
    });
  }
  if (job) {
    items.push({
      at: job.finishedAt ?? job.processedAt ?? job.createdAt,
      kind: "job",
      action: `job.${job.state}`,
      actor: null,
      reason: job.failedReason,
      amount: null,
      detail: { jobId: job.id, attemptsMade: job.attemptsMade, attempts: job.attempts, live: job.live },
    });
  }
  // ISO 8601 UTC strings sort as time; the order of equal times stays as pushed (stable sort).
  return items.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
}
