// The payments intake (DESIGN.md §5): one borrower payment is one transaction — its CASH_RECEIVED
// posting (idempotency key from the service account and the payment reference), the obligation's new status
// (`partially_settled`, or `settled` with `settled_at` once the net received reaches the amount)
// and its audit row; the settlement trigger then tells the listeners, which disperse it. A returned
// payment is the REVERSAL of its CASH_RECEIVED, the status recomputed from the net cash and the
// allocation of §3 run in the same transaction.
import { sql } from "drizzle-orm";
import {
  DomainError,
  ObligationNotFoundError,
  ObligationNotPayableError,
  ObligationNotSettledError,
  PaymentExceedsOutstandingError,
  PaymentNotFoundError,
  PaymentReferenceConflictError,
} from "../domain/errors.js";
import { idempotencyKeys } from "../domain/ledgerRules.js";
import { failpoint } from "../failpoint.js";
import { writeAudit } from "./audit.js";
import { currentTraceparent } from "../telemetry.js";
import type { Db, Tx } from "./client.js";
import { disperseObligations } from "./dispersals.js";
import { topUpSuspense } from "./healing.js";
import { postEntry } from "./ledger.js";
import { centsFromNumeric, netReceivedOf } from "./obligationAmounts.js";

export const PAYMENT_AUDIT_ACTION = "payments.cash_received";

export interface PaymentRequest {
  obligationId: string;
  reference: string;
  amount: bigint;
  /** The service account: a reference is its own, unique among its payments, compared ignoring case. */
  actor: string;
  channel: "api" | "cli" | "simulate";
  /** Recorded in the audit row (e.g. the CLI's OS user). */
  metadata?: Record<string, unknown>;
}

export interface PaymentReceipt {
  obligationId: string;
  reference: string;
  amount: bigint;
  journalEntryId: string;
  /** Cash received for the obligation up to and including this payment. */
  receivedTotal: bigint;
  outstanding: bigint;
  /** The obligation's status right after this payment. */
  status: "partially_settled" | "settled";
  /** True when the reference had been received before: this call wrote nothing. */
  replayed: boolean;
}

/** Obligation statuses that still take cash (an `upcoming` one may be paid early). */
const PAYABLE = new Set(["upcoming", "due", "overdue", "partially_settled"]);

interface ObligationRow extends Record<string, unknown> {
  mortgage_id: string;
  amount: bigint;
  status: string;
}

interface PostedRow extends Record<string, unknown> {
  id: string;
  obligation_id: string | null;
  amount: bigint;
  sequence: bigint;
  mortgage_id: string;
  /** Its REVERSAL, once the payment was returned. */
  reversal_id: string | null;
}

/**
 * The account's payment under this reference: its key (any case), else the key of before (the
 * reference exactly as it was sent then) if this account posted it. Another account's payment is
 * never found: it neither blocks this one nor shows in an answer.
 */
async function paymentOf(tx: Tx, account: string, reference: string): Promise<PostedRow | undefined> {
  const [row] = await tx.execute<PostedRow>(sql`
    select c.id, c.obligation_id, c.amount, c.sequence, c.mortgage_id,
           (select r.id from cash_journal_entries r where r.reverses_entry_id = c.id and r.entry_type = 'REVERSAL' limit 1) as reversal_id
      from cash_journal_entries c
     where c.idempotency_key in (${idempotencyKeys.cashReceived(account, reference)}, ${idempotencyKeys.cashReceivedBefore(reference)})
       and c.entry_type = 'CASH_RECEIVED' and c.actor = ${account}
     order by c.sequence desc limit 1`);
  return row;
}

export function receivePayment(db: Db, request: PaymentRequest): Promise<PaymentReceipt> {
  return db.transaction((tx) => receivePaymentIn(tx, request));
}

