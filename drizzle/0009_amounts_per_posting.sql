-- hand-written (keep when regenerating):
-- The reversals of an obligation's postings, summed per posting through the index on
-- reverses_entry_id. The join form of 0006 (postings ⋈ reversals) was planned as a merge join that
-- read the whole reverses index on every call: 48 ms per obligation at 5 million journal rows (bench
-- §8, the history data set), so reconciliation, the story page and every SUSPENSE amount grew with
-- the journal. Same amounts: Σ postings − Σ their reversals = Σ (posting − its reversals).
CREATE OR REPLACE FUNCTION obligation_net_received(obligation uuid) RETURNS numeric
LANGUAGE sql STABLE AS $$
  SELECT coalesce(sum(c.amount::numeric - coalesce((SELECT sum(r.amount) FROM cash_journal_entries r
                                                    WHERE r.reverses_entry_id = c.id AND r.entry_type = 'REVERSAL'), 0)), 0)
    FROM cash_journal_entries c
   WHERE c.obligation_id = obligation AND c.entry_type = 'CASH_RECEIVED'
$$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION obligation_allocated(obligation uuid) RETURNS numeric
LANGUAGE sql STABLE AS $$
  SELECT coalesce(sum(p.amount::numeric - coalesce((SELECT sum(r.amount) FROM cash_journal_entries r
                                                    WHERE r.reverses_entry_id = p.id AND r.entry_type = 'REVERSAL'), 0)), 0)
    FROM cash_journal_entries p
   WHERE p.obligation_id = obligation
     AND p.entry_type IN ('LENDER_PAYABLE_CREATED', 'SERVICING_FEE_RECOGNIZED')
$$;
