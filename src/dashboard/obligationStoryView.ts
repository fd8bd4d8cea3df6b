// The whole story of one obligation as the API and the story page show it: the database's record
// (db/obligationStory.ts), the current BullMQ retrigger job if any, the cash received and returned,
// the healing rounds, the pending requeue request, and one timeline merged from the audit log, the
// ledger postings, the healing row and the job. Money stays strings of integer cents.
import type { Job } from "bullmq";
import { loadObligationStory, type ObligationStoryRecord, type StoryAudit, type StoryHealing, type StoryPosting, type StoryRequeueRequest } from "../db/obligationStory.js";
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

/** A borrower's payment (CASH_RECEIVED) or its return (the REVERSAL of one). */
export interface CashMovement {
  kind: "received" | "returned";
  entryId: string;
  /** The payment's reference (from the CASH_RECEIVED key); for a return, the returned payment's. */
  reference: string;
  amount: string;
  at: string;
  actor: string | null;
  reason: string | null;
}

/** One round of healing: the first began when healing began; each requeue carried out begins the next. */
export interface HealingRound {
  round: number;
  startedAt: string;
  startedBy: string | null;
  reason: string | null;
  approvedBy: string | null;
  channel: string | null;
  outcome: "escalated" | "resolved" | "in progress";
  endedAt: string | null;
}

export interface PendingRequeueRequest extends StoryRequeueRequest {
  expiresAt: string;
  /** Waited past REQUEUE_APPROVAL_TTL: it cannot be approved any more; a new request replaces it. */
  expired: boolean;
}

export interface ObligationStory extends ObligationStoryRecord {
  /** Non-reversed entries and fees, cents as text. */
  dispersal: { toLenders: string; fee: string; total: string };
  cash: CashMovement[];
  rounds: HealingRound[];
  pendingRequeue: PendingRequeueRequest | null;
  /** Operators a requeue needs (the four-eyes policy): 1, or 2 (a second operator approves). */
  approvalsRequired: 1 | 2;
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
  const standing = (e: { status: string }) => e.status !== "reversed";
  const toLenders = record.dispersalEntries.filter(standing).reduce((sum, e) => sum + BigInt(e.amount), 0n);
  const fee = record.servicingFees.filter(standing).reduce((sum, f) => sum + BigInt(f.amount), 0n);
  return {
    ...record,
    dispersal: { toLenders: toLenders.toString(), fee: fee.toString(), total: (toLenders + fee).toString() },
    cash: cashMovementsOf(record.postings),
    rounds: healingRoundsOf(record.audit, record.healing),
    pendingRequeue: pendingRequeueOf(record.requeueRequests, ctx.settings.REQUEUE_APPROVAL_TTL, new Date()),
    approvalsRequired: ctx.settings.REQUEUE_APPROVALS,
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

const CASH_RECEIVED_KEY = "cash-ledger:cash-received:";

export function cashMovementsOf(postings: readonly StoryPosting[]): CashMovement[] {
  const received = new Map(postings.filter((p) => p.entryType === "CASH_RECEIVED").map((p) => [p.id, p]));
  // The reference as sent; a posting another system wrote without one shows its key's tail.
  const referenceOf = (p: StoryPosting) =>
    p.paymentReference ?? (p.idempotencyKey.startsWith(CASH_RECEIVED_KEY) ? p.idempotencyKey.slice(CASH_RECEIVED_KEY.length) : p.idempotencyKey);
  return postings.flatMap((p): CashMovement[] => {
    const base = { entryId: p.id, amount: p.amount, at: p.createdAt, actor: p.actor, reason: p.reason };
    if (p.entryType === "CASH_RECEIVED") return [{ kind: "received", reference: referenceOf(p), ...base }];
    const returned = p.entryType === "REVERSAL" && p.reversesEntryId ? received.get(p.reversesEntryId) : undefined;
    return returned ? [{ kind: "returned", reference: referenceOf(returned), ...base }] : [];
  });
}

const ROUND_ENDS = { "dispersal.self_healing_escalated": "escalated", "dispersal.self_healing_resolved": "resolved" } as const;

/**
 * The rounds from the audit log (each carried-out requeue names its operator, reason and approver);
 * how the latest one ended falls back on the healing row, since a round that succeeds before it ever
 * escalated leaves no audit row.
 */
export function healingRoundsOf(audit: readonly StoryAudit[], healing: StoryHealing | null): HealingRound[] {
  if (!healing) return [];
  const text = (value: unknown) => (typeof value === "string" && value !== "" ? value : null);
  const rounds: HealingRound[] = [
    { round: 1, startedAt: healing.createdAt, startedBy: null, reason: null, approvedBy: null, channel: null, outcome: "in progress", endedAt: null },
  ];
  for (const a of audit) {
    if (a.action === "dispersal.self_healing_requeued") {
      rounds.push({
        round: rounds.length + 1,
        startedAt: a.createdAt,
        startedBy: a.actor,
        reason: text(a.metadata.reason),
        approvedBy: text(a.metadata.approvedBy),
        channel: text(a.metadata.channel),
        outcome: "in progress",
        endedAt: null,
      });
      continue;
    }
    const outcome = ROUND_ENDS[a.action as keyof typeof ROUND_ENDS];
    if (outcome) Object.assign(rounds[rounds.length - 1]!, { outcome, endedAt: a.createdAt });
  }
  const last = rounds[rounds.length - 1]!;
  if (last.outcome === "in progress" && healing.status === "resolved") Object.assign(last, { outcome: "resolved", endedAt: healing.resolvedAt });
  if (last.outcome === "in progress" && healing.status === "escalated") Object.assign(last, { outcome: "escalated", endedAt: healing.escalatedAt });
  return rounds;
}

export function pendingRequeueOf(requests: readonly StoryRequeueRequest[], approvalTtlSeconds: number, now: Date): PendingRequeueRequest | null {
  const pending = requests.find((r) => r.status === "pending");
  if (!pending) return null;
  const expiresAt = new Date(new Date(pending.createdAt).getTime() + approvalTtlSeconds * 1000);
  return { ...pending, expiresAt: expiresAt.toISOString(), expired: expiresAt.getTime() <= now.getTime() };
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
