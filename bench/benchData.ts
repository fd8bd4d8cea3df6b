// The benchmark's data, made with the project's bulk generator (src/db/seed.ts seedObligations: a
// consistent ledger, historical dispersals split as the domain does), plus what the benchmark
// needs on top: healing orphans down to a given count the way production does (the real dispersal
// transaction), and a check that the ledger is still consistent.
import type { Database } from "../src/db/client.js";
import { disperseObligation } from "../src/db/dispersals.js";
import { resolveHealing } from "../src/db/healing.js";
import { seedObligations, type SeedSummary } from "../src/db/seed.js";

/** Mortgages per data set the benchmark makes at most (seed ordinals are int8 since the seed's fix; this only bounds the lender pool). */
const MAX_MORTGAGES = 1_000_000;
/** The scan section's history keeps the shape of earlier runs: at most 20,000 mortgages (50 obligations each at 1M). */
const SCAN_HISTORY_MORTGAGES = 20_000;

/**
 * `settled` settled obligations (1–3 lenders per mortgage, at least 12 obligations per mortgage),
 * all dispersed with their postings except about `orphanShare` of them. Vacuumed and analysed
 * afterwards, the steady state autovacuum keeps a real database in.
 */
export async function seedScanHistory(
  database: Database,
  options: { settled: number; orphanShare: number; onProgress?: (done: number) => void },
): Promise<SeedSummary> {
  const summary = await seedObligations(database, {
    obligations: options.settled,
    mortgages: Math.max(1, Math.min(SCAN_HISTORY_MORTGAGES, Math.ceil(options.settled / 12))),
    settledShare: 1,
    orphanShare: options.orphanShare,
    lendersPerMortgage: { min: 1, max: 3 },
    withHistoricalDispersals: true,
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  await database.sql`vacuum (analyze) obligations`;
  await database.sql`analyze`;
  return summary;
}

/**
 * `count` fresh orphans: settled (accrued, CASH_RECEIVED posted), no dispersal entry, two per
 * mortgage unless `perMortgage` says otherwise (an incident orphans payments of many mortgages,
 * rarely many of one; obligations of a mortgage have consecutive ids), 1–5 lenders each,
 * the generator's mix of obligation types and servicing fees. `unfixable`: every position has 0
 * units, so they can only be escalated.
 */
export async function seedOrphans(database: Database, options: { count: number; unfixable?: boolean; perMortgage?: number }): Promise<SeedSummary> {
  const summary = await seedObligations(database, {
    obligations: options.count,
    mortgages: Math.min(MAX_MORTGAGES, Math.ceil(options.count / (options.perMortgage ?? 2))),
    settledShare: 1,
    orphanShare: 1,
    unfixableOrphanShare: options.unfixable ? 1 : 0,
    lendersPerMortgage: { min: 1, max: 5 },
    withHistoricalDispersals: false,
  });
  const expectedUnfixable = options.unfixable ? options.count : 0;
  if (summary.orphans !== options.count || summary.unfixableOrphans !== expectedUnfixable) {
    throw new Error(`seeded ${summary.orphans} orphans (${summary.unfixableOrphans} unfixable), expected ${options.count} (${expectedUnfixable})`);
  }
  return summary;
}

/**
 * Heals orphans with the real dispersal transaction (what the retrigger processor runs), several at
 * a time, until `keep` are left, keeping the survivors evenly spread over the id order. Then
 * vacuums the obligations, as autovacuum would after such a burst.
 */
export async function healOrphansDownTo(database: Database, keep: number, concurrency = 8): Promise<number> {
  const ids = (await database.sql<{ id: string }[]>`
    select id from obligations where status = 'settled' and not dispersed order by id`).map((r) => r.id);
  if (ids.length <= keep) return 0;
  const survivors = new Set<number>();
  for (let k = 0; k < keep; k++) survivors.add(Math.floor((k * ids.length) / keep));
  const toHeal = ids.filter((_, i) => !survivors.has(i));
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < toHeal.length) {
        const obligationId = toHeal[next++]!;
        await database.db.transaction(async (tx) => {
          await disperseObligation(tx, obligationId);
          await resolveHealing(tx, obligationId, 1, { actor: "bench-setup" });
        });
      }
    }),
  );
  await database.sql`vacuum (analyze) obligations, dispersal_healing_attempts`;
  return toHeal.length;
}

export interface LedgerDefects extends Record<string, number> {
  /** Accounts whose cumulative totals differ from the sum of their journal lines. */
  accountsOff: number;
  settledWithoutCashReceived: number;
  /** obligations.dispersed ≠ (the obligation has dispersal entries), fee-only dispersals aside. */
  dispersedFlagOff: number;
  /** Dispersed obligations whose entries + fee ≠ the settled amount. */
  conservationOff: number;
}

/** What must hold after every section, whoever wrote the rows (our workers, the ceiling, pg-boss). */
export async function ledgerDefects(database: Database): Promise<LedgerDefects> {
  const [row] = await database.sql<LedgerDefects[]>`
    with lines as (
      select account_id, sum(debit)::bigint as debits, sum(credit)::bigint as credits from (
        select debit_account_id as account_id, amount as debit, 0 as credit from cash_journal_entries
        union all
        select credit_account_id, 0, amount from cash_journal_entries) l
       group by account_id),
    settled as (
      select o.id, o.dispersed,
             coalesce((select sum(j.amount) from cash_journal_entries j where j.obligation_id = o.id and j.entry_type = 'CASH_RECEIVED'), 0) as cash,
             coalesce((select sum(d.amount) from dispersal_entries d where d.obligation_id = o.id), 0)
               + coalesce((select f.amount from servicing_fee_entries f where f.obligation_id = o.id), 0) as paid_out,
             exists (select 1 from dispersal_entries d where d.obligation_id = o.id) as has_entries,
             exists (select 1 from servicing_fee_entries f where f.obligation_id = o.id) as has_fee
        from obligations o where o.status = 'settled')
    select (select count(*)::int from cash_accounts a left join lines l on l.account_id = a.id
             where a.cumulative_debits <> coalesce(l.debits, 0) or a.cumulative_credits <> coalesce(l.credits, 0)) as "accountsOff",
           (select count(*)::int from settled where cash = 0) as "settledWithoutCashReceived",
           (select count(*)::int from settled where has_entries and not dispersed
                                                 or dispersed and not has_entries and not has_fee) as "dispersedFlagOff",
           (select count(*)::int from settled where dispersed and paid_out <> cash) as "conservationOff"`;
  return row!;
}
