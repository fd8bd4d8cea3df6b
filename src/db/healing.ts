// The healing state in Postgres (DESIGN.md §4): the orphan scan query, attempt rows, escalation to
// SUSPENSE, resolution of an escalated obligation, and the database half of a manual requeue.
import { sql, type SQL } from "drizzle-orm";
import { NotEscalatedError, ObligationNotFoundError } from "../domain/errors.js";
import { EscalatedWithoutRequeueError } from "../domain/requeueErrors.js";
import { idempotencyKeys } from "../domain/ledgerRules.js";
import type { Executor, Tx } from "./client.js";
import { writeAudit } from "./audit.js";
import { settledAmountOf } from "./dispersals.js";
import { postEntry, type PostedEntry } from "./ledger.js";
import type { HealingStatus } from "./schema.js";

/** The actor of rounds the service starts itself (the scan, the settlement listener). */
export const SERVICE_ACTOR = "dispersal-healing";

export interface OrphanRow {
  obligationId: string;
  healingStatus: HealingStatus | null;
  attemptCount: number;
}

/**
 * One keyset page of orphans: settled, not dispersed, not escalated, ids after `after`.
 * Served by the partial index obligations_healing_scan_idx, which holds only settled obligations
 * not yet dispersed: the cost follows the orphans, not the history. The healing row is looked up
 * per orphan (LATERAL … LIMIT 1): as a plain left join the planner hashes or merges the whole
 * dispersal_healing_attempts table, which keeps a row for every obligation ever healed.
 */
export async function findOrphanedObligations(db: Executor, options: { after?: string | null; limit: number }): Promise<OrphanRow[]> {
  const rows = await db.execute<{ id: string; status: HealingStatus | null; attempt_count: number | null }>(orphanPageQuery(options));
  return rows.map((r) => ({ obligationId: r.id, healingStatus: r.status, attemptCount: r.attempt_count ?? 0 }));
}

/** The page query itself, exported so that its plan can be checked (EXPLAIN in tests and the benchmark). */
export function orphanPageQuery(options: { after?: string | null; limit: number }): SQL {
  return sql`
    select o.id, h.status, h.attempt_count
      from obligations o
      left join lateral (select status, attempt_count from dispersal_healing_attempts
                          where obligation_id = o.id limit 1) h on true
     where o.status = 'settled' and not o.dispersed
       and o.id > ${options.after ?? "00000000-0000-0000-0000-000000000000"}::uuid
       and (h.status is null or h.status <> 'escalated')
     order by o.id
     limit ${options.limit}`;
}

/** Records a failed attempt of the current round (its own transaction: the dispersal's was rolled back). */
export async function recordFailedAttempt(db: Executor, obligationId: string, attempt: number, error: string, jobId?: string): Promise<void> {
  await db.execute(sql`
    insert into dispersal_healing_attempts as h (obligation_id, attempt_count, status, last_error, last_attempt_at, last_job_id)
    select o.id, ${attempt}, 'retrying', ${error.slice(0, 2000)}, now(), ${jobId ?? null}
      from obligations o where o.id = ${obligationId}::uuid
    on conflict (obligation_id) do update
       set attempt_count = excluded.attempt_count,
           last_error = excluded.last_error,
           last_attempt_at = excluded.last_attempt_at,
           last_job_id = coalesce(excluded.last_job_id, h.last_job_id),
           status = case when h.status = 'resolved' then 'retrying' else h.status end,
           updated_at = now()`);
}

/** Who a round of dispersal acts for, read from Postgres: never from job data. */
export interface RoundAuthority {
  /** The operator who asked for the round (its requeue request), or SERVICE_ACTOR. */
  actor: string;
  requeueRequestId: string | null;
  approvedBy: string | null;
}

/**
 * The guard and actor lookup of a dispersal, in its transaction and before it: locks the obligation
 * rows (the lock escalation takes, so no escalation can slip between this check and the dispersal)
 * and answers, per obligation, the round's authority or an EscalatedWithoutRequeueError when the
 * obligation is escalated and no requeue has been carried out since (nobody asked for a new round).
 * Unknown obligations get SERVICE_ACTOR: the dispersal itself refuses them.
 */
