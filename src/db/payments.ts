// The payments intake (DESIGN.md §5): one borrower payment is one transaction — its CASH_RECEIVED
// posting (idempotency key from the payment reference), the obligation's new status
// (`partially_settled`, or `settled` with `settled_at` once the received total reaches the amount)
// and its audit row. The settlement trigger then tells the listeners, which disperse it.
import { sql } from "drizzle-orm";
import {
  ObligationNotFoundError,
  ObligationNotPayableError,
  PaymentExceedsOutstandingError,
  PaymentReferenceConflictError,
} from "../domain/errors.js";
import { idempotencyKeys } from "../domain/ledgerRules.js";
import { writeAudit } from "./audit.js";
import type { Db, Tx } from "./client.js";
import { postEntry } from "./ledger.js";

export const PAYMENT_AUDIT_ACTION = "payments.cash_received";

export interface PaymentRequest {
  obligationId: string;
  reference: string;
  amount: bigint;
  actor: string;
  channel: "api" | "cli" | "simulate";
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
}

export function receivePayment(db: Db, request: PaymentRequest): Promise<PaymentReceipt> {
  return db.transaction((tx) => receivePaymentIn(tx, request));
}

export async function receivePaymentIn(tx: Tx, request: PaymentRequest): Promise<PaymentReceipt> {
  const { obligationId, reference, amount } = request;
  const idempotencyKey = idempotencyKeys.cashReceived(reference);
  // One reference at a time, whichever obligation it names: a second call with the same reference
  // waits here and then finds the first one's posting (replay or 409), never a unique violation.
  await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${idempotencyKey}, 0))`);
  const [obligation] = await tx.execute<ObligationRow>(sql`
    select mortgage_id, amount, status from obligations where id = ${obligationId}::uuid for update`);
  if (!obligation) throw new ObligationNotFoundError(obligationId);

  const [previous] = await tx.execute<PostedRow>(sql`
    select id, obligation_id, amount, sequence from cash_journal_entries where idempotency_key = ${idempotencyKey}`);
  if (previous) {
    if (previous.obligation_id !== obligationId) throw new PaymentReferenceConflictError(reference, "for another obligation");
    if (BigInt(previous.amount) !== amount) throw new PaymentReferenceConflictError(reference, `with another amount (${previous.amount} cents)`);
    // The same answer as the first call: the totals as they stood right after that payment.
    const receivedTotal = await receivedFor(tx, obligationId, BigInt(previous.sequence));
    return receipt(request, previous.id, BigInt(obligation.amount), receivedTotal, true);
  }

  if (!PAYABLE.has(obligation.status)) throw new ObligationNotPayableError(obligationId, obligation.status);
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
    metadata: { reference, amount: amount.toString(), status: result.status, outstanding: result.outstanding.toString(), journalEntryId: posted.id, channel: request.channel },
  });
  return result;
}

/** CASH_RECEIVED of the obligation, all of it or up to a journal sequence. */
async function receivedFor(tx: Tx, obligationId: string, upToSequence?: bigint): Promise<bigint> {
  const [row] = await tx.execute<{ total: bigint }>(sql`
    select coalesce(sum(amount), 0)::int8 as total from cash_journal_entries
     where obligation_id = ${obligationId}::uuid and entry_type = 'CASH_RECEIVED'
       ${upToSequence === undefined ? sql`` : sql`and sequence <= ${upToSequence.toString()}::int8`}`);
  return BigInt(row!.total);
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
