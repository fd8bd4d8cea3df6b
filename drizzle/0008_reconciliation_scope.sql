CREATE TABLE "ledger_changes" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "ledger_changes_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"obligation_id" uuid,
	"account_id" uuid,
	"mortgage_id" uuid,
	"changed_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "reconciliation_runs" ADD COLUMN "scope" text DEFAULT 'full' NOT NULL;--> statement-breakpoint
ALTER TABLE "reconciliation_runs" ADD COLUMN "journal_mark" bigint;--> statement-breakpoint
ALTER TABLE "reconciliation_runs" ADD COLUMN "from_mark" bigint;--> statement-breakpoint
ALTER TABLE "reconciliation_runs" ADD COLUMN "obligations_checked" integer;--> statement-breakpoint
CREATE INDEX "reconciliation_runs_started_idx" ON "reconciliation_runs" USING btree ("started_at");--> statement-breakpoint
ALTER TABLE "reconciliation_runs" ADD CONSTRAINT "reconciliation_runs_scope_check" CHECK (scope in ('incremental', 'full'));--> statement-breakpoint
-- hand-written (keep when regenerating):
-- The change log of the incremental reconciliation (docs/ledger.md "Incremental and full runs").
-- Every change to the contract tables that reconciliation's checks read is recorded here by a
-- statement-level trigger with transition tables (a bulk edit is one insert per statement, one row
-- per obligation/account/mortgage it touched), in the writer's own transaction: the change and its
-- record commit together. A completed run deletes exactly the rows its snapshot saw, in the same
-- transaction as its result, so a row committed while a run is in progress (whatever its id or
-- journal sequence) is left for the next run, and a failed run deletes nothing.
-- Journal rows are recorded here too (their obligation and both accounts): identity values are
-- allocated before commit, so a posting whose sequence is below a run's mark may commit after the
-- run read it; the sequence alone cannot be trusted to be commit-ordered, the log can.
CREATE FUNCTION ledger_changes_from_journal() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO ledger_changes (obligation_id, account_id)
  SELECT DISTINCT n.obligation_id, NULL::uuid FROM new_rows n WHERE n.obligation_id IS NOT NULL
   UNION ALL
  SELECT NULL, a.account_id FROM (SELECT debit_account_id FROM new_rows UNION SELECT credit_account_id FROM new_rows) a(account_id);
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER cash_journal_entries_ledger_changes
  AFTER INSERT ON cash_journal_entries REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ledger_changes_from_journal();
--> statement-breakpoint
-- Rows keyed by obligation_id (dispersal and fee entries, healing rows): inserted, deleted, or
-- updated in any column (for an update, the obligation before and after, when a row really changed).
CREATE FUNCTION ledger_changes_by_obligation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO ledger_changes (obligation_id) SELECT DISTINCT obligation_id FROM new_rows;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO ledger_changes (obligation_id) SELECT DISTINCT obligation_id FROM old_rows;
  ELSE
    INSERT INTO ledger_changes (obligation_id)
    SELECT o.obligation_id FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE o IS DISTINCT FROM n
     UNION
    SELECT n.obligation_id FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE o IS DISTINCT FROM n;
  END IF;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER dispersal_entries_ledger_changes_insert AFTER INSERT ON dispersal_entries
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_changes_by_obligation();
--> statement-breakpoint
CREATE TRIGGER dispersal_entries_ledger_changes_update AFTER UPDATE ON dispersal_entries
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_changes_by_obligation();
--> statement-breakpoint
CREATE TRIGGER dispersal_entries_ledger_changes_delete AFTER DELETE ON dispersal_entries
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_changes_by_obligation();
--> statement-breakpoint
CREATE TRIGGER servicing_fee_entries_ledger_changes_insert AFTER INSERT ON servicing_fee_entries
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_changes_by_obligation();
--> statement-breakpoint
CREATE TRIGGER servicing_fee_entries_ledger_changes_update AFTER UPDATE ON servicing_fee_entries
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_changes_by_obligation();
--> statement-breakpoint
CREATE TRIGGER servicing_fee_entries_ledger_changes_delete AFTER DELETE ON servicing_fee_entries
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_changes_by_obligation();
--> statement-breakpoint
CREATE TRIGGER dispersal_healing_attempts_ledger_changes_insert AFTER INSERT ON dispersal_healing_attempts
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_changes_by_obligation();
--> statement-breakpoint
CREATE TRIGGER dispersal_healing_attempts_ledger_changes_update AFTER UPDATE ON dispersal_healing_attempts
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_changes_by_obligation();
--> statement-breakpoint
CREATE TRIGGER dispersal_healing_attempts_ledger_changes_delete AFTER DELETE ON dispersal_healing_attempts
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_changes_by_obligation();
--> statement-breakpoint
-- Obligations inserted, or edited in any column (amount, status, mortgage moved, dispersed, ...).
CREATE FUNCTION ledger_changes_from_obligations() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO ledger_changes (obligation_id) SELECT id FROM new_rows;
  ELSE
    INSERT INTO ledger_changes (obligation_id)
    SELECT n.id FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE o IS DISTINCT FROM n;
  END IF;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER obligations_ledger_changes_insert AFTER INSERT ON obligations
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_changes_from_obligations();
--> statement-breakpoint
CREATE TRIGGER obligations_ledger_changes_update AFTER UPDATE ON obligations
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_changes_from_obligations();
--> statement-breakpoint
-- A position changed: the mortgage is recorded, and a run checks every obligation of it.
CREATE FUNCTION ledger_changes_from_positions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO ledger_changes (mortgage_id) SELECT DISTINCT mortgage_id FROM new_rows;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO ledger_changes (mortgage_id) SELECT DISTINCT mortgage_id FROM old_rows;
  ELSE
    INSERT INTO ledger_changes (mortgage_id) SELECT mortgage_id FROM old_rows UNION SELECT mortgage_id FROM new_rows;
  END IF;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER mortgage_positions_ledger_changes_insert AFTER INSERT ON mortgage_positions
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_changes_from_positions();
--> statement-breakpoint
CREATE TRIGGER mortgage_positions_ledger_changes_update AFTER UPDATE ON mortgage_positions
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_changes_from_positions();
--> statement-breakpoint
CREATE TRIGGER mortgage_positions_ledger_changes_delete AFTER DELETE ON mortgage_positions
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_changes_from_positions();
