// The reconciliation (DESIGN.md §6): each check is one query; a run and its findings are stored in
// reconciliation_runs. A run has a scope: `full` checks every obligation and account (the weekly
// sweep, and any run with no completed run before it); `incremental` (the daily run) checks only
// what changed since the previous completed run. Each check's SQL is written once, parameterised by
// the scope (RunScope below): the full sweep's predicate is `true`.
//
// What "changed" means, correct under concurrency (docs/ledger.md "Incremental and full runs"):
// - ledger_changes, fed by statement-level triggers (drizzle/0008) in the writer's own transaction:
//   journal postings (obligation and both accounts), dispersal and fee entries inserted, edited or
//   deleted, obligations inserted or edited, healing rows, mortgage positions (the mortgage).
// - journal rows with sequence > the previous completed run's mark (max(sequence) at its start): a
//   second net for postings written with triggers off (session_replication_role = replica).
// A run reads its mark and the change log in one REPEATABLE READ snapshot, runs every check in it, and
// deletes the change rows that snapshot saw in the same transaction that stores its result. A change
// committed while the run is in progress is invisible to the snapshot, so it is neither checked nor
// deleted: the next run sees it. That holds for a journal posting whose identity value was allocated
// below the mark but committed after it (identity values are not commit-ordered): its change row
// commits with it. A run that fails rolls back, deleting nothing. Runs are serialised by a lock on
// ledger_changes taken before the snapshot (SHARE UPDATE EXCLUSIVE: writers' inserts never wait).
import { sql, type SQL } from "drizzle-orm";
import type { Db, Executor } from "./client.js";
import { failpoint } from "../failpoint.js";
import { allocatedOf, netCashOf, suspenseOf } from "./obligationAmounts.js";
import { orphanSince, orphansWithHealing } from "./orphanAges.js";

export interface CheckFinding {
  count: number;
  /** Up to 20 offending ids, for an operator to start from. */
  sample: string[];
}

export type ReconciliationCheck =
  | "staleOrphans"
  | "rejectedOrphans"
  | "conservationDefects"
  | "payablesMismatch"
  | "feeMismatch"
  | "overAllocated"
  | "settledWithoutCash"
  | "escalatedSuspenseMismatch"
  | "openSuspenseMismatch"
  | "resolvedSuspenseNotCleared"
  | "accountTotalsMismatch"
  | "duplicateIdempotencyKeys";

export type ReconciliationScope = "incremental" | "full";

export interface ReconciliationReport {
  id: string;
  startedAt: string;
  finishedAt: string | null;
  status: "running" | "clean" | "defects" | "failed";
  /** incremental: what changed since `fromMark`; full: everything. */
  scope: ReconciliationScope;
  /** max(cash_journal_entries.sequence) in the run's snapshot (null for a run of before migration 0008 or one that failed before reading it). */
  journalMark: string | null;
  /** The previous completed run's mark this incremental run started from (null for a full run). */
  fromMark: string | null;
  /** How many obligations the checks covered (null when unknown: failed early, or before migration 0008). */
  obligationsChecked: number | null;
  defectCount: number;
  findings: Partial<Record<ReconciliationCheck, CheckFinding>> & { error?: string };
}

// The amounts are db/obligationAmounts.ts's, defined once in SQL: the checks compare the journal
// with itself and with the entries, never with a second definition.
const netCash = netCashOf(sql`o.id`);
const allocated = allocatedOf(sql`o.id`);
const suspenseBalance = suspenseOf(sql`o.id`);
const unallocated = sql`greatest(${netCash} - ${allocated}, 0)`;
const hasCash = sql`exists (select 1 from cash_journal_entries c where c.obligation_id = o.id and c.entry_type = 'CASH_RECEIVED')`;

/**
 * Which rows a run's checks cover. Full: every row (each predicate is `true`). Incremental: the
 * obligations and accounts in the run's temporary scope tables (filled in scopeTables below).
 */
