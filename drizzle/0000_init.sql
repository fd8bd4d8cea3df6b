CREATE TABLE "audit_log" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"action" text NOT NULL,
	"actor" text NOT NULL,
	"resource_type" text NOT NULL,
	"resource_id" text,
	"severity" text DEFAULT 'info' NOT NULL,
	"metadata" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "audit_log_severity_check" CHECK (severity in ('info', 'warning', 'error'))
);
--> statement-breakpoint
CREATE TABLE "cash_accounts" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"family" text NOT NULL,
	"subaccount" text,
	"mortgage_id" uuid,
	"obligation_id" uuid,
	"lender_id" uuid,
	"cumulative_debits" bigint DEFAULT 0 NOT NULL,
	"cumulative_credits" bigint DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "cash_accounts_dimensions_unique" UNIQUE NULLS NOT DISTINCT("family","subaccount","mortgage_id","obligation_id","lender_id"),
	CONSTRAINT "cash_accounts_family_check" CHECK (family in ('BORROWER_RECEIVABLE', 'TRUST_CASH', 'CONTROL', 'LENDER_PAYABLE', 'SERVICING_REVENUE', 'SUSPENSE')),
	CONSTRAINT "cash_accounts_totals_check" CHECK ("cash_accounts"."cumulative_debits" >= 0 and "cash_accounts"."cumulative_credits" >= 0)
);
--> statement-breakpoint
CREATE TABLE "cash_journal_entries" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"sequence" bigint GENERATED ALWAYS AS IDENTITY (sequence name "cash_journal_entries_sequence_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"entry_type" text NOT NULL,
	"effective_date" date NOT NULL,
	"amount" bigint NOT NULL,
	"debit_account_id" uuid NOT NULL,
	"credit_account_id" uuid NOT NULL,
	"idempotency_key" text NOT NULL,
	"mortgage_id" uuid,
	"obligation_id" uuid,
	"lender_id" uuid,
	"reverses_entry_id" uuid,
	"reason" text,
	"metadata" jsonb,
	"actor" text,
	"channel" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "cash_journal_entries_amount_check" CHECK ("cash_journal_entries"."amount" > 0),
	CONSTRAINT "cash_journal_entries_distinct_accounts_check" CHECK ("cash_journal_entries"."debit_account_id" <> "cash_journal_entries"."credit_account_id"),
	CONSTRAINT "cash_journal_entries_entry_type_check" CHECK (entry_type in ('OBLIGATION_ACCRUED', 'CASH_RECEIVED', 'LENDER_PAYABLE_CREATED', 'SERVICING_FEE_RECOGNIZED', 'SUSPENSE_ESCALATED', 'REVERSAL'))
);
--> statement-breakpoint
CREATE TABLE "dispersal_entries" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"obligation_id" uuid NOT NULL,
	"mortgage_id" uuid NOT NULL,
	"lender_id" uuid NOT NULL,
	"amount" bigint NOT NULL,
	"ownership_units" bigint NOT NULL,
	"total_units" bigint NOT NULL,
	"dispersal_date" date NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "dispersal_entries_obligation_lender_unique" UNIQUE("obligation_id","lender_id"),
	CONSTRAINT "dispersal_entries_amount_check" CHECK ("dispersal_entries"."amount" > 0)
);
--> statement-breakpoint
CREATE TABLE "dispersal_healing_attempts" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"obligation_id" uuid NOT NULL,
	"attempt_count" integer DEFAULT 0 NOT NULL,
	"status" text NOT NULL,
	"last_error" text,
	"last_attempt_at" timestamp with time zone,
	"escalated_at" timestamp with time zone,
	"resolved_at" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"requeue_count" integer DEFAULT 0 NOT NULL,
	"last_job_id" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "dispersal_healing_attempts_obligation_unique" UNIQUE("obligation_id"),
	CONSTRAINT "dispersal_healing_attempts_status_check" CHECK (status in ('retrying', 'escalated', 'requeued', 'resolved')),
	CONSTRAINT "dispersal_healing_attempts_attempt_count_check" CHECK ("dispersal_healing_attempts"."attempt_count" >= 0)
);
--> statement-breakpoint
CREATE TABLE "lenders" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "mortgage_positions" (
	"mortgage_id" uuid NOT NULL,
	"lender_id" uuid NOT NULL,
	"units" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "mortgage_positions_pkey" PRIMARY KEY("mortgage_id","lender_id"),
	CONSTRAINT "mortgage_positions_units_check" CHECK ("mortgage_positions"."units" >= 0)
);
--> statement-breakpoint
CREATE TABLE "mortgages" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"reference" text NOT NULL,
	"principal" bigint NOT NULL,
	"servicing_fee_bps" integer NOT NULL,
	"payment_frequency" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "mortgages_reference_unique" UNIQUE("reference"),
	CONSTRAINT "mortgages_principal_check" CHECK ("mortgages"."principal" >= 0),
	CONSTRAINT "mortgages_servicing_fee_bps_check" CHECK ("mortgages"."servicing_fee_bps" between 0 and 10000),
	CONSTRAINT "mortgages_payment_frequency_check" CHECK (payment_frequency in ('monthly', 'bi_weekly', 'accelerated_bi_weekly', 'weekly'))
);
--> statement-breakpoint
CREATE TABLE "obligations" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"mortgage_id" uuid NOT NULL,
	"type" text NOT NULL,
	"amount" bigint NOT NULL,
	"status" text NOT NULL,
	"due_date" date NOT NULL,
	"settled_at" timestamp with time zone,
	"dispersed" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "obligations_amount_check" CHECK ("obligations"."amount" > 0),
	CONSTRAINT "obligations_type_check" CHECK (type in ('regular_interest', 'principal_repayment', 'late_fee', 'arrears_cure')),
	CONSTRAINT "obligations_status_check" CHECK (status in ('upcoming', 'due', 'overdue', 'partially_settled', 'settled', 'waived'))
);
--> statement-breakpoint
CREATE TABLE "reconciliation_runs" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	"status" text NOT NULL,
	"defect_count" integer DEFAULT 0 NOT NULL,
	"findings" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "servicing_fee_entries" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"obligation_id" uuid NOT NULL,
	"mortgage_id" uuid NOT NULL,
	"amount" bigint NOT NULL,
	"annual_rate_bps" integer NOT NULL,
	"principal_basis" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "servicing_fee_entries_obligation_unique" UNIQUE("obligation_id"),
	CONSTRAINT "servicing_fee_entries_amount_check" CHECK ("servicing_fee_entries"."amount" > 0)
);
--> statement-breakpoint
ALTER TABLE "cash_accounts" ADD CONSTRAINT "cash_accounts_mortgage_id_mortgages_id_fk" FOREIGN KEY ("mortgage_id") REFERENCES "public"."mortgages"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "cash_accounts" ADD CONSTRAINT "cash_accounts_obligation_id_obligations_id_fk" FOREIGN KEY ("obligation_id") REFERENCES "public"."obligations"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "cash_accounts" ADD CONSTRAINT "cash_accounts_lender_id_lenders_id_fk" FOREIGN KEY ("lender_id") REFERENCES "public"."lenders"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "cash_journal_entries" ADD CONSTRAINT "cash_journal_entries_debit_account_id_cash_accounts_id_fk" FOREIGN KEY ("debit_account_id") REFERENCES "public"."cash_accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "cash_journal_entries" ADD CONSTRAINT "cash_journal_entries_credit_account_id_cash_accounts_id_fk" FOREIGN KEY ("credit_account_id") REFERENCES "public"."cash_accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "cash_journal_entries" ADD CONSTRAINT "cash_journal_entries_mortgage_id_mortgages_id_fk" FOREIGN KEY ("mortgage_id") REFERENCES "public"."mortgages"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "cash_journal_entries" ADD CONSTRAINT "cash_journal_entries_obligation_id_obligations_id_fk" FOREIGN KEY ("obligation_id") REFERENCES "public"."obligations"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "cash_journal_entries" ADD CONSTRAINT "cash_journal_entries_lender_id_lenders_id_fk" FOREIGN KEY ("lender_id") REFERENCES "public"."lenders"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "dispersal_entries" ADD CONSTRAINT "dispersal_entries_obligation_id_obligations_id_fk" FOREIGN KEY ("obligation_id") REFERENCES "public"."obligations"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "dispersal_entries" ADD CONSTRAINT "dispersal_entries_mortgage_id_mortgages_id_fk" FOREIGN KEY ("mortgage_id") REFERENCES "public"."mortgages"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "dispersal_entries" ADD CONSTRAINT "dispersal_entries_lender_id_lenders_id_fk" FOREIGN KEY ("lender_id") REFERENCES "public"."lenders"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "dispersal_healing_attempts" ADD CONSTRAINT "dispersal_healing_attempts_obligation_id_obligations_id_fk" FOREIGN KEY ("obligation_id") REFERENCES "public"."obligations"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "mortgage_positions" ADD CONSTRAINT "mortgage_positions_mortgage_id_mortgages_id_fk" FOREIGN KEY ("mortgage_id") REFERENCES "public"."mortgages"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "mortgage_positions" ADD CONSTRAINT "mortgage_positions_lender_id_lenders_id_fk" FOREIGN KEY ("lender_id") REFERENCES "public"."lenders"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "obligations" ADD CONSTRAINT "obligations_mortgage_id_mortgages_id_fk" FOREIGN KEY ("mortgage_id") REFERENCES "public"."mortgages"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "servicing_fee_entries" ADD CONSTRAINT "servicing_fee_entries_obligation_id_obligations_id_fk" FOREIGN KEY ("obligation_id") REFERENCES "public"."obligations"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "servicing_fee_entries" ADD CONSTRAINT "servicing_fee_entries_mortgage_id_mortgages_id_fk" FOREIGN KEY ("mortgage_id") REFERENCES "public"."mortgages"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "audit_log_resource_idx" ON "audit_log" USING btree ("resource_type","resource_id");--> statement-breakpoint
CREATE INDEX "cash_accounts_obligation_idx" ON "cash_accounts" USING btree ("obligation_id") WHERE "cash_accounts"."obligation_id" is not null;--> statement-breakpoint
CREATE UNIQUE INDEX "cash_journal_entries_idempotency_key_unique" ON "cash_journal_entries" USING btree ("idempotency_key");--> statement-breakpoint
CREATE UNIQUE INDEX "cash_journal_entries_sequence_unique" ON "cash_journal_entries" USING btree ("sequence");--> statement-breakpoint
CREATE INDEX "cash_journal_entries_obligation_type_idx" ON "cash_journal_entries" USING btree ("obligation_id","entry_type");--> statement-breakpoint
CREATE INDEX "cash_journal_entries_debit_account_idx" ON "cash_journal_entries" USING btree ("debit_account_id");--> statement-breakpoint
CREATE INDEX "cash_journal_entries_credit_account_idx" ON "cash_journal_entries" USING btree ("credit_account_id");--> statement-breakpoint
CREATE INDEX "dispersal_entries_mortgage_lender_idx" ON "dispersal_entries" USING btree ("mortgage_id","lender_id");--> statement-breakpoint
CREATE INDEX "dispersal_healing_attempts_open_idx" ON "dispersal_healing_attempts" USING btree ("status","escalated_at") WHERE "dispersal_healing_attempts"."status" in ('escalated', 'requeued', 'retrying');--> statement-breakpoint
CREATE INDEX "obligations_healing_scan_idx" ON "obligations" USING btree ("id") WHERE "obligations"."status" = 'settled' and not "obligations"."dispersed";--> statement-breakpoint
CREATE INDEX "obligations_mortgage_id_idx" ON "obligations" USING btree ("mortgage_id");