CREATE INDEX "cash_accounts_suspense_idx" ON "cash_accounts" USING btree ("obligation_id") WHERE "cash_accounts"."family" = 'SUSPENSE';--> statement-breakpoint
CREATE INDEX "mortgage_positions_lender_idx" ON "mortgage_positions" USING btree ("lender_id");--> statement-breakpoint
CREATE INDEX "obligations_orphan_age_idx" ON "obligations" USING btree (coalesce("settled_at", "created_at")) WHERE "obligations"."status" = 'settled' and not "obligations"."dispersed" and "obligations"."created_at" is not null;--> statement-breakpoint
-- hand-written (keep when regenerating):
-- Search on /ops and GET /api/search matches any part of a lender's name or a mortgage reference,
-- in any case (ILIKE '%…%'): trigram indexes, or every search reads both tables whole.
-- pg_trgm ships with Postgres (contrib) and is a trusted extension: the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "lenders_name_trgm_idx" ON "lenders" USING gin ("name" gin_trgm_ops);--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "mortgages_reference_trgm_idx" ON "mortgages" USING gin ("reference" gin_trgm_ops);