export async function authorizeDispersalRounds(tx: Tx, obligationIds: readonly string[]): Promise<Map<string, RoundAuthority | EscalatedWithoutRequeueError>> {
  const answers = new Map<string, RoundAuthority | EscalatedWithoutRequeueError>();
  if (obligationIds.length === 0) return answers;
  const ids = [...new Set(obligationIds)].sort();
  const rows = await tx.execute<{ id: string; status: HealingStatus | null; request_id: string | null; requested_by: string | null; approved_by: string | null }>(sql`
    select o.id::text, h.status, r.id::text as request_id, r.requested_by, r.approved_by
      from obligations o
      left join dispersal_healing_attempts h on h.obligation_id = o.id
      left join requeue_requests r on r.id = h.requeue_request_id and r.status = 'carried_out'
     where o.id in (${sql.join(ids.map((id) => sql`${id}::uuid`), sql`, `)})
     order by o.id
       for update of o`);
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const id of ids) {
    const row = byId.get(id);
    if (row?.status === "escalated") answers.set(id, new EscalatedWithoutRequeueError(id));
    else if (row?.status === "requeued" && row.request_id && row.requested_by) {
      answers.set(id, { actor: row.requested_by, requeueRequestId: row.request_id, approvedBy: row.approved_by });
    } else answers.set(id, { actor: SERVICE_ACTOR, requeueRequestId: null, approvedBy: null });
  }
  return answers;
}

/** authorizeDispersalRounds for one obligation: its authority, or throws EscalatedWithoutRequeueError. */
export async function authorizeDispersalRound(tx: Tx, obligationId: string): Promise<RoundAuthority> {
  const answer = (await authorizeDispersalRounds(tx, [obligationId])).get(obligationId)!;
  if (answer instanceof EscalatedWithoutRequeueError) throw answer;
  return answer;
}

/**
 * After a successful dispersal, in its transaction: the attempt row becomes `resolved`; an
 * obligation that had been escalated gets its SUSPENSE_ESCALATED posting reversed and an audit row.
 */
export async function resolveHealing(
  tx: Tx,
  obligationId: string,
  attempt: number,
  context: { actor: string; jobId?: string; requeueRequestId?: string | null; approvedBy?: string | null },
): Promise<{ previousStatus: HealingStatus | null; reversal?: PostedEntry }> {
  // No FOR UPDATE in the CTE (it would see its own update and return nothing): the obligation row,
  // locked by disperseObligation, already serializes every writer of this healing row.
  const [row] = await tx.execute<{ previous: HealingStatus | null }>(sql`
    with previous as (select status from dispersal_healing_attempts where obligation_id = ${obligationId}::uuid)
    insert into dispersal_healing_attempts as h (obligation_id, attempt_count, status, last_attempt_at, resolved_at, last_job_id)
    values (${obligationId}::uuid, ${attempt}, 'resolved', now(), now(), ${context.jobId ?? null})
    on conflict (obligation_id) do update
       set attempt_count = excluded.attempt_count, status = 'resolved', last_attempt_at = now(),
           resolved_at = now(), updated_at = now(), last_job_id = coalesce(excluded.last_job_id, h.last_job_id)
    returning (select status from previous) as previous`);
  const previousStatus = row?.previous ?? null;
  if (previousStatus !== "escalated" && previousStatus !== "requeued") return { previousStatus };

  const reversal = await reverseSuspense(tx, obligationId, context.actor);
  await writeAudit(tx, {
    action: "dispersal.self_healing_resolved",
    actor: context.actor,
    resourceType: "obligation",
    resourceId: obligationId,
    severity: "info",
    metadata: { previousStatus, attempt, jobId: context.jobId, reversalEntryId: reversal?.id, requeueRequestId: context.requeueRequestId ?? undefined, approvedBy: context.approvedBy ?? undefined },
  });
  return { previousStatus, reversal };
}

async function reverseSuspense(tx: Tx, obligationId: string, actor: string): Promise<PostedEntry | undefined> {
  const [suspense] = await tx.execute<{ id: string; amount: bigint; mortgage_id: string }>(sql`
    select id, amount, mortgage_id from cash_journal_entries
     where idempotency_key = ${idempotencyKeys.suspenseEscalated(obligationId)}`);
  if (!suspense) return undefined;
  return postEntry(tx, {
    entryType: "REVERSAL",
    amount: BigInt(suspense.amount),
    debit: { family: "BORROWER_RECEIVABLE", obligationId },
    credit: { family: "SUSPENSE", mortgageId: suspense.mortgage_id, obligationId },
    idempotencyKey: idempotencyKeys.reversal(suspense.id),
    reversesEntryId: suspense.id,
    mortgageId: suspense.mortgage_id,
    obligationId,
    reason: "escalated obligation dispersed: suspense cleared",
    actor,
    channel: "dispersal-healing",
  });
}

