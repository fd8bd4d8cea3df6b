// The daily reconciliation (DESIGN.md §6): each check is one query; a run and its findings are
// stored in reconciliation_runs.
import { sql, type SQL } from "drizzle-orm";
import type { Executor } from "./client.js";
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

const settledAmount = sql`coalesce(nullif((select sum(j.amount) from cash_journal_entries j
  where j.obligation_id = o.id and j.entry_type = 'CASH_RECEIVED'), 0), o.amount)`;

const suspenseBalance = sql`coalesce((select a.cumulative_debits - a.cumulative_credits from cash_accounts a
  where a.family = 'SUSPENSE' and a.subaccount is null and a.mortgage_id = o.mortgage_id
    and a.obligation_id = o.id and a.lender_id is null), 0)`;

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
    conservationDefects: sql`
      select o.id::text as id from obligations o
       where o.dispersed
         and coalesce((select sum(d.amount) from dispersal_entries d where d.obligation_id = o.id), 0)
           + coalesce((select f.amount from servicing_fee_entries f where f.obligation_id = o.id), 0) <> ${settledAmount}`,
    escalatedSuspenseMismatch: sql`
      select o.id::text as id from dispersal_healing_attempts h join obligations o on o.id = h.obligation_id
       where h.status = 'escalated' and ${suspenseBalance} <> ${settledAmount}`,
    // Retrying or requeued: SUSPENSE holds nothing, or an earlier escalation's full settled amount.
    openSuspenseMismatch: sql`
      select o.id::text as id from dispersal_healing_attempts h join obligations o on o.id = h.obligation_id
       where h.status in ('retrying', 'requeued') and ${suspenseBalance} <> 0 and ${suspenseBalance} <> ${settledAmount}`,
    resolvedSuspenseNotCleared: sql`
      select o.id::text as id from dispersal_healing_attempts h join obligations o on o.id = h.obligation_id
       where h.status = 'resolved' and ${suspenseBalance} <> 0`,
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
