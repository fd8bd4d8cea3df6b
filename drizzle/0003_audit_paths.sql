CREATE TABLE "requeue_requests" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"obligation_id" uuid NOT NULL,
	"requested_by" text NOT NULL,
	"channel" text NOT NULL,
	"reason" text NOT NULL,
	"status" text NOT NULL,
	"approved_by" text,
	"withdrawn_by" text,
	"decided_at" timestamp with time zone,
	"round" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "requeue_requests_status_check" CHECK (status in ('pending', 'carried_out', 'withdrawn')),
	CONSTRAINT "requeue_requests_reason_check" CHECK (length(btrim("requeue_requests"."reason")) > 0)
);
--> statement-breakpoint
ALTER TABLE "dispersal_healing_attempts" ADD COLUMN "requeue_request_id" uuid;--> statement-breakpoint
ALTER TABLE "requeue_requests" ADD CONSTRAINT "requeue_requests_obligation_id_obligations_id_fk" FOREIGN KEY ("obligation_id") REFERENCES "public"."obligations"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "requeue_requests_one_pending_idx" ON "requeue_requests" USING btree ("obligation_id") WHERE "requeue_requests"."status" = 'pending';--> statement-breakpoint
CREATE INDEX "requeue_requests_obligation_idx" ON "requeue_requests" USING btree ("obligation_id","created_at");