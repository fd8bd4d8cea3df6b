// The healing state in Postgres (DESIGN.md §4): the orphan scan query, attempt rows, escalation to
// SUSPENSE, resolution of an escalated obligation, and the database half of a manual requeue.
import { sql, type SQL } from "drizzle-orm";
import { AmountOutOfRangeError, NotEscalatedError, ObligationNotFoundError } from "../domain/errors.js";
import { EscalatedWithoutRequeueError } from "../domain/requeueErrors.js";
import { idempotencyKeys, planSuspense, type SuspensePlan } from "../domain/ledgerRules.js";
import type { Executor, Tx } from "./client.js";
import { writeAudit } from "./audit.js";
import { failpoint } from "../failpoint.js";
import { allocatedOf, centsFromNumeric, netCashOf, suspenseOf } from "./obligationAmounts.js";
import { postEntries, postEntry, type PostedEntry } from "./ledger.js";
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
  await recordFailedAttempts(db, [{ obligationId, attempt, error, ...(jobId ? { jobId } : {}) }]);
}

export interface FailedAttempt {
  obligationId: string;
  attempt: number;
  error: string;
  jobId?: string;
}

/** recordFailedAttempt for several obligations in one statement (a batch's rejected members; unknown ids write nothing). */
export async function recordFailedAttempts(db: Executor, failures: readonly FailedAttempt[]): Promise<void> {
  if (failures.length === 0) return;
  const payload = failures.map((f) => ({ obligation_id: f.obligationId, attempt: f.attempt, error: f.error.slice(0, 2000), job_id: f.jobId ?? null }));
  await db.execute(sql`
    insert into dispersal_healing_attempts as h (obligation_id, attempt_count, status, last_error, last_attempt_at, last_job_id)
    select o.id, t.attempt, 'retrying', t.error, now(), t.job_id
      from jsonb_to_recordset(${JSON.stringify(payload)}::jsonb) as t(obligation_id uuid, attempt integer, error text, job_id text)
      join obligations o on o.id = t.obligation_id
     order by o.id
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
  // One statement text whatever the batch size (a list of placeholders would be a new prepared
  // statement, parsed and planned anew, for every size a batch happens to have).
  const idList = sql`select (jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb))::uuid`;
  // Lock first, read after: rows of other tables joined in a FOR UPDATE statement keep the snapshot
  // from before the lock was granted, so an escalation that committed meanwhile would go unseen.
  await tx.execute(sql`select o.id from obligations o where o.id in (${idList}) order by o.id for update of o`);
  const rows = await tx.execute<{ id: string; status: HealingStatus | null; request_id: string | null; requested_by: string | null; approved_by: string | null }>(sql`
    select o.id::text, h.status, r.id::text as request_id, r.requested_by, r.approved_by
      from obligations o
      left join dispersal_healing_attempts h on h.obligation_id = o.id
      left join requeue_requests r on r.id = h.requeue_request_id and r.status = 'carried_out'
     where o.id in (${idList})`);
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

export interface ResolutionContext {
  actor: string;
  jobId?: string;
  requeueRequestId?: string | null;
  approvedBy?: string | null;
}

export interface Resolution {
  previousStatus: HealingStatus | null;
  reversals: PostedEntry[];
}

/**
 * After a successful dispersal, in its transaction: the attempt row becomes `resolved`; an
 * obligation that had been escalated gets every SUSPENSE_ESCALATED posting reversed (the first and
 * each top-up: SUSPENSE back to 0) and an audit row.
 */
export async function resolveHealing(tx: Tx, obligationId: string, attempt: number, context: ResolutionContext): Promise<Resolution> {
  return (await resolveHealings(tx, [{ obligationId, attempt, context }])).get(obligationId)!;
}

/**
 * resolveHealing for every obligation of a dispersal batch: the attempt rows of all of them in one
 * statement, then the reversal and audit of each one that had been escalated (rare: one by one).
 * The obligation rows, locked by the dispersal, already serialize every writer of these rows.
 */
export interface ResolutionRequest {
  obligationId: string;
  attempt: number;
  context: ResolutionContext;
}

export async function resolveHealings(tx: Tx, requests: readonly ResolutionRequest[]): Promise<Map<string, Resolution>> {
  const resolutions = new Map<string, Resolution>();
  if (requests.length === 0) return resolutions;
  const payload = requests.map((r) => ({ obligation_id: r.obligationId, attempt: r.attempt, job_id: r.context.jobId ?? null }));
  // Every CTE reads the snapshot from before the upsert, so `previous` is the status each row had.
  // No FOR UPDATE there (it would see the upsert's own change and return nothing).
  const rows = await tx.execute<{ obligation_id: string; previous: HealingStatus | null }>(sql`
    with input as (
      select * from jsonb_to_recordset(${JSON.stringify(payload)}::jsonb) as t(obligation_id uuid, attempt integer, job_id text)),
    previous as (
      select h.obligation_id, h.status from dispersal_healing_attempts h where h.obligation_id in (select obligation_id from input)),
    resolved as (
      insert into dispersal_healing_attempts as h (obligation_id, attempt_count, status, last_attempt_at, resolved_at, last_job_id)
      select obligation_id, attempt, 'resolved', now(), now(), job_id from input order by obligation_id
      on conflict (obligation_id) do update
         set attempt_count = excluded.attempt_count, status = 'resolved', last_attempt_at = now(),
             resolved_at = now(), updated_at = now(), last_job_id = coalesce(excluded.last_job_id, h.last_job_id)
      returning h.obligation_id)
    select r.obligation_id::text, p.status as previous
      from resolved r left join previous p on p.obligation_id = r.obligation_id`);
  const previousOf = new Map(rows.map((r) => [r.obligation_id, r.previous ?? null]));
  for (const { obligationId, attempt, context } of requests) {
    if (!previousOf.has(obligationId)) throw new Error(`healing row of ${obligationId} was not written`);
    const previousStatus = previousOf.get(obligationId)!;
    if (previousStatus !== "escalated" && previousStatus !== "requeued") {
      resolutions.set(obligationId, { previousStatus, reversals: [] });
      continue;
    }
    const reversals = await reverseAllSuspense(tx, obligationId, context.actor, "escalated obligation dispersed: suspense cleared");
    await writeAudit(tx, {
      action: "dispersal.self_healing_resolved",
      actor: context.actor,
      resourceType: "obligation",
      resourceId: obligationId,
      severity: "info",
      metadata: { previousStatus, attempt, jobId: context.jobId, reversalEntryIds: reversals.filter((r) => !r.replayed).map((r) => r.id), requeueRequestId: context.requeueRequestId ?? undefined, approvedBy: context.approvedBy ?? undefined },
    });
    resolutions.set(obligationId, { previousStatus, reversals });
  }
  return resolutions;
}

/** Reverses every SUSPENSE_ESCALATED posting of the obligation still standing (the first and every top-up, whichever mortgage it was filed under). */
async function reverseAllSuspense(tx: Tx, obligationId: string, actor: string, reason: string): Promise<PostedEntry[]> {
  const parked = await tx.execute<{ id: string; amount: bigint; mortgage_id: string }>(sql`
    select j.id, j.amount, j.mortgage_id from cash_journal_entries j
     where j.obligation_id = ${obligationId}::uuid and j.entry_type = 'SUSPENSE_ESCALATED'
       and not exists (select 1 from cash_journal_entries r where r.reverses_entry_id = j.id and r.entry_type = 'REVERSAL')
     order by j.sequence`);
  return postEntries(
    tx,
    parked.map((suspense) => ({
      entryType: "REVERSAL" as const,
      amount: BigInt(suspense.amount),
      debit: { family: "BORROWER_RECEIVABLE" as const, obligationId },
      credit: { family: "SUSPENSE" as const, mortgageId: suspense.mortgage_id, obligationId },
      idempotencyKey: idempotencyKeys.reversal(suspense.id),
      reversesEntryId: suspense.id,
      mortgageId: suspense.mortgage_id,
      obligationId,
      reason,
      actor,
      channel: "dispersal-healing",
    })),
  );
}

export type EscalationOutcome = "escalated" | "already-escalated" | "stale-round" | "already-dispersed" | "not-settled";

interface LockedForSuspense {
  mortgageId: string;
  healingStatus: HealingStatus | null;
  attemptCount: number;
  netCash: bigint;
  allocated: bigint;
  /** What SUSPENSE must hold while escalated: net settled cash − allocated (never below 0). */
  target: bigint;
  suspenseBalance: bigint;
  /** SUSPENSE_ESCALATED postings the obligation ever had (the next key's sequence number − 1). */
  postedBefore: number;
}

/**
 * Locks the obligation row (the lock every dispersal and every suspense posting of it takes), then
 * reads the healing row (locked too) and the amounts in new statements. Under READ COMMITTED each
 * statement sees what committed before it began: read in the locking statement, the healing status
 * would be the one from before the lock was granted, and two escalations queued on the lock would
 * both see "not escalated" (two audit rows; a `requeued` row flipped back to `escalated`).
 */
async function lockForSuspense(
  tx: Tx,
  obligationId: string,
  options: { escalatedWhileUnsettled?: boolean } = {},
): Promise<LockedForSuspense | "not-found" | "already-dispersed" | "not-settled"> {
  const [obligation] = await tx.execute<{ mortgage_id: string; status: string; dispersed: boolean }>(sql`
    select o.mortgage_id, o.status, o.dispersed from obligations o where o.id = ${obligationId}::uuid for update`);
  if (!obligation) return "not-found";
  if (obligation.dispersed) return "already-dispersed";
  const [healing] = await tx.execute<{ status: HealingStatus; attempt_count: number }>(sql`
    select status, attempt_count from dispersal_healing_attempts where obligation_id = ${obligationId}::uuid for update`);
  // An escalation whose obligation stopped being settled (a payment returned, waived) stays
  // escalated: its SUSPENSE still follows its net cash − allocated. Nothing else acts on it.
  if (obligation.status !== "settled" && !(options.escalatedWhileUnsettled && healing?.status === "escalated")) return "not-settled";
  const [amounts] = await tx.execute<{ net_cash: string; allocated: string; suspense_balance: string; parked: string }>(sql`
    select ${netCashOf(sql`o.id`)}::text as net_cash, ${allocatedOf(sql`o.id`)}::text as allocated,
           ${suspenseOf(sql`o.id`)}::text as suspense_balance,
           (select count(*) from cash_journal_entries j
             where j.obligation_id = o.id and j.entry_type = 'SUSPENSE_ESCALATED')::text as parked
      from obligations o where o.id = ${obligationId}::uuid`);
  const netCash = centsFromNumeric(amounts!.net_cash);
  const allocated = centsFromNumeric(amounts!.allocated);
  return {
    mortgageId: obligation.mortgage_id,
    healingStatus: healing?.status ?? null,
    attemptCount: healing?.attempt_count ?? 0,
    netCash,
    allocated,
    target: netCash > allocated ? netCash - allocated : 0n,
    suspenseBalance: centsFromNumeric(amounts!.suspense_balance),
    postedBefore: Number(amounts!.parked),
  };
}

/**
 * Brings the obligation's SUSPENSE to net settled cash − allocated (domain planSuspense): the first
 * posting, a top-up of the difference, or a restatement. Returns what it posted (nothing when it already held it).
 */
async function parkUnallocated(
  tx: Tx,
  obligationId: string,
  locked: LockedForSuspense,
  context: { actor: string; reason: string },
): Promise<{ plan: SuspensePlan; postings: PostedEntry[] }> {
  const plan = planSuspense(obligationId, locked);
  if (plan.kind === "none") return { plan, postings: [] };
  const reversals = plan.kind === "restate" ? await reverseAllSuspense(tx, obligationId, context.actor, "unallocated cash fell: suspense restated") : [];
  if (plan.idempotencyKey === null) return { plan, postings: reversals };
  const posting = await postEntry(tx, {
    entryType: "SUSPENSE_ESCALATED",
    amount: plan.amount,
    debit: { family: "SUSPENSE", mortgageId: locked.mortgageId, obligationId },
    credit: { family: "BORROWER_RECEIVABLE", obligationId },
    idempotencyKey: plan.idempotencyKey,
    mortgageId: locked.mortgageId,
    obligationId,
    reason: context.reason.slice(0, 2000),
    metadata: { netCash: locked.netCash.toString(), allocated: locked.allocated.toString(), suspenseBefore: locked.suspenseBalance.toString(), plan: plan.kind },
    actor: context.actor,
    channel: "dispersal-healing",
  });
  return { plan, postings: [...reversals, posting] };
}

/**
 * Parks the settled cash in SUSPENSE (DESIGN.md §4 escalation), in one transaction: exactly once per
 * round however many processes call it, because the obligation row is locked first (the same lock
 * the dispersal takes) and the healing status is read after the lock is granted. A later round's
 * escalation posts only what SUSPENSE lacks (late cash). `attemptCount` is the attempts the caller's
 * round used: a healing row showing fewer belongs to a newer round (requeued since), which this
 * escalation must not end.
 */
export async function escalateToSuspense(
  tx: Tx,
  obligationId: string,
  context: { actor: string; reason: string; attemptCount?: number; jobId?: string },
): Promise<EscalationOutcome> {
  const locked = await lockForSuspense(tx, obligationId);
  if (locked === "not-found") throw new ObligationNotFoundError(obligationId);
  if (typeof locked === "string") return locked;
  if (locked.healingStatus === "escalated") return "already-escalated";
  if (locked.healingStatus !== null && context.attemptCount !== undefined && locked.attemptCount < context.attemptCount) return "stale-round";

  await tx.execute(sql`
    insert into dispersal_healing_attempts as h (obligation_id, attempt_count, status, last_error, escalated_at, last_attempt_at)
    values (${obligationId}::uuid, ${context.attemptCount ?? 0}, 'escalated', ${context.reason.slice(0, 2000)}, now(), now())
    on conflict (obligation_id) do update
       set status = 'escalated', escalated_at = now(), updated_at = now(),
           attempt_count = greatest(h.attempt_count, excluded.attempt_count),
           last_error = coalesce(h.last_error, excluded.last_error)`);
  // In a savepoint: a posting past the bigint range must not undo the escalation itself. The
  // obligation is escalated without it, and its last error says why (DESIGN.md §3 step 7).
  let parked: Awaited<ReturnType<typeof parkUnallocated>>;
  try {
    parked = await tx.transaction((savepoint) => parkUnallocated(savepoint, obligationId, locked, context));
  } catch (error) {
    if (!(error instanceof AmountOutOfRangeError)) throw error;
    await tx.execute(sql`update dispersal_healing_attempts set last_error = ${error.message} where obligation_id = ${obligationId}::uuid`);
    parked = { plan: { kind: "none" }, postings: [] };
  }
  const { plan, postings } = parked;
  const posted = plan.kind === "none" ? 0n : plan.amount;
  failpoint("escalate.after-posting");
  await writeAudit(tx, {
    action: "dispersal.self_healing_escalated",
    actor: context.actor,
    resourceType: "obligation",
    resourceId: obligationId,
    severity: "error",
    metadata: {
      amount: posted.toString(),
      settledAmount: locked.netCash.toString(),
      allocated: locked.allocated.toString(),
      suspensePosting: plan.kind,
      reason: context.reason.slice(0, 500),
      jobId: context.jobId,
      suspenseEntryIds: postings.map((p) => p.id),
    },
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

export type SuspenseTopUpOutcome = "topped-up" | "in-balance" | "not-parked" | "already-dispersed" | "not-settled";

/**
 * Cash that arrived for an obligation whose settled amount sits in SUSPENSE: post the difference
 * (DESIGN.md §4), in the caller's transaction. The payments intake calls it with its CASH_RECEIVED
 * posting; the scan's backstop for cash posted by other systems. It acts on an escalated obligation,
 * and on one requeued or retrying whose SUSPENSE still holds an earlier escalation's amount (its
 * balance must be 0 or the settled amount); a resolved one has nothing parked.
 */
export async function topUpSuspense(tx: Tx, obligationId: string, context: { actor: string; reason: string }): Promise<{ outcome: SuspenseTopUpOutcome; postings: PostedEntry[] }> {
  const locked = await lockForSuspense(tx, obligationId, { escalatedWhileUnsettled: true });
  if (locked === "not-found") throw new ObligationNotFoundError(obligationId);
  if (typeof locked === "string") return { outcome: locked, postings: [] };
  const parked = locked.healingStatus === "escalated" || (locked.healingStatus !== "resolved" && locked.healingStatus !== null && locked.suspenseBalance !== 0n);
  if (!parked || locked.postedBefore === 0) return { outcome: "not-parked", postings: [] };
  let result: Awaited<ReturnType<typeof parkUnallocated>>;
  try {
    result = await tx.transaction((savepoint) => parkUnallocated(savepoint, obligationId, locked, context));
  } catch (error) {
    // Its escalation already names it (last_error); reconciliation keeps naming the mismatch.
    if (error instanceof AmountOutOfRangeError) return { outcome: "not-parked", postings: [] };
    throw error;
  }
  const { plan, postings } = result;
  if (plan.kind === "none") return { outcome: "in-balance", postings };
  await writeAudit(tx, {
    action: "dispersal.suspense_topped_up",
    actor: context.actor,
    resourceType: "obligation",
    resourceId: obligationId,
    severity: "warning",
    metadata: {
      amount: plan.amount.toString(),
      settledAmount: locked.netCash.toString(),
      allocated: locked.allocated.toString(),
      suspenseBefore: locked.suspenseBalance.toString(),
      suspensePosting: plan.kind,
      healingStatus: locked.healingStatus,
      suspenseEntryIds: postings.map((p) => p.id),
    },
  });
  return { outcome: "topped-up", postings };
}

/**
 * Obligations whose SUSPENSE holds an escalation's amount that is no longer their settled amount
 * (cash posted by another system since): the backstop tops them up. Reads only the open healing
 * rows that were ever escalated (partial index dispersal_healing_attempts_open_idx on status,
 * escalated_at): its cost follows the escalations, neither the history nor the orphans in flight.
 */
export async function findSuspenseShortfalls(db: Executor, options: { limit: number }): Promise<string[]> {
  const rows = await db.execute<{ id: string }>(sql`
    select o.id from dispersal_healing_attempts h
      join obligations o on o.id = h.obligation_id
      cross join lateral (select ${suspenseOf(sql`o.id`)} as balance,
                                 greatest(${netCashOf(sql`o.id`)} - ${allocatedOf(sql`o.id`)}, 0) as target) s
     where h.status in ('escalated', 'requeued', 'retrying')
       and h.escalated_at is not null -- only a row escalated at some time can have anything parked
       and o.status = 'settled' and not o.dispersed
       and (h.status = 'escalated' or s.balance <> 0)
       and s.balance <> s.target
       and exists (select 1 from cash_journal_entries j where j.obligation_id = o.id and j.entry_type = 'SUSPENSE_ESCALATED')
     order by o.id
     limit ${options.limit}`);
  return rows.map((r) => r.id);
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

/**
 * A round whose job was refused (the obligation is no longer settled, or unknown): no job will come
 * for it, so its healing row must not stay `requeued` or `retrying`. One that had been escalated goes
 * back to `escalated` (its SUSPENSE kept, listed again); one never escalated is closed with the reason.
 */
export async function endRefusedRound(db: Executor, obligationId: string, reason: string): Promise<void> {
  await db.execute(sql`
    update dispersal_healing_attempts
       set status = case when escalated_at is not null then 'escalated' else 'resolved' end,
           resolved_at = case when escalated_at is not null then resolved_at else now() end,
           last_error = ${`refused: ${reason}`.slice(0, 2000)}, updated_at = now()
     where obligation_id = ${obligationId}::uuid and status in ('requeued', 'retrying')`);
}

export async function recordJobId(db: Executor, obligationId: string, jobId: string): Promise<void> {
  await db.execute(sql`update dispersal_healing_attempts set last_job_id = ${jobId} where obligation_id = ${obligationId}::uuid`);
}

export interface EscalationView {
  obligationId: string;
  mortgageId: string;
  mortgageReference: string;
  obligationType: string;
  /** The obligation's own status: an escalation whose obligation stopped being settled stays listed, marked so. */
  obligationStatus: string;
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
  /** Only rows that were escalated at some point (a resolved row may have healed on a retry without ever escalating). */
  escalatedOnly?: boolean;
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
    obligation_status: string;
    amount: bigint;
    suspense_balance: string | null;
    attempt_count: number;
    requeue_count: number;
    last_error: string | null;
    escalated_at: string | null;
    listed_at: string;
    status: HealingStatus;
    last_job_id: string | null;
  }>(sql`
    select h.obligation_id, o.mortgage_id, m.reference, o.type, o.status as obligation_status, o.amount,
           ${suspenseOf(sql`o.id`)}::text as suspense_balance,
           h.attempt_count, h.requeue_count, h.last_error, h.escalated_at,
           coalesce(h.escalated_at, h.created_at) as listed_at, h.status, h.last_job_id
      from dispersal_healing_attempts h
      join obligations o on o.id = h.obligation_id
      join mortgages m on m.id = o.mortgage_id
     where h.status = ${status}
       ${filter.mortgageId ? sql`and o.mortgage_id = ${filter.mortgageId}::uuid` : sql``}
       ${filter.escalatedOnly ? sql`and h.escalated_at is not null` : sql``}
       ${filter.before ? sql`and (coalesce(h.escalated_at, h.created_at), h.obligation_id) < (${filter.before.listedAt}::timestamptz, ${filter.before.obligationId}::uuid)` : sql``}
     order by coalesce(h.escalated_at, h.created_at) desc, h.obligation_id desc
     limit ${filter.limit}`);
  return rows.map((r) => ({
    obligationId: r.obligation_id,
    mortgageId: r.mortgage_id,
    mortgageReference: r.reference,
    obligationType: r.type,
    obligationStatus: r.obligation_status,
    amount: BigInt(r.amount),
    suspenseBalance: centsFromNumeric(r.suspense_balance),
    attemptCount: r.attempt_count,
    requeueCount: r.requeue_count,
    lastError: r.last_error,
    escalatedAt: r.escalated_at,
    listedAt: r.listed_at,
    status: r.status,
    lastJobId: r.last_job_id,
  }));
}
