ALTER TABLE "dispersal_entries" DROP CONSTRAINT "dispersal_entries_obligation_lender_unique";--> statement-breakpoint
ALTER TABLE "servicing_fee_entries" DROP CONSTRAINT "servicing_fee_entries_obligation_unique";--> statement-breakpoint
ALTER TABLE "dispersal_entries" ADD COLUMN "allocation" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "servicing_fee_entries" ADD COLUMN "allocation" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "servicing_fee_entries" ADD COLUMN "status" text DEFAULT 'pending' NOT NULL;--> statement-breakpoint
CREATE INDEX "cash_journal_entries_reverses_idx" ON "cash_journal_entries" USING btree ("reverses_entry_id") WHERE "cash_journal_entries"."reverses_entry_id" is not null;--> statement-breakpoint
ALTER TABLE "dispersal_entries" ADD CONSTRAINT "dispersal_entries_obligation_lender_allocation_unique" UNIQUE("obligation_id","lender_id","allocation");--> statement-breakpoint
ALTER TABLE "servicing_fee_entries" ADD CONSTRAINT "servicing_fee_entries_obligation_allocation_unique" UNIQUE("obligation_id","allocation");--> statement-breakpoint
ALTER TABLE "dispersal_entries" ADD CONSTRAINT "dispersal_entries_status_check" CHECK (status in ('pending', 'paid', 'reversed'));--> statement-breakpoint
ALTER TABLE "servicing_fee_entries" ADD CONSTRAINT "servicing_fee_entries_status_check" CHECK (status in ('pending', 'paid', 'reversed'));--> statement-breakpoint
-- hand-written (keep when regenerating):
-- DESIGN.md §3: the journal is the truth. The amounts every reader uses, defined once, here:
-- net settled cash, what the journal allocates, and SUSPENSE, each as numeric (a sum over bigints
-- can pass the bigint range). db/obligationAmounts.ts is the only TypeScript that names them.
-- Cash received net of returns: CASH_RECEIVED − the REVERSALs of them (0 without any).
CREATE FUNCTION obligation_net_received(obligation uuid) RETURNS numeric
LANGUAGE sql STABLE AS $$
  SELECT coalesce((SELECT sum(c.amount) FROM cash_journal_entries c
                    WHERE c.obligation_id = obligation AND c.entry_type = 'CASH_RECEIVED'), 0)
       - coalesce((SELECT sum(r.amount) FROM cash_journal_entries c
                     JOIN cash_journal_entries r ON r.reverses_entry_id = c.id AND r.entry_type = 'REVERSAL'
                    WHERE c.obligation_id = obligation AND c.entry_type = 'CASH_RECEIVED'), 0)
$$;
--> statement-breakpoint
-- Net settled cash (§3 step 2): the net received; only when the obligation has no cash posting at
-- all (another system settled it without writing cash), its amount.
CREATE FUNCTION obligation_net_cash(obligation uuid) RETURNS numeric
LANGUAGE sql STABLE AS $$
  SELECT CASE
           WHEN EXISTS (SELECT 1 FROM cash_journal_entries c
                         WHERE c.obligation_id = obligation AND c.entry_type = 'CASH_RECEIVED')
             THEN obligation_net_received(obligation)
           ELSE (SELECT o.amount::numeric FROM obligations o WHERE o.id = obligation)
         END
$$;
--> statement-breakpoint
CREATE FUNCTION obligation_allocated(obligation uuid) RETURNS numeric
LANGUAGE sql STABLE AS $$
  SELECT coalesce((SELECT sum(p.amount) FROM cash_journal_entries p
                    WHERE p.obligation_id = obligation
                      AND p.entry_type IN ('LENDER_PAYABLE_CREATED', 'SERVICING_FEE_RECOGNIZED')), 0)
       - coalesce((SELECT sum(r.amount) FROM cash_journal_entries p
                     JOIN cash_journal_entries r ON r.reverses_entry_id = p.id AND r.entry_type = 'REVERSAL'
                    WHERE p.obligation_id = obligation
                      AND p.entry_type IN ('LENDER_PAYABLE_CREATED', 'SERVICING_FEE_RECOGNIZED')), 0)
$$;
--> statement-breakpoint
-- Every SUSPENSE account of the obligation, whichever mortgage it is filed under.
CREATE FUNCTION obligation_suspense(obligation uuid) RETURNS numeric
LANGUAGE sql STABLE AS $$
  SELECT coalesce(sum(a.cumulative_debits::numeric - a.cumulative_credits), 0)
    FROM cash_accounts a WHERE a.family = 'SUSPENSE' AND a.obligation_id = obligation