export type EscalationOutcome = "escalated" | "already-escalated" | "already-dispersed" | "not-settled";

/**
 * Parks the settled cash in SUSPENSE (DESIGN.md §4 escalation), in one transaction: exactly once
 * however many processes call it, because the obligation row is locked first (the same lock the
 * dispersal takes) and the status transition is checked under it.
 */
export async function escalateToSuspense(
  tx: Tx,
  obligationId: string,
  context: { actor: string; reason: string; attemptCount?: number; jobId?: string },
): Promise<EscalationOutcome> {
  const [row] = await tx.execute<{
    id: string;
    mortgage_id: string;
    amount: bigint;
    status: string;
    dispersed: boolean;
    cash_received: bigint;
    healing_status: HealingStatus | null;
  }>(sql`
    select o.id, o.mortgage_id, o.amount, o.status, o.dispersed,
           (select coalesce(sum(j.amount), 0)::bigint from cash_journal_entries j
             where j.obligation_id = o.id and j.entry_type = 'CASH_RECEIVED') as cash_received,
           (select h.status from dispersal_healing_attempts h where h.obligation_id = o.id) as healing_status
      from obligations o where o.id = ${obligationId}::uuid for update of o`);
  if (!row) throw new ObligationNotFoundError(obligationId);
  if (row.dispersed) return "already-dispersed";
  if (row.status !== "settled") return "not-settled";
  if (row.healing_status === "escalated") return "already-escalated";

  const amount = settledAmountOf(row);
  await tx.execute(sql`
    insert into dispersal_healing_attempts as h (obligation_id, attempt_count, status, last_error, escalated_at, last_attempt_at)
    values (${obligationId}::uuid, ${context.attemptCount ?? 0}, 'escalated', ${context.reason.slice(0, 2000)}, now(), now())
    on conflict (obligation_id) do update
       set status = 'escalated', escalated_at = now(), updated_at = now(),
           attempt_count = greatest(h.attempt_count, excluded.attempt_count),
           last_error = coalesce(h.last_error, excluded.last_error)`);
  const posting = await postEntry(tx, {
    entryType: "SUSPENSE_ESCALATED",
    amount,
    debit: { family: "SUSPENSE", mortgageId: row.mortgage_id, obligationId },
    credit: { family: "BORROWER_RECEIVABLE", obligationId },
    idempotencyKey: idempotencyKeys.suspenseEscalated(obligationId),
    mortgageId: row.mortgage_id,
    obligationId,
    reason: context.reason.slice(0, 2000),
    actor: context.actor,
    channel: "dispersal-healing",
  });
  await writeAudit(tx, {
    action: "dispersal.self_healing_escalated",
    actor: context.actor,
    resourceType: "obligation",
    resourceId: obligationId,
    severity: "error",
    metadata: { amount: amount.toString(), reason: context.reason.slice(0, 500), jobId: context.jobId, suspenseEntryId: posting.id, replayedPosting: posting.replayed },
  });
  return "escalated";
}

/** A requeue request being carried out (db/requeueRequests.ts decides when). */
export interface RequeueToCarryOut {
  requestId: string;
  obligationId: string;
  requestedBy: string;
  approvedBy: string | null;
  channel: string;
  reason: string;
  /** More for the audit row (e.g. the CLI's OS user). */
  metadata?: Record<string, unknown>;
}

/**
 * The database half of carrying out a requeue, in the caller's transaction (which holds the healing
 * row locked): escalated → requeued, a new round (attempt_count 0) that points at its request, and
 * the audit row naming the operator who asked and the reason. Anything not escalated is refused.
 */