interface RunScope {
  /** The obligation id `column` is one the run checks. */
  obligation(column: SQL): SQL;
  /** The account id `column` is one the run checks. */
  account(column: SQL): SQL;
}

const FULL: RunScope = { obligation: () => sql`true`, account: () => sql`true` };
const INCREMENTAL: RunScope = {
  obligation: (column) => sql`${column} in (select id from reconcile_obligations)`,
  account: (column) => sql`${column} in (select id from reconcile_accounts)`,
};

/** Per (obligation, lender): the journal's payables net of their reversals. */
const journalPayables = (scope: RunScope) => sql`
  select p.obligation_id, p.lender_id, sum(p.amount) - coalesce(sum(r.amount), 0) as amount
    from cash_journal_entries p
    left join cash_journal_entries r on r.reverses_entry_id = p.id and r.entry_type = 'REVERSAL'
   where p.entry_type = 'LENDER_PAYABLE_CREATED' and p.obligation_id is not null and ${scope.obligation(sql`p.obligation_id`)}
   group by 1, 2`;

/** A retrigger job failed as unrecoverable (never retried, never escalated), read from the retrigger queue's failed set. */
export interface RejectedRetrigger {
  obligationId: string;
  /** When the job failed (ms since the epoch). */
  rejectedAt: number;
}

export interface ReconciliationOptions {
  /** How long an orphan may stay undispersed and unescalated (domain/orphanDeadline.ts). */
  orphanDeadlineMs?: number;
  /** Older callers: the scan interval alone as the deadline. */
  scanIntervalMs?: number;
  rejectedRetriggers?: readonly RejectedRetrigger[];
  /**
   * incremental: check what changed since the previous completed run (full when there is none);
   * full: every obligation and account. (Default: full)
   */
  scope?: ReconciliationScope;
}

