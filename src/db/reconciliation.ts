// The daily reconciliation (DESIGN.md §6): each check is one query; a run and its findings are
// stored in reconciliation_runs.
import { sql, type SQL } from "drizzle-orm";
import type { Executor } from "./client.js";
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

export interface ReconciliationReport {
  id: string;
  startedAt: string;
  finishedAt: string | null;
  status: "running" | "clean" | "defects" | "failed";
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

/** Per (obligation, lender): the journal's payables net of their reversals. */
const journalPayables = sql`
  select p.obligation_id, p.lender_id, sum(p.amount) - coalesce(sum(r.amount), 0) as amount
    from cash_journal_entries p
    left join cash_journal_entries r on r.reverses_entry_id = p.id and r.entry_type = 'REVERSAL'
   where p.entry_type = 'LENDER_PAYABLE_CREATED' and p.obligation_id is not null
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
}

function checks(orphanDeadlineMs: number, rejected: readonly RejectedRetrigger[]): Record<ReconciliationCheck, SQL> {
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
       where o.dispersed and o.status = 'settled' and ${allocated} < ${netCash}`,
    // The projection against the journal (three-way): entries shifted between lenders, a lender
    // changed, an extra payable posting, entries deleted. Reversed entries count for nothing.
    payablesMismatch: sql`
      select distinct coalesce(j.obligation_id, e.obligation_id)::text as id
        from (${journalPayables}) j
        full join (select d.obligation_id, d.lender_id, sum(d.amount) as amount from dispersal_entries d
                    where d.status <> 'reversed' group by 1, 2) e
          on e.obligation_id = j.obligation_id and e.lender_id = j.lender_id
       where coalesce(j.amount, 0) <> coalesce(e.amount, 0)`,
    feeMismatch: sql`
      select distinct coalesce(j.obligation_id, e.obligation_id)::text as id
        from (select p.obligation_id, sum(p.amount) - coalesce(sum(r.amount), 0) as amount
                from cash_journal_entries p
                left join cash_journal_entries r on r.reverses_entry_id = p.id and r.entry_type = 'REVERSAL'
               where p.entry_type = 'SERVICING_FEE_RECOGNIZED' and p.obligation_id is not null group by 1) j
        full join (select f.obligation_id, sum(f.amount) as amount from servicing_fee_entries f
                    where f.status <> 'reversed' group by 1) e on e.obligation_id = j.obligation_id
       where coalesce(j.amount, 0) <> coalesce(e.amount, 0)`,
    // Lenders owed more than the cash held for the obligation: returned cash already paid out (a
    // shortfall) or payables posted beyond it.
    overAllocated: sql`
      select o.id::text as id from obligations o
       where ${hasCash} and ${allocated} > ${netCash}`,
    settledWithoutCash: sql`
      select o.id::text as id from obligations o
       where o.status = 'settled' and ${hasCash} and ${netCash} <= 0`,
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
       where a.family = 'SUSPENSE' and (h.status is null or h.status = 'resolved')
       group by o.id having sum(a.cumulative_debits::numeric - a.cumulative_credits) <> 0`,
    accountTotalsMismatch: sql`
      select a.id::text as id from cash_accounts a
        left join (select debit_account_id as id, sum(amount) as total from cash_journal_entries group by 1) d on d.id = a.id
        left join (select credit_account_id as id, sum(amount) as total from cash_journal_entries group by 1) c on c.id = a.id
       where a.cumulative_debits <> coalesce(d.total, 0) or a.cumulative_credits <> coalesce(c.total, 0)`,
    duplicateIdempotencyKeys: sql`
      select idempotency_key as id from cash_journal_entries group by idempotency_key having count(*) > 1`,
  };
}

export async function runReconciliation(db: Executor, options: ReconciliationOptions): Promise<ReconciliationReport> {
  const deadlineMs = options.orphanDeadlineMs ?? options.scanIntervalMs ?? 0;
  const [run] = await db.execute<{ id: string }>(sql`insert into reconciliation_runs (status) values ('running') returning id`);
  failpoint("reconcile.after-start");
  const findings: ReconciliationReport["findings"] = {};
  try {
    for (const [name, query] of Object.entries(checks(deadlineMs, options.rejectedRetriggers ?? [])) as [ReconciliationCheck, SQL][]) {
      const [row] = await db.execute<{ count: bigint; sample: string[] | null }>(sql`
        with offending as (${query})
        select count(*) as count, (select array_agg(id) from (select id from offending limit 20) s) as sample from offending`);
      findings[name] = { count: Number(row!.count), sample: row!.sample ?? [] };
    }
  } catch (error) {
    findings.error = (error as Error).message;
    await db.execute(sql`update reconciliation_runs set status = 'failed', finished_at = now(), findings = ${JSON.stringify(findings)}::jsonb where id = ${run!.id}::uuid`);
    throw error;
  }
  const defectCount = Object.values(findings).reduce((sum, f) => sum + (typeof f === "object" ? f.count : 0), 0);
  await db.execute(sql`
    update reconciliation_runs set status = ${defectCount === 0 ? "clean" : "defects"}, defect_count = ${defectCount},
           finished_at = now(), findings = ${JSON.stringify(findings)}::jsonb
     where id = ${run!.id}::uuid`);
  return (await latestReconciliation(db))!;
}

export async function latestReconciliation(db: Executor): Promise<ReconciliationReport | undefined> {
  const [row] = await db.execute<{ id: string; started_at: string; finished_at: string | null; status: ReconciliationReport["status"]; defect_count: number; findings: ReconciliationReport["findings"] | null }>(sql`
    select id, started_at, finished_at, status, defect_count, findings from reconciliation_runs
     where status <> 'running' order by started_at desc limit 1`);
  if (!row) return undefined;
  return { id: row.id, startedAt: row.started_at, finishedAt: row.finished_at, status: row.status, defectCount: row.defect_count, findings: row.findings ?? {} };
}
