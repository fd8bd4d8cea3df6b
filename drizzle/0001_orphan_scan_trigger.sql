-- Keeps obligations.dispersed true exactly when the obligation has dispersal entries,
-- whoever writes them. The healing scan's partial index (status = 'settled' and not
-- dispersed) then holds only orphans, so the scan's cost follows the orphans, not the
-- history of settled obligations. Statement-level with transition tables: one UPDATE per INSERT
-- statement, however many entries it writes.
CREATE FUNCTION dispersal_entries_mark_obligations() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    UPDATE obligations o SET dispersed = true
     WHERE o.id IN (SELECT DISTINCT obligation_id FROM new_entries) AND NOT o.dispersed;
  ELSE
    UPDATE obligations o SET dispersed = false
     WHERE o.id IN (SELECT DISTINCT obligation_id FROM old_entries)
       AND o.dispersed
       AND NOT EXISTS (SELECT 1 FROM dispersal_entries d WHERE d.obligation_id = o.id);
  END IF;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER dispersal_entries_mark_obligations_insert
  AFTER INSERT ON dispersal_entries REFERENCING NEW TABLE AS new_entries
  FOR EACH STATEMENT EXECUTE FUNCTION dispersal_entries_mark_obligations();
--> statement-breakpoint
CREATE TRIGGER dispersal_entries_mark_obligations_delete
  AFTER DELETE ON dispersal_entries REFERENCING OLD TABLE AS old_entries
  FOR EACH STATEMENT EXECUTE FUNCTION dispersal_entries_mark_obligations();
--> statement-breakpoint
-- The journal and the audit log are append-only (DESIGN.md §2): refuse UPDATE and DELETE outright.
CREATE FUNCTION refuse_append_only_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
--> statement-breakpoint
CREATE TRIGGER cash_journal_entries_append_only
  BEFORE UPDATE OR DELETE ON cash_journal_entries
  FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change();
--> statement-breakpoint
CREATE TRIGGER audit_log_append_only
  BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION refuse_append_only_change();
