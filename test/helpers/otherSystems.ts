// What other systems do to our tables behind our back, in plain SQL (no code of ours): post cash.
import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import type { Database } from "../../src/db/client.js";

/**
 * A CASH_RECEIVED posting written by another system: the journal row and both accounts' totals,
 * in one statement, as a consistent ledger writer would. Returns the journal entry id.
 */
export async function postCashReceivedBySql(database: Database, obligationId: string, amount: bigint): Promise<string> {
  const [row] = await database.db.execute<{ id: string }>(sql`
    with o as (select id, mortgage_id from obligations where id = ${obligationId}::uuid),
    trust as (
      insert into cash_accounts as a (family, mortgage_id, cumulative_debits, cumulative_credits)
      select 'TRUST_CASH', o.mortgage_id, ${amount.toString()}::bigint, 0 from o
      on conflict on constraint cash_accounts_dimensions_unique
      do update set cumulative_debits = a.cumulative_debits + excluded.cumulative_debits
      returning a.id),
    receivable as (
      insert into cash_accounts as a (family, obligation_id, cumulative_debits, cumulative_credits)
      select 'BORROWER_RECEIVABLE', o.id, 0, ${amount.toString()}::bigint from o
      on conflict on constraint cash_accounts_dimensions_unique
      do update set cumulative_credits = a.cumulative_credits + excluded.cumulative_credits
      returning a.id)
    insert into cash_journal_entries (entry_type, effective_date, amount, debit_account_id, credit_account_id, idempotency_key,
                                      mortgage_id, obligation_id, reason, actor, channel)
    select 'CASH_RECEIVED', current_date, ${amount.toString()}::bigint, trust.id, receivable.id,
           ${`cash-ledger:cash-received:other-system-${randomUUID()}`}, o.mortgage_id, o.id, 'late payment', 'payments-core', 'sql'
      from o, trust, receivable
    returning id`);
  if (!row) throw new Error(`no obligation ${obligationId}`);
  return row.id;
}

/** A returned payment as another system records it: the REVERSAL of a CASH_RECEIVED, with both accounts' totals. */
export async function postCashReversalBySql(database: Database, cashEntryId: string): Promise<string> {
  const [row] = await database.db.execute<{ id: string }>(sql`
    with c as (select * from cash_journal_entries where id = ${cashEntryId}::uuid and entry_type = 'CASH_RECEIVED'),
    receivable as (update cash_accounts a set cumulative_debits = a.cumulative_debits + c.amount from c where a.id = c.credit_account_id returning a.id),
    trust as (update cash_accounts a set cumulative_credits = a.cumulative_credits + c.amount from c where a.id = c.debit_account_id returning a.id)
    insert into cash_journal_entries (entry_type, effective_date, amount, debit_account_id, credit_account_id, idempotency_key,
                                      mortgage_id, obligation_id, reverses_entry_id, reason, actor, channel)
    select 'REVERSAL', current_date, c.amount, c.credit_account_id, c.debit_account_id, 'payments-core:returned:' || c.id,
           c.mortgage_id, c.obligation_id, c.id, 'cheque bounced', 'payments-core', 'sql'
      from c, receivable, trust
    returning id`);
  if (!row) throw new Error(`no CASH_RECEIVED ${cashEntryId}`);
  return row.id;
}
