// Requeue requests (DESIGN.md §4 manual requeue): who asked for a new round of an escalation and
// why, and under the four-eyes policy (ops_policy, here too) who approved or withdrew it. Each step is one transaction that
// holds the obligation's healing row locked, so asks, approvals and withdrawals of one obligation
// run one after another; every step writes its audit row in that transaction. A pending request
// expires REQUEUE_APPROVAL_TTL after it was made: computed from created_at whenever it is read.
import { sql } from "drizzle-orm";
import { NotEscalatedError, ObligationNotFoundError, ObligationNotSettledError } from "../domain/errors.js";
import { NoPendingRequeueError, RequeueExpiredError, RequeuePendingError, SelfApprovalError } from "../domain/requeueErrors.js";
import { writeAudit } from "./audit.js";
import type { Db, Executor, Tx } from "./client.js";
import { markRequeued } from "./healing.js";
import type { HealingStatus } from "./schema.js";

export type RequeueChannel = "api" | "cli" | "bull-board" | "ops-page";
export type RequiredApprovals = 1 | 2;

export interface RequeueAsk {
  obligationId: string;
  requestedBy: string;
  channel: RequeueChannel;
  reason: string;
  /** Recorded in the audit row (e.g. the CLI's OS user). */
  metadata?: Record<string, unknown>;
}

export type RequeueDecision =
  | { status: "requeued"; requestId: string; round: number; previousJobId: string | null }
  | { status: "pending_approval"; requestId: string };

interface PendingRow extends Record<string, unknown> {
  id: string;
  requested_by: string;
  channel: RequeueChannel;
  reason: string;
  expires_at: string;
  expired: boolean;
}

export interface RequeuePolicy {
  requeueApprovals: RequiredApprovals;
  /** Who set it (an OS user, or "REQUEUE_APPROVALS" for the first row); null: no row yet. */
  setBy: string | null;
  setAt: string | null;
}

export const POLICY_SET_AUDIT_ACTION = "ops.policy_set";
export const POLICY_INITIALISED_AUDIT_ACTION = "ops.policy_initialised";

/**
 * The approvals a requeue needs, from Postgres. Read in the requeue's own transaction (share lock:
 * a `policy set` that commits first is seen, one still running waits for this requeue). Only a
 * database with no row yet falls back to this process's REQUEUE_APPROVALS.
 */
export async function readRequeuePolicy(db: Executor, initialApprovals: RequiredApprovals, lock: "for share" | "" = ""): Promise<RequeuePolicy> {
  const [row] = await db.execute<{ requeue_approvals: number; set_by: string; set_at: string }>(sql`
    select requeue_approvals, set_by, set_at from ops_policy ${sql.raw(lock)}`);
  if (!row) return { requeueApprovals: initialApprovals, setBy: null, setAt: null };
  return { requeueApprovals: row.requeue_approvals as RequiredApprovals, setBy: row.set_by, setAt: new Date(row.set_at).toISOString() };
}

/** `dispersal policy set`: one row, replaced, audited with the value before. */
export async function setRequeuePolicy(tx: Tx, approvals: RequiredApprovals, setBy: string, metadata: Record<string, unknown> = {}): Promise<RequeuePolicy & { previous: RequiredApprovals | null }> {
  const [before] = await tx.execute<{ requeue_approvals: number }>(sql`select requeue_approvals from ops_policy for update`);
  const [row] = await tx.execute<{ set_at: string }>(sql`
    insert into ops_policy (singleton, requeue_approvals, set_by, set_at) values (true, ${approvals}, ${setBy}, now())
    on conflict (singleton) do update set requeue_approvals = excluded.requeue_approvals, set_by = excluded.set_by, set_at = excluded.set_at
    returning set_at`);
  const previous = before ? (before.requeue_approvals as RequiredApprovals) : null;
  await writeAudit(tx, {
    action: POLICY_SET_AUDIT_ACTION,
    actor: setBy,
    resourceType: "ops_policy",
    resourceId: "requeue_approvals",
    severity: "warning",
    metadata: { requeueApprovals: approvals, previous, ...metadata },
  });
  return { requeueApprovals: approvals, setBy, setAt: new Date(row!.set_at).toISOString(), previous };
}

