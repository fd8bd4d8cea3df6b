// The Drizzle tables of DESIGN.md §2 (a contract: operators' SQL relies on these names).
import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  check,
  date,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
  uniqueIndex,
  uuid,
} from "drizzle-orm/pg-core";
import type { AccountFamily, EntryType } from "../domain/ledgerRules.js";
import type { ObligationType, PaymentFrequency } from "../domain/servicingFee.js";
import type { EntryStatus } from "../domain/allocation.js";

export type ObligationStatus = "upcoming" | "due" | "overdue" | "partially_settled" | "settled" | "waived";
export type HealingStatus = "retrying" | "escalated" | "requeued" | "resolved";
/** A dispersal or fee entry: `paid` once a payout system paid it, `reversed` once its posting was reversed. */
export type { EntryStatus };
export type AuditSeverity = "info" | "warning" | "error";

const id = () => uuid("id").primaryKey().defaultRandom();
const createdAt = () => timestamp("created_at", { withTimezone: true }).notNull().defaultNow();
const cents = (name: string) => bigint(name, { mode: "bigint" });
const inList = (column: string, values: readonly string[]) =>
  sql.raw(`${column} in (${values.map((v) => `'${v}'`).join(", ")})`);

export const lenders = pgTable("lenders", {
  id: id(),
  name: text("name").notNull(),
  createdAt: createdAt(),
});

export const mortgages = pgTable(
  "mortgages",
  {
    id: id(),
    reference: text("reference").notNull().unique("mortgages_reference_unique"),
    principal: cents("principal").notNull(),
    servicingFeeBps: integer("servicing_fee_bps").notNull(),
    paymentFrequency: text("payment_frequency").$type<PaymentFrequency>().notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    check("mortgages_principal_check", sql`${t.principal} >= 0`),
    check("mortgages_servicing_fee_bps_check", sql`${t.servicingFeeBps} between 0 and 10000`),
    check(
      "mortgages_payment_frequency_check",
      inList("payment_frequency", ["monthly", "bi_weekly", "accelerated_bi_weekly", "weekly"]),
    ),
  ],
);

