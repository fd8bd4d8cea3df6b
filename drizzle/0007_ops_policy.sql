CREATE TABLE "ops_policy" (
	"singleton" boolean PRIMARY KEY DEFAULT true NOT NULL,
	"requeue_approvals" integer NOT NULL,
	"set_by" text NOT NULL,
	"set_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "ops_policy_singleton_check" CHECK ("ops_policy"."singleton"),
	CONSTRAINT "ops_policy_requeue_approvals_check" CHECK ("ops_policy"."requeue_approvals" in (1, 2))
);