// Scope: the orphan checks (stale, rejected) and the open-escalation SUSPENSE checks stay global in
// every run: their cost follows the orphans and the open healing rows (partial indexes), and an
// orphan grows stale with time, not with a change. Every other check is restricted by the scope.
function checks(orphanDeadlineMs: number, rejected: readonly RejectedRetrigger[], scope: RunScope): Record<ReconciliationCheck, SQL> {
  const inScope = scope.obligation(sql`o.id`);
  return {
    // Escalated ones are excluded: a human has them (and the SUSPENSE checks below watch their money).
    staleOrphans: sql`
      select o.id::text as id from ${orphansWithHealing}
         and (h.status is null or h.status <> 'escalated')
         and ${orphanSince} < now() - make_interval(secs => ${orphanDeadlineMs / 1000})`,
    // A job refused as unrecoverable after the obligation was settled, which is still an orphan: no
    // retry and no escalation will come for it (DESIGN.md §4), only the next scan's new job.
    rejectedOrphans: sql`
      select distinct o.id::text as id
        from jsonb_to_recordset(${JSON.stringify(rejected.map((r) => ({ id: r.obligationId, at: new Date(r.rejectedAt).toISOString() })))}::jsonb)
             as r(id uuid, at timestamptz)
       cross join ${orphansWithHealing}
         and o.id = r.id
         and (h.status is null or h.status <> 'escalated')
         and r.at >= coalesce(o.settled_at, o.created_at)`,
    // A dispersed obligation whose journal does not allocate its net settled cash (late cash never
    // dispersed, an allocation posted twice), shortfalls apart (overAllocated names those).
    conservationDefects: sql`
      select o.id::text as id from obligations o
       where o.dispersed and o.status = 'settled' and ${inScope} and ${allocated} < ${netCash}`,
    // The projection against the journal (three-way): entries shifted between lenders, a lender
    // changed, an extra payable posting, entries deleted. Reversed entries count for nothing.
    payablesMismatch: sql`
      select distinct coalesce(j.obligation_id, e.obligation_id)::text as id
        from (${journalPayables(scope)}) j
        full join (select d.obligation_id, d.lender_id, sum(d.amount) as amount from dispersal_entries d
                    where d.status <> 'reversed' and ${scope.obligation(sql`d.obligation_id`)} group by 1, 2) e
          on e.obligation_id = j.obligation_id and e.lender_id = j.lender_id
       where coalesce(j.amount, 0) <> coalesce(e.amount, 0)`,
    feeMismatch: sql`
      select distinct coalesce(j.obligation_id, e.obligation_id)::text as id
        from (select p.obligation_id, sum(p.amount) - coalesce(sum(r.amount), 0) as amount
                from cash_journal_entries p
                left join cash_journal_entries r on r.reverses_entry_id = p.id and r.entry_type = 'REVERSAL'
               where p.entry_type = 'SERVICING_FEE_RECOGNIZED' and p.obligation_id is not null
                 and ${scope.obligation(sql`p.obligation_id`)} group by 1) j
        full join (select f.obligation_id, sum(f.amount) as amount from servicing_fee_entries f
                    where f.status <> 'reversed' and ${scope.obligation(sql`f.obligation_id`)} group by 1) e on e.obligation_id = j.obligation_id
       where coalesce(j.amount, 0) <> coalesce(e.amount, 0)`,
    // Lenders owed more than the cash held for the obligation: returned cash already paid out (a
    // shortfall) or payables posted beyond it.
    overAllocated: sql`
      select o.id::text as id from obligations o
       where ${inScope} and ${hasCash} and ${allocated} > ${netCash}`,
    settledWithoutCash: sql`
      select o.id::text as id from obligations o
       where o.status = 'settled' and ${inScope} and ${hasCash} and ${netCash} <= 0`,
    // While escalated, SUSPENSE (every account of the obligation, whichever mortgage) = net cash − allocated.
    escalatedSuspenseMismatch: sql`
      select o.id::text as id from dispersal_healing_attempts h join obligations o on o.id = h.obligation_id
       where h.status = 'escalated' and ${suspenseBalance} <> ${unallocated}`,
    // Retrying or requeued: SUSPENSE holds nothing, or an earlier escalation's unallocated cash.
    openSuspenseMismatch: sql`
      select o.id::text as id from dispersal_healing_attempts h join obligations o on o.id = h.obligation_id
       where h.status in ('retrying', 'requeued') and ${suspenseBalance} <> 0 and ${suspenseBalance} <> ${unallocated}`,
    // SUSPENSE held by anything but an open escalation: resolved, or never healed at all.
    resolvedSuspenseNotCleared: sql`
      select o.id::text as id from cash_accounts a
        join obligations o on o.id = a.obligation_id
        left join dispersal_healing_attempts h on h.obligation_id = o.id
       where a.family = 'SUSPENSE' and ${scope.obligation(sql`a.obligation_id`)} and (h.status is null or h.status = 'resolved')
       group by o.id having sum(a.cumulative_debits::numeric - a.cumulative_credits) <> 0`,
    accountTotalsMismatch: sql`
      select a.id::text as id from cash_accounts a
        left join (select debit_account_id as id, sum(amount) as total from cash_journal_entries
                    where ${scope.account(sql`debit_account_id`)} group by 1) d on d.id = a.id
        left join (select credit_account_id as id, sum(amount) as total from cash_journal_entries
                    where ${scope.account(sql`credit_account_id`)} group by 1) c on c.id = a.id
       where ${scope.account(sql`a.id`)}
         and (a.cumulative_debits <> coalesce(d.total, 0) or a.cumulative_credits <> coalesce(c.total, 0))`,
    // The unique index makes a duplicate impossible unless it was dropped; incremental: the keys of
    // the journal rows of the obligations in scope, each counted over the whole journal by that index.
    duplicateIdempotencyKeys: sql`
      select j.idempotency_key as id from cash_journal_entries j
       where ${scope === FULL ? sql`true` : sql`j.idempotency_key in (select t.idempotency_key from cash_journal_entries t where ${scope.obligation(sql`t.obligation_id`)})`}
       group by j.idempotency_key having count(*) > 1`,
  };
}

