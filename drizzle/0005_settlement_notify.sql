-- Custom SQL migration file, put your code below! --
--> statement-breakpoint
-- hand-written (keep when regenerating):
-- The fast path (DESIGN.md §4): at commit, tell the listening processes that obligations became
-- settled, whoever settled them (another system's SQL, the payments intake, an insert of a settled
-- row). Channel dispersal_obligation_settled, payload the obligation id. Statement-level with
-- transition tables, so that a statement settling more than 100 obligations sends ONE 'burst'
-- notification (listeners then page through the orphans with a scan) instead of one per row: a
-- batch settlement of 50,000 must not flood the listeners' memory or Redis. The LIMIT keeps the
-- trigger's own cost small however large the statement.
CREATE FUNCTION obligations_notify_settled() RETURNS trigger
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
             WHERE n.status = 'settled' AND o.status <> 'settled' AND NOT n.dispersed LIMIT 101) s;
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
CREATE TRIGGER obligations_notify_settled_update
  AFTER UPDATE ON obligations REFERENCING OLD TABLE AS old_obligations NEW TABLE AS new_obligations
  FOR EACH STATEMENT EXECUTE FUNCTION obligations_notify_settled();
--> statement-breakpoint
CREATE TRIGGER obligations_notify_settled_insert
  AFTER INSERT ON obligations REFERENCING NEW TABLE AS new_obligations
  FOR EACH STATEMENT EXECUTE FUNCTION obligations_notify_settled();
