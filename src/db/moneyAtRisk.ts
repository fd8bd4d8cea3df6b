// Money at risk, read for the /ops header, GET /api/money-at-risk(.csv) and /metrics: the total
// parked in SUSPENSE, the open escalations by age, the shortfall (paid out, cash since returned),
// the orphans by healing state and the oldest one's age, the latest reconciliation's defect count.
// Each is one statement over a partial index, so a scrape costs the same with ten or ten million
// obligations behind it.
import { sql } from "drizzle-orm";
import type { Executor } from "./client.js";
import { shortfallOf } from "./obligationAmounts.js";
import { orphanSince, type OrphanState } from "./orphanAges.js";

export interface MoneyAtRisk {
  /** Σ (debits − credits) of every SUSPENSE account, in cents. */
  suspenseCents: bigint;
  openEscalations: number;
  /** escalated_at of the oldest open escalation, ISO 8601, or null when none is open. */
  oldestEscalatedAt: string | null;
  oldestAgeSeconds: number;
  ageBuckets: { underOneDay: number; oneToSevenDays: number; overSevenDays: number };
  /** Σ of every obligation's shortfall (entries paid beyond its net settled cash), in cents. */
  shortfallCents: bigint;
  /** Obligations with a shortfall. */
  shortfallObligations: number;
}

/**
 * Obligations whose cash was returned (a REVERSAL of a CASH_RECEIVED, from the reversals' partial
 * index): the only ones whose net cash can fall below what was paid out, since the journal is
 * append-only. (Payables posted beyond the cash, or an obligation without cash postings whose
 * amount was lowered after its payout, are reconciliation's overAllocated, not counted here.)
 */
const returnedCash = sql`
  select distinct c.obligation_id from cash_journal_entries r
    join cash_journal_entries c on c.id = r.reverses_entry_id
   where r.reverses_entry_id is not null and r.entry_type = 'REVERSAL'
     and c.entry_type = 'CASH_RECEIVED' and c.obligation_id is not null`;

export async function readMoneyAtRisk(db: Executor): Promise<MoneyAtRisk> {
  const [row] = await db.execute<{
    suspense: string;
    open: bigint;
    oldest: string | null;
    oldest_age: number | null;
    under_1d: bigint;
    d1_7: bigint;
    over_7d: bigint;
    shortfall: string;
    shortfall_obligations: bigint;
  }>(sql`
    with shortfalls as (select ${shortfallOf(sql`t.obligation_id`)} as cents from (${returnedCash}) t),
         shortfall as (select coalesce(sum(s.cents), 0)::text as cents, count(*) filter (where s.cents > 0) as n from shortfalls s)
    select (select cents from shortfall) as shortfall, (select n from shortfall) as shortfall_obligations,
           (select coalesce(sum(a.cumulative_debits::numeric - a.cumulative_credits), 0)::text
              from cash_accounts a where a.family = 'SUSPENSE') as suspense,
           count(*) as open,
           to_char(min(h.escalated_at) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as oldest,
           extract(epoch from now() - min(h.escalated_at))::float8 as oldest_age,
           count(*) filter (where h.escalated_at > now() - interval '1 day') as under_1d,
           count(*) filter (where h.escalated_at <= now() - interval '1 day' and h.escalated_at > now() - interval '7 days') as d1_7,
           count(*) filter (where h.escalated_at <= now() - interval '7 days') as over_7d
      from dispersal_healing_attempts h
     where h.status = 'escalated'`);
  return {
    suspenseCents: BigInt(row!.suspense),
    openEscalations: Number(row!.open),
    oldestEscalatedAt: row!.oldest,
    oldestAgeSeconds: Math.max(0, Math.floor(row!.oldest_age ?? 0)),
    ageBuckets: { underOneDay: Number(row!.under_1d), oneToSevenDays: Number(row!.d1_7), overSevenDays: Number(row!.over_7d) },
    shortfallCents: BigInt(row!.shortfall),
    shortfallObligations: Number(row!.shortfall_obligations),
  };
}

/**
 * Orphans (settled, not dispersed) by healing state: `new` (no attempt yet), `retrying` (an attempt
 * failed, its round goes on), `requeued` (an operator started a new round), `escalated` (in
 * SUSPENSE, waiting for an operator; the scan leaves these alone).
 */
export const ORPHAN_STATES: readonly OrphanState[] = ["new", "retrying", "requeued", "escalated"];

export interface OrphanSummary {
  byState: Record<OrphanState, number>;
  /** Age of the oldest orphan that is not escalated, since settlement or its latest requeue; 0 when none. */
  oldestAgeSeconds: number;
}

export async function readOrphanSummary(db: Executor): Promise<OrphanSummary> {
  // The total comes from the scan's partial index (index only); the healing states from the open
  // healing rows, which are few; `new` is what is left (a `resolved` row is never left undispersed:
  // a failed attempt turns it back to `retrying`). The oldest age is on reconciliation's clock
  // (orphanSince: settlement, or the latest requeue): the first orphan in order of settlement that
  // is neither escalated nor requeued (obligations_orphan_age_idx), against the requeued ones.
  const rows = await db.execute<{ state: string; n: bigint; oldest_age: number | null }>(sql`
    select 'all' as state, count(*) as n,
           extract(epoch from now() - least(
             (select coalesce(o.settled_at, o.created_at) from obligations o
               where o.status = 'settled' and not o.dispersed and o.created_at is not null
                 and not exists (select 1 from dispersal_healing_attempts h
                                  where h.obligation_id = o.id and h.status in ('escalated', 'requeued'))
               order by coalesce(o.settled_at, o.created_at) limit 1),
             (select min(${orphanSince}) from dispersal_healing_attempts h join obligations o on o.id = h.obligation_id
               where h.status = 'requeued' and o.status = 'settled' and not o.dispersed)))::float8 as oldest_age
      from obligations o where o.status = 'settled' and not o.dispersed
    union all
    select h.status, count(*), null from dispersal_healing_attempts h join obligations o on o.id = h.obligation_id
     where h.status in ('retrying', 'requeued', 'escalated') and o.status = 'settled' and not o.dispersed
     group by h.status`);
  const byState: Record<OrphanState, number> = { new: 0, retrying: 0, requeued: 0, escalated: 0 };
  let all = 0;
  let oldestAge = 0;
  for (const row of rows) {
    if (row.state === "all") {
      all = Number(row.n);
      oldestAge = row.oldest_age ?? 0;
    } else byState[row.state as OrphanState] += Number(row.n);
  }
  byState.new = Math.max(0, all - byState.retrying - byState.requeued - byState.escalated);
  return { byState, oldestAgeSeconds: Math.max(0, Math.floor(oldestAge)) };
}

/** The latest finished reconciliation run's defect count; undefined before the first run. */
export async function readLatestReconciliationDefects(db: Executor): Promise<{ defectCount: number; status: string; finishedAt: string } | undefined> {
  const [row] = await db.execute<{ defect_count: number; status: string; finished_at: string }>(sql`
    select defect_count, status, finished_at from reconciliation_runs
     where status <> 'running' order by started_at desc limit 1`);
  return row ? { defectCount: row.defect_count, status: row.status, finishedAt: row.finished_at } : undefined;
}