/** The checks whose findings name obligations (the others name accounts, keys, or are global). */
const OBLIGATION_CHECKS: readonly ReconciliationCheck[] = [
  "conservationDefects",
  "payablesMismatch",
  "feeMismatch",
  "overAllocated",
  "settledWithoutCash",
  "resolvedSuspenseNotCleared",
];

interface PreviousRun {
  id: string;
  /** Null for a run of before migration 0008: then there is nothing to start from. */
  journalMark: string | null;
}

/**
 * The previous completed run: where an incremental run starts from. By finished_at (the clock at its
 * commit, runs being serialised), not started_at: of two runs started together, the later snapshot.
 */
async function previousRun(tx: Executor): Promise<PreviousRun | undefined> {
  const [row] = await tx.execute<{ id: string; journal_mark: string | null }>(sql`
    select id, journal_mark::text from reconciliation_runs
     where status in ('clean', 'defects') order by finished_at desc limit 1`);
  return row ? { id: row.id, journalMark: row.journal_mark } : undefined;
}

/**
 * The incremental run's obligations and accounts, as temporary tables dropped at commit: the change
 * log's rows, the journal rows past the previous mark (their obligation and both accounts), every
 * obligation of a mortgage whose positions changed, the accounts kept per obligation in scope, and
 * what the previous run named (its samples, up to 20 a check): a defect found stays reported, run
 * after run, until it is fixed, rather than vanishing from the latest run (and its alert) a day later.
 */
async function scopeTables(tx: Executor, previous: PreviousRun & { journalMark: string }): Promise<void> {
  const fromMark = previous.journalMark;
  const named = (checks: readonly string[]) => sql`
    select s.id::uuid from reconciliation_runs r, jsonb_each(r.findings) f, jsonb_array_elements_text(f.value->'sample') s(id)
     where r.id = ${previous.id}::uuid and jsonb_typeof(f.value) = 'object'
       and f.key in (${sql.join(checks.map((c) => sql`${c}`), sql`, `)})`;
  await tx.execute(sql`create temporary table reconcile_obligations (id uuid primary key) on commit drop`);
  await tx.execute(sql`create temporary table reconcile_accounts (id uuid primary key) on commit drop`);
  await tx.execute(sql`
    insert into reconcile_obligations
    select obligation_id from ledger_changes where obligation_id is not null
     union select obligation_id from cash_journal_entries where sequence > ${fromMark}::bigint and obligation_id is not null
     union select o.id from obligations o where o.mortgage_id in (select mortgage_id from ledger_changes where mortgage_id is not null)
     union ${named(OBLIGATION_CHECKS)}`);
  await tx.execute(sql`
    insert into reconcile_accounts
    select account_id from ledger_changes where account_id is not null
     union select debit_account_id from cash_journal_entries where sequence > ${fromMark}::bigint
     union select credit_account_id from cash_journal_entries where sequence > ${fromMark}::bigint
     union select a.id from cash_accounts a where a.obligation_id in (select id from reconcile_obligations)
     union ${named(["accountTotalsMismatch"])}`);
  await tx.execute(sql`analyze reconcile_obligations`);
  await tx.execute(sql`analyze reconcile_accounts`);
}