$$;
--> statement-breakpoint
-- `dispersed` means "the journal allocates what the net settled cash calls for": a posting that
-- changes the net cash (a CASH_RECEIVED or a REVERSAL of one, whoever writes it) makes the
-- obligation an orphan again, so the fast path and the scan disperse the difference.
CREATE FUNCTION cash_postings_mark_obligations() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE obligations o SET dispersed = false
   WHERE o.dispersed
     AND o.id IN (SELECT n.obligation_id FROM new_entries n
                   WHERE n.entry_type = 'CASH_RECEIVED' AND n.obligation_id IS NOT NULL
                  UNION
                  SELECT c.obligation_id FROM new_entries n JOIN cash_journal_entries c ON c.id = n.reverses_entry_id
                   WHERE n.entry_type = 'REVERSAL' AND c.entry_type = 'CASH_RECEIVED' AND c.obligation_id IS NOT NULL);
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER cash_journal_entries_mark_obligations
  AFTER INSERT ON cash_journal_entries REFERENCING NEW TABLE AS new_entries
  FOR EACH STATEMENT EXECUTE FUNCTION cash_postings_mark_obligations();
--> statement-breakpoint
-- The entries are a projection of the journal: any entry deleted (not only the last one) or edited
-- (amount, lender, obligation, allocation) makes its obligation an orphan, and the healer restores
-- the projection or escalates; it never posts over it. Marking an entry paid or reversed does not.
CREATE OR REPLACE FUNCTION dispersal_entries_mark_obligations() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    UPDATE obligations o SET dispersed = true
     WHERE o.id IN (SELECT DISTINCT obligation_id FROM new_entries) AND NOT o.dispersed;
  ELSE
    UPDATE obligations o SET dispersed = false
     WHERE o.id IN (SELECT DISTINCT obligation_id FROM old_entries) AND o.dispersed;
  END IF;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE FUNCTION projection_edit_marks_obligations() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE obligations SET dispersed = false WHERE id IN (OLD.obligation_id, NEW.obligation_id) AND dispersed;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER dispersal_entries_mark_obligations_edit
  AFTER UPDATE OF amount, lender_id, obligation_id, allocation ON dispersal_entries
  FOR EACH ROW WHEN (OLD.amount IS DISTINCT FROM NEW.amount OR OLD.lender_id IS DISTINCT FROM NEW.lender_id
                     OR OLD.obligation_id IS DISTINCT FROM NEW.obligation_id OR OLD.allocation IS DISTINCT FROM NEW.allocation)
  EXECUTE FUNCTION projection_edit_marks_obligations();
--> statement-breakpoint
CREATE TRIGGER servicing_fee_entries_mark_obligations_edit
  AFTER UPDATE OF amount, obligation_id, allocation ON servicing_fee_entries
  FOR EACH ROW WHEN (OLD.amount IS DISTINCT FROM NEW.amount OR OLD.obligation_id IS DISTINCT FROM NEW.obligation_id
                     OR OLD.allocation IS DISTINCT FROM NEW.allocation)
  EXECUTE FUNCTION projection_edit_marks_obligations();
--> statement-breakpoint
-- A fee entry deleted is the projection's too: the same function's DELETE branch.
CREATE TRIGGER servicing_fee_entries_mark_obligations_delete
  AFTER DELETE ON servicing_fee_entries REFERENCING OLD TABLE AS old_entries
  FOR EACH STATEMENT EXECUTE FUNCTION dispersal_entries_mark_obligations();
--> statement-breakpoint
-- The fast path also hears of a settled obligation that became an orphan again (late cash, a
-- returned payment, entries deleted), not only of one that became settled.
CREATE OR REPLACE FUNCTION obligations_notify_settled() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  settled_ids uuid[];
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT array_agg(s.id) INTO settled_ids
      FROM (SELECT n.id FROM new_obligations n WHERE n.status = 'settled' AND NOT n.dispersed LIMIT 101) s;
  ELSE
    SELECT array_agg(s.id) INTO settled_ids
      FROM (SELECT n.id FROM new_obligations n JOIN old_obligations o ON o.id = n.id
             WHERE n.status = 'settled' AND NOT n.dispersed AND (o.status <> 'settled' OR o.dispersed) LIMIT 101) s;
  END IF;
  IF settled_ids IS NULL THEN
    RETURN NULL;
  END IF;
  IF cardinality(settled_ids) > 100 THEN
    PERFORM pg_notify('dispersal_obligation_settled', 'burst');
  ELSE
    PERFORM pg_notify('dispersal_obligation_settled', settled.id::text) FROM unnest(settled_ids) AS settled(id);
  END IF;
  RETURN NULL;
END $$;
--> statement-breakpoint
-- An amount lowered (by another system) to what the borrower has already paid, or below it: the
-- obligation is settled by that cash, as the intake would have settled it, instead of refusing
-- every later payment as "exceeds the outstanding". The notify trigger then disperses it.
CREATE FUNCTION obligations_settle_when_paid() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status IN ('upcoming', 'due', 'overdue', 'partially_settled')
     AND obligation_net_received(NEW.id) >= NEW.amount THEN
    NEW.status := 'settled';
    NEW.settled_at := coalesce(NEW.settled_at, now());
  END IF;
  RETURN NEW;
END $$;
--> statement-breakpoint
CREATE TRIGGER obligations_settle_when_paid
  BEFORE UPDATE OF amount ON obligations
  FOR EACH ROW WHEN (NEW.amount < OLD.amount)
  EXECUTE FUNCTION obligations_settle_when_paid();