/**
 * A service process at start: a database without a policy gets REQUEUE_APPROVALS as its first row
 * (audited); one that has a row keeps it, whatever this process's environment says.
 */
export async function initialiseRequeuePolicy(db: Db, initialApprovals: RequiredApprovals): Promise<{ policy: RequeuePolicy; initialised: boolean }> {
  return db.transaction(async (tx) => {
    const [inserted] = await tx.execute<{ set_at: string }>(sql`
      insert into ops_policy (singleton, requeue_approvals, set_by) values (true, ${initialApprovals}, 'REQUEUE_APPROVALS')
      on conflict (singleton) do nothing returning set_at`);
    if (inserted) {
      await writeAudit(tx, {
        action: POLICY_INITIALISED_AUDIT_ACTION,
        actor: "dispersal-healing",
        resourceType: "ops_policy",
        resourceId: "requeue_approvals",
        metadata: { requeueApprovals: initialApprovals, from: "REQUEUE_APPROVALS" },
      });
    }
    return { policy: await readRequeuePolicy(tx, initialApprovals), initialised: Boolean(inserted) };
  });
}

/** When a pending request made at created_at expires: the one definition, for every query below. */
const expiresAt = (createdAt: ReturnType<typeof sql>, ttlSeconds: number) => sql`(${createdAt} + make_interval(secs => ${ttlSeconds}))`;

/**
 * Locks the healing row; refuses anything that is not an escalation, and an escalation whose
 * obligation is no longer settled (waived, set back to due): its round could only be refused, and
 * the operator must hear that now, not find the row stuck later.
 */
async function lockEscalation(tx: Tx, obligationId: string): Promise<void> {
  const [row] = await tx.execute<{ status: HealingStatus }>(sql`
    select status from dispersal_healing_attempts where obligation_id = ${obligationId}::uuid for update`);
  if (!row) {
    const [obligation] = await tx.execute(sql`select 1 from obligations where id = ${obligationId}::uuid`);
    if (!obligation) throw new ObligationNotFoundError(obligationId);
    throw new NotEscalatedError(obligationId, null);
  }
  if (row.status !== "escalated") throw new NotEscalatedError(obligationId, row.status);
  const [obligation] = await tx.execute<{ status: string }>(sql`select status from obligations where id = ${obligationId}::uuid`);
  if (obligation && obligation.status !== "settled") throw new ObligationNotSettledError(obligationId, obligation.status);
}

async function pendingRequestOf(tx: Tx, obligationId: string, ttlSeconds: number): Promise<PendingRow | undefined> {
  const [row] = await tx.execute<PendingRow>(sql`
    select id::text, requested_by, channel, reason, ${expiresAt(sql`created_at`, ttlSeconds)} as expires_at,
           ${expiresAt(sql`created_at`, ttlSeconds)} <= now() as expired
      from requeue_requests
     where obligation_id = ${obligationId}::uuid and status = 'pending' for update`);
  return row;
}

/**
 * An expired request gives way to a new one: closed as withdrawn by nobody (there is no status
 * "expired" to give it; the one-pending index must be freed), with its own audit row saying why.
 */
async function closeExpiredRequest(tx: Tx, obligationId: string, expired: PendingRow, channel: RequeueChannel): Promise<void> {
  await tx.execute(sql`update requeue_requests set status = 'withdrawn', decided_at = now() where id = ${expired.id}::uuid`);
  await writeAudit(tx, {
    action: "dispersal.self_healing_requeue_expired",
    actor: "dispersal-healing",
    resourceType: "obligation",
    resourceId: obligationId,
    severity: "info",
    metadata: { channel, requestedBy: expired.requested_by, reason: expired.reason, requestId: expired.id, expiredAt: new Date(expired.expires_at).toISOString() },
  });
}

/**
 * An operator asks for a new round. With one approval required (ops_policy, read here) it is
 * carried out at once; with two it waits (`pending_approval`) and nothing else changes. One pending
 * request per obligation. `initialApprovals`: REQUEUE_APPROVALS, used only while ops_policy is empty.
 */