export async function receivePaymentIn(tx: Tx, request: PaymentRequest): Promise<PaymentReceipt> {
  const { obligationId, reference, amount } = request;
  const idempotencyKey = idempotencyKeys.cashReceived(request.actor, reference);
  // One reference at a time, whichever obligation it names: a second call with the same reference
  // waits here and then finds the first one's posting (replay or 409), never a unique violation.
  await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${idempotencyKey}, 0))`);
  const [obligation] = await tx.execute<ObligationRow>(sql`
    select mortgage_id, amount, status from obligations where id = ${obligationId}::uuid for update`);
  if (!obligation) throw new ObligationNotFoundError(obligationId);

  const previous = await paymentOf(tx, request.actor, reference);
  if (previous) {
    // The account's own payment; still no figures in the refusal (it is logged and may be shown).
    if (previous.obligation_id !== obligationId) throw new PaymentReferenceConflictError(reference, "for another obligation");
    if (BigInt(previous.amount) !== amount) throw new PaymentReferenceConflictError(reference, "with another amount");
    // The same answer as the first call: the totals as they stood right after that payment.
    const receivedTotal = await receivedFor(tx, obligationId, BigInt(previous.sequence));
    return receipt(request, previous.id, BigInt(obligation.amount), receivedTotal, true);
  }

  if (!PAYABLE.has(obligation.status)) throw new ObligationNotPayableError(obligationId, obligation.status);
  // Net of returned payments: a borrower whose payment bounced can pay again.
  const receivedBefore = await receivedFor(tx, obligationId);
  const outstanding = BigInt(obligation.amount) - receivedBefore;
  if (amount > outstanding) throw new PaymentExceedsOutstandingError(obligationId, amount, outstanding);

  const posted = await postEntry(tx, {
    entryType: "CASH_RECEIVED",
    amount,
    debit: { family: "TRUST_CASH", mortgageId: obligation.mortgage_id },
    credit: { family: "BORROWER_RECEIVABLE", obligationId },
    idempotencyKey,
    mortgageId: obligation.mortgage_id,
    obligationId,
    reason: "payment received",
    metadata: { reference },
    actor: request.actor,
    channel: request.channel,
  });
  const result = receipt(request, posted.id, BigInt(obligation.amount), receivedBefore + amount, false);
  await tx.execute(sql`
    update obligations
       set status = ${result.status},
           settled_at = case when ${result.status} = 'settled' then now() else settled_at end
     where id = ${obligationId}::uuid`);
  await writeAudit(tx, {
    action: PAYMENT_AUDIT_ACTION,
    actor: request.actor,
    resourceType: "obligation",
    resourceId: obligationId,
    metadata: { reference, amount: amount.toString(), status: result.status, outstanding: result.outstanding.toString(), journalEntryId: posted.id, channel: request.channel, ...traceOfPayment(), ...request.metadata },
  });
  return result;
}

/** Net cash received for the obligation (db/obligationAmounts), or CASH_RECEIVED up to a journal sequence for a replayed answer. */
async function receivedFor(tx: Tx, obligationId: string, upToSequence?: bigint): Promise<bigint> {
  if (upToSequence === undefined) {
    const [row] = await tx.execute<{ total: string }>(sql`select ${netReceivedOf(sql`${obligationId}::uuid`)}::text as total`);
    return centsFromNumeric(row!.total);
  }
  const [row] = await tx.execute<{ total: string }>(sql`
    select coalesce(sum(amount), 0)::text as total from cash_journal_entries
     where obligation_id = ${obligationId}::uuid and entry_type = 'CASH_RECEIVED' and sequence <= ${upToSequence.toString()}::int8`);
  return centsFromNumeric(row!.total);
}

export const PAYMENT_RETURN_AUDIT_ACTION = "payments.cash_returned";

export interface PaymentReturnRequest {
  obligationId: string;
  reference: string;
  reason: string;
  /** The service account that received the payment: only its own payments are found. */
  actor: string;
  channel: "api" | "cli";
  /** Recorded in the audit row (e.g. the CLI's OS user). */
  metadata?: Record<string, unknown>;
}

export interface PaymentReturn {
  obligationId: string;
  reference: string;
  amount: bigint;
  /** The REVERSAL of the payment's CASH_RECEIVED. */
  reversalEntryId: string;
  netReceived: bigint;
  outstanding: bigint;
  status: "due" | "partially_settled" | "settled";
  /** What the allocation did in the same transaction (DESIGN.md §3 delta < 0). */
  allocationsReversed: number;
  reallocated: boolean;
  /** True when the payment had been returned before: this call wrote nothing. */
  replayed: boolean;
}

export async function returnPayment(db: Db, request: PaymentReturnRequest): Promise<PaymentReturn> {
  const returned = await db.transaction((tx) => returnPaymentIn(tx, request));
  failpoint("return.after-commit");
  return returned;
}

/**
 * Posts the REVERSAL of the payment's CASH_RECEIVED (key cash-ledger:reversal:<entry>), sets the
 * status from the net cash received (`due`, `partially_settled`, `settled`) and runs the allocation:
 * every pending allocation the cash no longer covers is reversed and, if still settled, the net is
 * allocated anew; an escalation's SUSPENSE is restated. The same reference again: the same answer.
 */
export async function returnPaymentIn(tx: Tx, request: PaymentReturnRequest): Promise<PaymentReturn> {
  const { obligationId, reference } = request;
  const [obligation] = await tx.execute<ObligationRow>(sql`
    select mortgage_id, amount, status from obligations where id = ${obligationId}::uuid for update`);
  if (!obligation) throw new ObligationNotFoundError(obligationId);
  const payment = await paymentOf(tx, request.actor, reference);
  if (!payment || payment.obligation_id !== obligationId) throw new PaymentNotFoundError(obligationId, reference);
  const amount = BigInt(payment.amount);
  const obligationAmount = BigInt(obligation.amount);

  if (payment.reversal_id) {
    const netReceived = await receivedFor(tx, obligationId);
    return { obligationId, reference, amount, reversalEntryId: payment.reversal_id, netReceived, outstanding: obligationAmount - netReceived, status: statusFor(netReceived, obligationAmount), allocationsReversed: 0, reallocated: false, replayed: true };
  }
  const reversal = await postEntry(tx, {
    entryType: "REVERSAL",
    amount,
    debit: { family: "BORROWER_RECEIVABLE", obligationId },
    credit: { family: "TRUST_CASH", mortgageId: payment.mortgage_id },
    idempotencyKey: idempotencyKeys.reversal(payment.id),
    reversesEntryId: payment.id,
    mortgageId: payment.mortgage_id,
    obligationId,
    reason: request.reason.slice(0, 2000),
    metadata: { reference },
    actor: request.actor,
    channel: request.channel,
  });
  const netReceived = await receivedFor(tx, obligationId);
  const status = statusFor(netReceived, obligationAmount);
  await tx.execute(sql`
    update obligations
       set status = ${status}, settled_at = case when ${status} = 'settled' then settled_at else null end
     where id = ${obligationId}::uuid`);
  failpoint("return.after-reversal");

  const outcome = (await disperseObligations(tx, [obligationId])).get(obligationId)!;
  let allocationsReversed = 0;
  let reallocated = false;
  if (outcome.outcome === "dispersed") {
    allocationsReversed = outcome.dispersal.reversed;
    reallocated = outcome.dispersal.allocation !== null;
  } else if (!(outcome.error instanceof ObligationNotSettledError) && !(outcome.error instanceof DomainError)) {
    throw outcome.error;
  } else {
    // Still settled with nobody holding units: its pending allocations are reversed all the same,
    // the remainder waits (the healer escalates it into SUSPENSE).
    allocationsReversed = outcome.dispersal?.reversed ?? 0;
  }
  // An escalation's SUSPENSE follows the cash down (restated), whatever the status became.
  await topUpSuspense(tx, obligationId, { actor: request.actor, reason: `payment ${reference} returned: ${request.reason}`.slice(0, 2000) });
  await writeAudit(tx, {
    action: PAYMENT_RETURN_AUDIT_ACTION,
    actor: request.actor,
    resourceType: "obligation",
    resourceId: obligationId,
    severity: "warning",
    metadata: { reference, amount: amount.toString(), reason: request.reason.slice(0, 500), status, reversalEntryId: reversal.id, allocationsReversed, reallocated, channel: request.channel, ...request.metadata, ...(outcome.outcome === "rejected" ? { dispersal: outcome.error.code } : {}) },
  });
  failpoint("return.before-commit");
  return { obligationId, reference, amount, reversalEntryId: reversal.id, netReceived, outstanding: obligationAmount - netReceived, status, allocationsReversed, reallocated, replayed: false };
}

function statusFor(netReceived: bigint, amount: bigint): PaymentReturn["status"] {
  if (netReceived >= amount) return "settled";
  return netReceived > 0n ? "partially_settled" : "due";
}

function receipt(request: PaymentRequest, journalEntryId: string, obligationAmount: bigint, receivedTotal: bigint, replayed: boolean): PaymentReceipt {
  return {
    obligationId: request.obligationId,
    reference: request.reference,
    amount: request.amount,
    journalEntryId,
    receivedTotal,
    outstanding: obligationAmount - receivedTotal,
    status: receivedTotal >= obligationAmount ? "settled" : "partially_settled",
    replayed,
  };
}

/**
 * The payment's trace context, in its audit row (committed with the settlement, so visible when
 * the listener is notified): the listener continues this trace (db/paymentTraces.ts).
 */
function traceOfPayment(): { traceparent?: string } {
  const traceparent = currentTraceparent();
  return traceparent ? { traceparent } : {};
}