export const mortgagePositions = pgTable(
  "mortgage_positions",
  {
    mortgageId: uuid("mortgage_id").notNull().references(() => mortgages.id),
    lenderId: uuid("lender_id").notNull().references(() => lenders.id),
    units: bigint("units", { mode: "bigint" }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    primaryKey({ name: "mortgage_positions_pkey", columns: [t.mortgageId, t.lenderId] }),
    check("mortgage_positions_units_check", sql`${t.units} >= 0`),
    // Search by lender name: from the lender to the mortgages it holds positions in.
    index("mortgage_positions_lender_idx").on(t.lenderId),
  ],
);

export const obligations = pgTable(
  "obligations",
  {
    id: id(),
    mortgageId: uuid("mortgage_id").notNull().references(() => mortgages.id),
    type: text("type").$type<ObligationType>().notNull(),
    amount: cents("amount").notNull(),
    status: text("status").$type<ObligationStatus>().notNull(),
    dueDate: date("due_date").notNull(),
    settledAt: timestamp("settled_at", { withTimezone: true }),
    /**
     * True once the obligation's dispersal is written: set by a trigger on dispersal_entries
     * (drizzle/0001) whoever writes them, and by disperseObligation when the fee takes the whole
     * amount (no entry can be written then). The healing scan's partial index holds only settled
     * obligations not dispersed, so the scan's cost follows the orphans, not the whole history.
     */
    dispersed: boolean("dispersed").notNull().default(false),
    createdAt: createdAt(),
  },
  (t) => [
    check("obligations_amount_check", sql`${t.amount} > 0`),
    check("obligations_type_check", inList("type", ["regular_interest", "principal_repayment", "late_fee", "arrears_cure"])),
    check(
      "obligations_status_check",
      inList("status", ["upcoming", "due", "overdue", "partially_settled", "settled", "waived"]),
    ),
    index("obligations_healing_scan_idx")
      .on(t.id)
      .where(sql`${t.status} = 'settled' and not ${t.dispersed}`),
    index("obligations_mortgage_id_idx").on(t.mortgageId),
    // /metrics' oldest orphan: the first entry in order of settlement, whatever the number of
    // orphans. "created_at is not null" (always true) keeps it out of the scan's plans: Postgres uses
    // a partial index only where the query's own conditions imply its predicate, and the scan must
    // walk obligations_healing_scan_idx in id order.
    index("obligations_orphan_age_idx")
      .on(sql`coalesce(${t.settledAt}, ${t.createdAt})`)
      .where(sql`${t.status} = 'settled' and not ${t.dispersed} and ${t.createdAt} is not null`),
  ],
);

export const dispersalEntries = pgTable(
  "dispersal_entries",
  {
    id: id(),
    obligationId: uuid("obligation_id").notNull().references(() => obligations.id),
    mortgageId: uuid("mortgage_id").notNull().references(() => mortgages.id),
    lenderId: uuid("lender_id").notNull().references(() => lenders.id),
    amount: cents("amount").notNull(),
    ownershipUnits: bigint("ownership_units", { mode: "bigint" }).notNull(),
    totalUnits: bigint("total_units", { mode: "bigint" }).notNull(),
    dispersalDate: date("dispersal_date").notNull(),
    /** Which dispersal of the obligation wrote it (DESIGN.md §3: 1, 2, … as cash arrives or returns). */
    allocation: integer("allocation").notNull().default(1),
    status: text("status").$type<EntryStatus>().notNull().default("pending"),
    createdAt: createdAt(),
  },
  (t) => [
    unique("dispersal_entries_obligation_lender_allocation_unique").on(t.obligationId, t.lenderId, t.allocation),
    check("dispersal_entries_amount_check", sql`${t.amount} > 0`),
    check("dispersal_entries_status_check", inList("status", ["pending", "paid", "reversed"])),
    index("dispersal_entries_mortgage_lender_idx").on(t.mortgageId, t.lenderId),
  ],
);

export const servicingFeeEntries = pgTable(
  "servicing_fee_entries",
  {
    id: id(),
    obligationId: uuid("obligation_id").notNull().references(() => obligations.id),
    allocation: integer("allocation").notNull().default(1),
    mortgageId: uuid("mortgage_id").notNull().references(() => mortgages.id),
    amount: cents("amount").notNull(),
    annualRateBps: integer("annual_rate_bps").notNull(),
    principalBasis: cents("principal_basis").notNull(),
    status: text("status").$type<EntryStatus>().notNull().default("pending"),
    createdAt: createdAt(),
  },
  (t) => [
    unique("servicing_fee_entries_obligation_allocation_unique").on(t.obligationId, t.allocation),
    check("servicing_fee_entries_amount_check", sql`${t.amount} > 0`),
    check("servicing_fee_entries_status_check", inList("status", ["pending", "paid", "reversed"])),
  ],
);

export const cashAccounts = pgTable(
  "cash_accounts",
  {
    id: id(),
    family: text("family").$type<AccountFamily>().notNull(),
    subaccount: text("subaccount").$type<"ACCRUAL" | "ALLOCATION">(),
    mortgageId: uuid("mortgage_id").references(() => mortgages.id),
    obligationId: uuid("obligation_id").references(() => obligations.id),
    lenderId: uuid("lender_id").references(() => lenders.id),
    cumulativeDebits: cents("cumulative_debits").notNull().default(sql`0`),
    cumulativeCredits: cents("cumulative_credits").notNull().default(sql`0`),
    createdAt: createdAt(),
  },
  (t) => [
    unique("cash_accounts_dimensions_unique")
      .on(t.family, t.subaccount, t.mortgageId, t.obligationId, t.lenderId)
      .nullsNotDistinct(),
    check(
      "cash_accounts_family_check",
      inList("family", ["BORROWER_RECEIVABLE", "TRUST_CASH", "CONTROL", "LENDER_PAYABLE", "SERVICING_REVENUE", "SUSPENSE"]),
    ),
    check("cash_accounts_totals_check", sql`${t.cumulativeDebits} >= 0 and ${t.cumulativeCredits} >= 0`),
    index("cash_accounts_obligation_idx").on(t.obligationId).where(sql`${t.obligationId} is not null`),
    // The total in SUSPENSE (/ops header, /metrics) reads only these few accounts, not every receivable.
    index("cash_accounts_suspense_idx").on(t.obligationId).where(sql`${t.family} = 'SUSPENSE'`),
  ],
);

export const cashJournalEntries = pgTable(
  "cash_journal_entries",
  {
    id: id(),
    sequence: bigint("sequence", { mode: "bigint" }).notNull().generatedAlwaysAsIdentity(),
    entryType: text("entry_type").$type<EntryType>().notNull(),
    effectiveDate: date("effective_date").notNull(),
    amount: cents("amount").notNull(),
    debitAccountId: uuid("debit_account_id").notNull().references(() => cashAccounts.id),
    creditAccountId: uuid("credit_account_id").notNull().references(() => cashAccounts.id),
    idempotencyKey: text("idempotency_key").notNull(),
    mortgageId: uuid("mortgage_id").references(() => mortgages.id),
    obligationId: uuid("obligation_id").references(() => obligations.id),
    lenderId: uuid("lender_id").references(() => lenders.id),
    reversesEntryId: uuid("reverses_entry_id"),
    reason: text("reason"),
    metadata: jsonb("metadata").$type<Record<string, unknown>>(),
    actor: text("actor"),
    channel: text("channel"),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex("cash_journal_entries_idempotency_key_unique").on(t.idempotencyKey),
    uniqueIndex("cash_journal_entries_sequence_unique").on(t.sequence),
    check("cash_journal_entries_amount_check", sql`${t.amount} > 0`),
    check("cash_journal_entries_distinct_accounts_check", sql`${t.debitAccountId} <> ${t.creditAccountId}`),
    check(
      "cash_journal_entries_entry_type_check",
      inList("entry_type", [
        "OBLIGATION_ACCRUED",
        "CASH_RECEIVED",
        "LENDER_PAYABLE_CREATED",
        "SERVICING_FEE_RECOGNIZED",
        "SUSPENSE_ESCALATED",
        "REVERSAL",
      ]),
    ),
    index("cash_journal_entries_obligation_type_idx").on(t.obligationId, t.entryType),
    index("cash_journal_entries_debit_account_idx").on(t.debitAccountId),
    index("cash_journal_entries_credit_account_idx").on(t.creditAccountId),
    // Net settled cash and allocated (obligation_net_cash, obligation_allocated) look up each
    // posting's reversal; only REVERSAL rows carry it.
    index("cash_journal_entries_reverses_idx").on(t.reversesEntryId).where(sql`${t.reversesEntryId} is not null`),
  ],
);

export const dispersalHealingAttempts = pgTable(
  "dispersal_healing_attempts",
  {
    id: id(),
    obligationId: uuid("obligation_id").notNull().references(() => obligations.id).unique("dispersal_healing_attempts_obligation_unique"),
    attemptCount: integer("attempt_count").notNull().default(0),
    status: text("status").$type<HealingStatus>().notNull(),
    lastError: text("last_error"),
    lastAttemptAt: timestamp("last_attempt_at", { withTimezone: true }),
    escalatedAt: timestamp("escalated_at", { withTimezone: true }),
    resolvedAt: timestamp("resolved_at", { withTimezone: true }),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
    /** How many times an operator has requeued this obligation (each requeue starts a new round). */
    requeueCount: integer("requeue_count").notNull().default(0),
    lastJobId: text("last_job_id"),
    /** The requeue request that started the current round; null for rounds the service started itself. */
    requeueRequestId: uuid("requeue_request_id"),
    createdAt: createdAt(),
  },
  (t) => [
    check("dispersal_healing_attempts_status_check", inList("status", ["retrying", "escalated", "requeued", "resolved"])),
    check("dispersal_healing_attempts_attempt_count_check", sql`${t.attemptCount} >= 0`),
    index("dispersal_healing_attempts_open_idx")
      .on(t.status, t.escalatedAt)
      .where(sql`${t.status} in ('escalated', 'requeued', 'retrying')`),
  ],
);

export type RequeueRequestStatus = "pending" | "carried_out" | "withdrawn";

/**
 * Who asked for a new round of an escalation, why, and who approved it (four-eyes policy at 2). The
 * round it starts takes its actor from here, never from job data; at most one pending per obligation.
 */
export const requeueRequests = pgTable(
  "requeue_requests",
  {
    id: id(),
    obligationId: uuid("obligation_id").notNull().references(() => obligations.id),
    requestedBy: text("requested_by").notNull(),
    channel: text("channel").notNull(),
    reason: text("reason").notNull(),
    status: text("status").$type<RequeueRequestStatus>().notNull(),
    approvedBy: text("approved_by"),
    withdrawnBy: text("withdrawn_by"),
    decidedAt: timestamp("decided_at", { withTimezone: true }),
    /** The round this request started (requeue_count + 1 when carried out). */
    round: integer("round"),
    createdAt: createdAt(),
  },
  (t) => [
    check("requeue_requests_status_check", inList("status", ["pending", "carried_out", "withdrawn"])),
    check("requeue_requests_reason_check", sql`length(btrim(${t.reason})) > 0`),
    uniqueIndex("requeue_requests_one_pending_idx").on(t.obligationId).where(sql`${t.status} = 'pending'`),
    index("requeue_requests_obligation_idx").on(t.obligationId, t.createdAt),
  ],
);

/**
 * The four-eyes policy (DESIGN.md §4): one row, read by every requeue path in the requeue's own
 * transaction, so no process's environment can lower it. Set by `dispersal policy set` (audited
 * `ops.policy_set`); REQUEUE_APPROVALS only writes the first row of a database that has none.
 */
export const opsPolicy = pgTable(
  "ops_policy",
  {
    /** Always true: the primary key that keeps the table to one row. */
    singleton: boolean("singleton").primaryKey().default(true),
    requeueApprovals: integer("requeue_approvals").$type<1 | 2>().notNull(),
    setBy: text("set_by").notNull(),
    setAt: timestamp("set_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    check("ops_policy_singleton_check", sql`${t.singleton}`),
    check("ops_policy_requeue_approvals_check", sql`${t.requeueApprovals} in (1, 2)`),
  ],
);

export const auditLog = pgTable(
  "audit_log",
  {
    id: id(),
    action: text("action").notNull(),
    actor: text("actor").notNull(),
    resourceType: text("resource_type").notNull(),
    resourceId: text("resource_id"),
    severity: text("severity").$type<AuditSeverity>().notNull().default("info"),
    metadata: jsonb("metadata").$type<Record<string, unknown>>(),
    createdAt: createdAt(),
  },
  (t) => [
    check("audit_log_severity_check", inList("severity", ["info", "warning", "error"])),
    index("audit_log_resource_idx").on(t.resourceType, t.resourceId),
    // /metrics counts escalations, requeues and resolutions by action at every scrape.
    index("audit_log_action_idx").on(t.action, t.createdAt),
  ],
);

export const reconciliationRuns = pgTable("reconciliation_runs", {
  id: id(),
  startedAt: timestamp("started_at", { withTimezone: true }).notNull().defaultNow(),
  finishedAt: timestamp("finished_at", { withTimezone: true }),
  status: text("status").$type<"running" | "clean" | "defects" | "failed">().notNull(),
  defectCount: integer("defect_count").notNull().default(0),
  findings: jsonb("findings").$type<Record<string, unknown>>(),
  createdAt: createdAt(),
  /** `incremental` (the daily run: what changed since the previous completed run) or `full` (the weekly sweep, or no run to start from). */
  scope: text("scope").$type<"incremental" | "full">().notNull().default("full"),
  /** max(cash_journal_entries.sequence) in the run's snapshot, read at its start. */
  journalMark: bigint("journal_mark", { mode: "bigint" }),
  /** The previous completed run's journal_mark this run started from (null for a full run). */
  fromMark: bigint("from_mark", { mode: "bigint" }),
  /** How many obligations the run's checks covered (every obligation for a full run). */
  obligationsChecked: integer("obligations_checked"),
}, (t) => [
  check("reconciliation_runs_scope_check", inList("scope", ["incremental", "full"])),
  // The previous completed run's mark: the latest finished run, read at each run's start.
  index("reconciliation_runs_started_idx").on(t.startedAt),
]);

/**
 * What changed in the ledger's contract tables since the last completed reconciliation, which the
 * journal sequence cannot see or may see late (DESIGN.md §6, docs/ledger.md): fed by statement-level
 * triggers (drizzle/0008), one insert per statement; a completed run deletes the rows its snapshot saw.
 */
export const ledgerChanges = pgTable("ledger_changes", {
  id: bigint("id", { mode: "bigint" }).primaryKey().generatedAlwaysAsIdentity(),
  obligationId: uuid("obligation_id"),
  accountId: uuid("account_id"),
  mortgageId: uuid("mortgage_id"),
  changedAt: timestamp("changed_at", { withTimezone: true }).notNull().defaultNow(),
});