export async function askForRequeue(tx: Tx, ask: RequeueAsk, initialApprovals: RequiredApprovals, approvalTtlSeconds: number): Promise<RequeueDecision> {
  await lockEscalation(tx, ask.obligationId);
  const approvals = (await readRequeuePolicy(tx, initialApprovals, "for share")).requeueApprovals;
  const pending = await pendingRequestOf(tx, ask.obligationId, approvalTtlSeconds);
  if (pending && !pending.expired) throw new RequeuePendingError(ask.obligationId, pending.requested_by);
  if (pending) await closeExpiredRequest(tx, ask.obligationId, pending, ask.channel);
  const [request] = await tx.execute<{ id: string }>(sql`
    insert into requeue_requests (obligation_id, requested_by, channel, reason, status)
    values (${ask.obligationId}::uuid, ${ask.requestedBy}, ${ask.channel}, ${ask.reason}, 'pending')
    returning id::text`);
  const requestId = request!.id;
  if (approvals === 2) {
    await writeAudit(tx, {
      action: "dispersal.self_healing_requeue_requested",
      actor: ask.requestedBy,
      resourceType: "obligation",
      resourceId: ask.obligationId,
      severity: "warning",
      metadata: { channel: ask.channel, reason: ask.reason, requestId, approvalsRequired: 2, ...ask.metadata },
    });
    return { status: "pending_approval", requestId };
  }
  const carried = await markRequeued(tx, {
    requestId,
    obligationId: ask.obligationId,
    requestedBy: ask.requestedBy,
    approvedBy: null,
    channel: ask.channel,
    reason: ask.reason,
    ...(ask.metadata ? { metadata: ask.metadata } : {}),
  });
  await closeRequest(tx, requestId, { round: carried.round });
  return { status: "requeued", requestId, round: carried.round, previousJobId: carried.previousJobId };
}

/** A different operator approves the pending request: it is carried out in this transaction. */
export async function approveRequeue(
  tx: Tx,
  obligationId: string,
  approver: string,
  channel: RequeueChannel,
  approvalTtlSeconds: number,
): Promise<{ status: "requeued"; requestId: string; requestedBy: string; round: number; previousJobId: string | null }> {
  await lockHealingRow(tx, obligationId);
  const pending = await pendingRequestOf(tx, obligationId, approvalTtlSeconds);
  if (!pending) throw new NoPendingRequeueError(obligationId);
  if (pending.requested_by === approver) throw new SelfApprovalError(obligationId, approver);
  if (pending.expired) throw new RequeueExpiredError(obligationId, pending.requested_by, new Date(pending.expires_at).toISOString());
  const carried = await markRequeued(tx, { requestId: pending.id, obligationId, requestedBy: pending.requested_by, approvedBy: approver, channel: pending.channel, reason: pending.reason });
  await closeRequest(tx, pending.id, { round: carried.round, approvedBy: approver });
  await writeAudit(tx, {
    action: "dispersal.self_healing_requeue_approved",
    actor: approver,
    resourceType: "obligation",
    resourceId: obligationId,
    severity: "warning",
    metadata: { channel, requestedBy: pending.requested_by, reason: pending.reason, requestId: pending.id, round: carried.round },
  });
  return { status: "requeued", requestId: pending.id, requestedBy: pending.requested_by, round: carried.round, previousJobId: carried.previousJobId };
}

/** Any operator may withdraw a pending request (the requester changing their mind, or a colleague refusing it). */
export async function withdrawRequeue(tx: Tx, obligationId: string, actor: string, channel: RequeueChannel): Promise<{ status: "withdrawn"; requestId: string; requestedBy: string }> {
  await lockHealingRow(tx, obligationId);
  // Expired or not, a pending request can be withdrawn: the expiry does not matter here.
  const pending = await pendingRequestOf(tx, obligationId, 0);
  if (!pending) throw new NoPendingRequeueError(obligationId);
  await tx.execute(sql`
    update requeue_requests set status = 'withdrawn', withdrawn_by = ${actor}, decided_at = now() where id = ${pending.id}::uuid`);
  await writeAudit(tx, {
    action: "dispersal.self_healing_requeue_withdrawn",
    actor,
    resourceType: "obligation",
    resourceId: obligationId,
    severity: "info",
    metadata: { channel, requestedBy: pending.requested_by, reason: pending.reason, requestId: pending.id },
  });
  return { status: "withdrawn", requestId: pending.id, requestedBy: pending.requested_by };
}