export async function markRequeued(tx: Tx, request: RequeueToCarryOut): Promise<{ round: number; previousJobId: string | null }> {
  const [row] = await tx.execute<{ status: HealingStatus; last_job_id: string | null }>(sql`
    select h.status, h.last_job_id from dispersal_healing_attempts h
     where h.obligation_id = ${request.obligationId}::uuid for update`);
  if (!row) {
    const [obligation] = await tx.execute(sql`select 1 from obligations where id = ${request.obligationId}::uuid`);
    if (!obligation) throw new ObligationNotFoundError(request.obligationId);
    throw new NotEscalatedError(request.obligationId, null);
  }
  if (row.status !== "escalated") throw new NotEscalatedError(request.obligationId, row.status);
  const [updated] = await tx.execute<{ requeue_count: number }>(sql`
    update dispersal_healing_attempts
       set status = 'requeued', attempt_count = 0, requeue_count = requeue_count + 1,
           requeue_request_id = ${request.requestId}::uuid, updated_at = now()
     where obligation_id = ${request.obligationId}::uuid
    returning requeue_count`);
  const round = updated!.requeue_count + 1;
  await writeAudit(tx, {
    action: "dispersal.self_healing_requeued",
    actor: request.requestedBy,
    resourceType: "obligation",
    resourceId: request.obligationId,
    severity: "warning",
    metadata: { channel: request.channel, round, reason: request.reason, requestId: request.requestId, ...(request.approvedBy ? { approvedBy: request.approvedBy } : {}), ...request.metadata },
  });
  return { round, previousJobId: row.last_job_id };
}

export async function recordJobId(db: Executor, obligationId: string, jobId: string): Promise<void> {
  await db.execute(sql`update dispersal_healing_attempts set last_job_id = ${jobId} where obligation_id = ${obligationId}::uuid`);
}

export interface EscalationView {
  obligationId: string;
  mortgageId: string;
  mortgageReference: string;
  obligationType: string;
  amount: bigint;
  suspenseBalance: bigint;
  attemptCount: number;
  requeueCount: number;
  lastError: string | null;
  escalatedAt: string | null;
  /** Keyset position: when it was escalated, or for a row never escalated, when its healing began. */
  listedAt: string;
  status: HealingStatus;
  lastJobId: string | null;
}

export interface EscalationFilter {
  status?: HealingStatus;
  mortgageId?: string;
  /** Keyset paging: rows listed before this (listedAt, obligation id). */
  before?: { listedAt: string; obligationId: string };
  limit: number;
}

/** Open escalations (or another healing status), newest first, with what an operator needs to judge them. */
export async function listEscalations(db: Executor, filter: EscalationFilter): Promise<EscalationView[]> {
  const status = filter.status ?? "escalated";
  const rows = await db.execute<{
    obligation_id: string;
    mortgage_id: string;
    reference: string;
    type: string;
    amount: bigint;
    suspense_balance: bigint | null;
    attempt_count: number;
    requeue_count: number;
    last_error: string | null;
    escalated_at: string | null;
    listed_at: string;
    status: HealingStatus;
    last_job_id: string | null;
  }>(sql`
    select h.obligation_id, o.mortgage_id, m.reference, o.type, o.amount,
           (select a.cumulative_debits - a.cumulative_credits from cash_accounts a
             where a.family = 'SUSPENSE' and a.subaccount is null and a.mortgage_id = o.mortgage_id
               and a.obligation_id = o.id and a.lender_id is null) as suspense_balance,
           h.attempt_count, h.requeue_count, h.last_error, h.escalated_at,
           coalesce(h.escalated_at, h.created_at) as listed_at, h.status, h.last_job_id
      from dispersal_healing_attempts h
      join obligations o on o.id = h.obligation_id
      join mortgages m on m.id = o.mortgage_id
     where h.status = ${status}
       ${filter.mortgageId ? sql`and o.mortgage_id = ${filter.mortgageId}::uuid` : sql``}
       ${filter.before ? sql`and (coalesce(h.escalated_at, h.created_at), h.obligation_id) < (${filter.before.listedAt}::timestamptz, ${filter.before.obligationId}::uuid)` : sql``}
     order by coalesce(h.escalated_at, h.created_at) desc, h.obligation_id desc
     limit ${filter.limit}`);
  return rows.map((r) => ({
    obligationId: r.obligation_id,
    mortgageId: r.mortgage_id,
    mortgageReference: r.reference,
    obligationType: r.type,
    amount: BigInt(r.amount),
    suspenseBalance: BigInt(r.suspense_balance ?? 0n),
    attemptCount: r.attempt_count,
    requeueCount: r.requeue_count,
    lastError: r.last_error,
    escalatedAt: r.escalated_at,
    listedAt: r.listed_at,
    status: r.status,
    lastJobId: r.last_job_id,
  }));
}