export async function runReconciliation(db: Db, options: ReconciliationOptions): Promise<ReconciliationReport> {
  const deadlineMs = options.orphanDeadlineMs ?? options.scanIntervalMs ?? 0;
  const [run] = await db.execute<{ id: string }>(sql`
    insert into reconciliation_runs (status, scope) values ('running', ${options.scope ?? "full"}) returning id`);
  failpoint("reconcile.after-start");
  const findings: ReconciliationReport["findings"] = {};
  try {
    await db.transaction(
      async (tx) => {
        // Before any query, so that the snapshot is taken once the previous run has committed.
        await tx.execute(sql`lock table ledger_changes in share update exclusive mode`);
        const [high] = await tx.execute<{ mark: string }>(sql`select coalesce(max(sequence), 0)::text as mark from cash_journal_entries`);
        const mark = high!.mark;
        const previous = options.scope === "incremental" ? await previousRun(tx) : undefined;
        const fromMark = previous?.journalMark ?? null;
        const scope = fromMark === null ? "full" : "incremental";
        if (fromMark !== null) await scopeTables(tx, { id: previous!.id, journalMark: fromMark });
        const [counted] = await tx.execute<{ n: bigint }>(
          scope === "full" ? sql`select count(*) as n from obligations` : sql`select count(*) as n from reconcile_obligations`,
        );
        for (const [name, query] of Object.entries(checks(deadlineMs, options.rejectedRetriggers ?? [], scope === "full" ? FULL : INCREMENTAL)) as [ReconciliationCheck, SQL][]) {
          const [row] = await tx.execute<{ count: bigint; sample: string[] | null }>(sql`
            with offending as (${query})
            select count(*) as count, (select array_agg(id) from (select id from offending limit 20) s) as sample from offending`);
          findings[name] = { count: Number(row!.count), sample: row!.sample ?? [] };
        }
        // Consumed: only the change rows this snapshot saw (a row committed since is invisible here and stays).
        await tx.execute(sql`delete from ledger_changes`);
        const defectCount = Object.values(findings).reduce((sum, f) => sum + (typeof f === "object" ? f.count : 0), 0);
        await tx.execute(sql`
          update reconciliation_runs set status = ${defectCount === 0 ? "clean" : "defects"}, defect_count = ${defectCount},
                 scope = ${scope}, journal_mark = ${mark}::bigint, from_mark = ${fromMark}::bigint,
                 obligations_checked = ${Number(counted!.n)}, finished_at = clock_timestamp(), findings = ${JSON.stringify(findings)}::jsonb
           where id = ${run!.id}::uuid`);
      },
      { isolationLevel: "repeatable read" },
    );
  } catch (error) {
    findings.error = (error as Error).message;
    await db.execute(sql`update reconciliation_runs set status = 'failed', finished_at = now(), findings = ${JSON.stringify(findings)}::jsonb where id = ${run!.id}::uuid`);
    throw error;
  }
  return (await reconciliationRun(db, run!.id))!;
}

type RunRow = {
  id: string;
  started_at: string;
  finished_at: string | null;
  status: ReconciliationReport["status"];
  scope: ReconciliationScope;
  journal_mark: string | null;
  from_mark: string | null;
  obligations_checked: number | null;
  defect_count: number;
  findings: ReconciliationReport["findings"] | null;
};

const runColumns = sql`id, started_at, finished_at, status, scope, journal_mark::text, from_mark::text, obligations_checked, defect_count, findings`;

function report(row: RunRow): ReconciliationReport {
  return {
    id: row.id,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    status: row.status,
    scope: row.scope,
    journalMark: row.journal_mark,
    fromMark: row.from_mark,
    obligationsChecked: row.obligations_checked,
    defectCount: row.defect_count,
    findings: row.findings ?? {},
  };
}

async function reconciliationRun(db: Executor, id: string): Promise<ReconciliationReport | undefined> {
  const [row] = await db.execute<RunRow>(sql`select ${runColumns} from reconciliation_runs where id = ${id}::uuid`);
  return row ? report(row) : undefined;
}

export async function latestReconciliation(db: Executor): Promise<ReconciliationReport | undefined> {
  const [row] = await db.execute<RunRow>(sql`
    select ${runColumns} from reconciliation_runs
     where status <> 'running' order by started_at desc limit 1`);
  return row ? report(row) : undefined;
}

/** The latest runs, newest first (running and failed ones too): each with its scope and counts. */
export async function recentReconciliations(db: Executor, limit: number): Promise<ReconciliationReport[]> {
  const rows = await db.execute<RunRow>(sql`
    select ${runColumns} from reconciliation_runs order by started_at desc limit ${limit}`);
  return rows.map(report);
}