async function lockHealingRow(tx: Tx, obligationId: string): Promise<void> {
  await tx.execute(sql`select 1 from dispersal_healing_attempts where obligation_id = ${obligationId}::uuid for update`);
}

async function closeRequest(tx: Tx, requestId: string, outcome: { round: number; approvedBy?: string }): Promise<void> {
  await tx.execute(sql`
    update requeue_requests
       set status = 'carried_out', decided_at = now(), round = ${outcome.round}, approved_by = ${outcome.approvedBy ?? null}
     where id = ${requestId}::uuid`);
}

export interface PendingRequeue {
  requestId: string;
  obligationId: string;
  mortgageReference: string;
  amount: bigint;
  requestedBy: string;
  channel: string;
  reason: string;
  requestedAt: string;
  expiresAt: string;
  /** Waited longer than REQUEUE_APPROVAL_TTL: it cannot be approved; a new request replaces it. */
  expired: boolean;
}

/** Pending requests, the expired ones included (marked), oldest first. */
export async function listPendingRequeues(db: Executor, limit: number, approvalTtlSeconds: number): Promise<PendingRequeue[]> {
  const rows = await db.execute<{ id: string; obligation_id: string; reference: string; amount: bigint; requested_by: string; channel: string; reason: string; created_at: string; expires_at: string; expired: boolean }>(sql`
    select r.id::text, r.obligation_id::text, m.reference, o.amount, r.requested_by, r.channel, r.reason, r.created_at,
           ${expiresAt(sql`r.created_at`, approvalTtlSeconds)} as expires_at, ${expiresAt(sql`r.created_at`, approvalTtlSeconds)} <= now() as expired
      from requeue_requests r
      join obligations o on o.id = r.obligation_id
      join mortgages m on m.id = o.mortgage_id
     where r.status = 'pending'
     order by r.created_at, r.id
     limit ${limit}`);
  return rows.map((r) => ({
    requestId: r.id,
    obligationId: r.obligation_id,
    mortgageReference: r.reference,
    amount: BigInt(r.amount),
    requestedBy: r.requested_by,
    channel: r.channel,
    reason: r.reason,
    requestedAt: new Date(r.created_at).toISOString(),
    expiresAt: new Date(r.expires_at).toISOString(),
    expired: r.expired,
  }));
}

export type RequeueSkipReason = "not_found" | "not_escalated" | "not_settled" | "already_pending";
export type RequeuePreview = { obligationId: string; outcome: "would_requeue" } | { obligationId: string; outcome: "skipped"; reason: RequeueSkipReason; status?: HealingStatus | null; requestedBy?: string };

/** The dry run of a bulk requeue: what each id would come to, read in one query, changing nothing. */
export async function previewRequeues(db: Executor, obligationIds: readonly string[], approvalTtlSeconds: number): Promise<RequeuePreview[]> {
  const ids = [...new Set(obligationIds)];
  if (ids.length === 0) return [];
  const rows = await db.execute<{ id: string; status: HealingStatus | null; obligation_status: string; pending_by: string | null }>(sql`
    select o.id::text, h.status, o.status as obligation_status,
           (select r.requested_by from requeue_requests r
             where r.obligation_id = o.id and r.status = 'pending' and ${expiresAt(sql`r.created_at`, approvalTtlSeconds)} > now()) as pending_by
      from obligations o
      left join dispersal_healing_attempts h on h.obligation_id = o.id
     where o.id in (${sql.join(ids.map((id) => sql`${id}::uuid`), sql`, `)})`);
  const byId = new Map(rows.map((r) => [r.id, r]));
  return ids.map((obligationId): RequeuePreview => {
    const row = byId.get(obligationId);
    if (!row) return { obligationId, outcome: "skipped", reason: "not_found" };
    if (row.status !== "escalated") return { obligationId, outcome: "skipped", reason: "not_escalated", status: row.status };
    if (row.obligation_status !== "settled") return { obligationId, outcome: "skipped", reason: "not_settled" };
    if (row.pending_by) return { obligationId, outcome: "skipped", reason: "already_pending", requestedBy: row.pending_by };
    return { obligationId, outcome: "would_requeue" };
  });
}
