// The history data set (issue 22 item 1): five servicer years in a database of its own, built once
// with set-based SQL and reused by later runs. The bulk (lenders, mortgages, positions, obligations,
// their dispersal and fee entries, accounts and journal) is src/db/seed.ts's generator with the
// postings keyed exactly as the service keys them today (postingKeys "current"); on top of it, as
// the service would have written them over the years: returned payments (paid again, or still due)
// with the REVERSALs of the cash and of the allocation they undid, escalations resolved (SUSPENSE
// parked, then cleared) and open (SUSPENSE held), healing rows, audit rows, daily reconciliation runs.
//
// Secondary indexes and unique constraints are dropped before the load and created again from
// their own definitions after it (the schema stays the one drizzle/ migrations made), then the
// whole database is vacuumed and analysed. A marker row (schema bench_history, outside the
// service's tables) holds the shape and HISTORY_VERSION; it is marked complete last, so a build
// interrupted half-way, or of another shape or version, is dropped and built again.
import { statfsSync } from "node:fs";
import postgres from "postgres";
import { connectDatabase, type Database } from "../src/db/client.js";
import { migrateDatabase } from "../src/db/migrate.js";
import { PAYMENT_AUDIT_ACTION, PAYMENT_RETURN_AUDIT_ACTION } from "../src/db/payments.js";
import { seedObligations, type SeedSummary } from "../src/db/seed.js";
import { ADMIN_URL, databaseUrl, onCleanup } from "./benchResources.js";

/** Bump when the generator writes something different: a stored data set of another version is rebuilt. */
export const HISTORY_VERSION = 1;

/** The service account the history's payments came through. */
export const HISTORY_PAYMENT_ACCOUNT = "history-feed";

export interface HistoryShape {
  mortgages: number;
  /** Five years of monthly payments (weekly and bi-weekly mortgages cover fewer years with as many). */
  obligationsPerMortgage: number;
  /** Lenders per mortgage (about one position in twenty sold down to zero units). */
  lendersPerMortgage: { min: number; max: number };
  settledShare: number;
  /** Open escalations: every settled obligation of mortgages whose positions are all at zero units (about this many). */
  openEscalations: number;
  /** Shares of the dispersed obligations (disjoint): payment returned then paid again, returned and still due, escalated then resolved, healed without escalation. */
  returnedRepaidShare: number;
  returnedUnpaidShare: number;
  resolvedEscalationShare: number;
  healedShare: number;
  /** Daily reconciliation runs, all clean. */
  reconciliationRuns: number;
  seed: number;
}

/** The full shape (scale 1): ~50,000 mortgages, 3M obligations (2.8M dispersed), ~51M journal rows; `scale` 0.1 is --quick's. */
export function historyShape(scale = 1): HistoryShape {
  return {
    mortgages: Math.max(20, Math.round(50_000 * scale)),
    obligationsPerMortgage: 60,
    lendersPerMortgage: { min: 2, max: 31 },
    settledShare: 0.93,
    openEscalations: Math.max(10, Math.round(10_000 * scale)),
    returnedRepaidShare: 0.004,
    returnedUnpaidShare: 0.001,
    resolvedEscalationShare: 0.003,
    healedShare: 0.02,
    reconciliationRuns: 5 * 365,
    seed: 2_022,
  };
}

/** The same open escalations with no history around them: the empty database the history is compared with. */
export function emptyShape(history: HistoryShape): HistoryShape {
  const settledPerMortgage = history.obligationsPerMortgage * history.settledShare;
  return {
    ...history,
    mortgages: Math.max(1, Math.round(history.openEscalations / settledPerMortgage)),
    returnedRepaidShare: 0,
    returnedUnpaidShare: 0,
    resolvedEscalationShare: 0,
    healedShare: 0,
    reconciliationRuns: 1,
  };
}

/** Journal rows the shape makes (accrual, cash, fee on ~63% of the dispersed, one payable per active lender). */
export function estimateJournalRows(shape: HistoryShape): number {
  const obligations = shape.mortgages * shape.obligationsPerMortgage;
  const lenders = ((shape.lendersPerMortgage.min + shape.lendersPerMortgage.max) / 2) * 0.95;
  return Math.round(obligations * shape.settledShare * (2.63 + lenders) + obligations * (1 - shape.settledShare) * 1.3);
}

/**
 * Bytes on disk the shape needs, tables and indexes, with a margin of 15 %: measured at 5.1 M journal
 * rows (--history --quick: 4.4 GB) as ~930 bytes a journal row, every table and index included.
 */
export function estimateBytes(shape: HistoryShape): number {
  return Math.round(estimateJournalRows(shape) * 930 * 1.15);
}

export interface HistoryBuild {
  name: string;
  url: string;
  shape: HistoryShape;
  reused: boolean;
  /** When it was built and how long it took. */
  builtAt: string;
  buildMs: number;
  bytes: number;
  counts: HistoryCounts;
}

export interface HistoryCounts {
  obligations: number;
  dispersed: number;
  journalEntries: number;
  dispersalEntries: number;
  openEscalations: number;
  resolvedEscalations: number;
  returnedPayments: number;
  auditRows: number;
  reconciliationRuns: number;
}

/** JSON with keys sorted: jsonb gives the stored shape back with its keys in its own order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}
const sameShape = (a: unknown, b: unknown) => canonical(a) === canonical(b);

/**
 * The history database `name` of this shape: reused when its marker says complete, same shape and
 * version (migrated to the current schema, as the service would migrate it); otherwise dropped and
 * built again, after checking the free disk. Never dropped by the bench's cleanup.
 */
export async function openHistoryDatabase(name: string, shape: HistoryShape, say: (line: string) => void): Promise<{ database: Database; build: HistoryBuild }> {
  const url = databaseUrl(name);
  const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  try {
    const [exists] = await admin<{ n: number }[]>`select count(*)::int as n from pg_database where datname = ${name}`;
    if (exists!.n > 0) {
      const marker = await readMarker(url);
      if (marker?.complete && marker.version === HISTORY_VERSION && sameShape(marker.shape, shape)) {
        await migrateDatabase(url);
        const database = connectDatabase(url, { max: 8, applicationName: "dispersal-bench" });
        onCleanup(`pool of ${name}`, () => database.close());
        say(`  history ${name}: reusing the data set built ${marker.builtAt} in ${(marker.buildMs / 1000).toFixed(0)} s (${gb(marker.bytes)})`);
        return { database, build: { name, url, shape, reused: true, builtAt: marker.builtAt, buildMs: marker.buildMs, bytes: marker.bytes, counts: marker.counts } };
      }
      say(`  history ${name}: ${marker ? (marker.complete ? `another shape or version (v${marker.version})` : "an interrupted build") : "no marker"}: dropping it to build again`);
      await admin.unsafe(`drop database "${name}" with (force)`);
    }
    const needed = estimateBytes(shape);
    const free = await freeDisk(admin);
    if (free.bytes !== undefined && free.bytes < needed) {
      throw new Error(
        `history data set ${name} needs about ${gb(needed)} (${estimateJournalRows(shape).toLocaleString("en")} journal rows) ` +
          `but only ${gb(free.bytes)} is free on ${free.path}: free some disk, or run --history --quick (a tenth)`,
      );
    }
    say(`  history ${name}: building ${shape.mortgages.toLocaleString("en")} mortgages, ~${estimateJournalRows(shape).toLocaleString("en")} journal rows (~${gb(needed)}; ${free.bytes === undefined ? "free disk unknown" : `${gb(free.bytes)} free on ${free.path}`})`);
  } finally {
    await admin.end({ timeout: 5 });
  }

  await migrateDatabase(url); // the service's migrations: the real schema, triggers included
  const database = connectDatabase(url, { max: 8, applicationName: "dispersal-bench" });
  onCleanup(`pool of ${name}`, () => database.close());
  const started = Date.now();
  await database.sql.unsafe(`
    create schema bench_history;
    create table bench_history.marker (version int not null, shape jsonb not null, complete boolean not null default false,
                                       started_at timestamptz not null default now(), build_ms bigint, bytes bigint, counts jsonb)`);
  await database.sql`insert into bench_history.marker (version, shape) values (${HISTORY_VERSION}, ${JSON.stringify(shape)}::jsonb)`;
  const counts = await buildHistory(database, shape, say);
  const buildMs = Date.now() - started;
  const [size] = await database.sql<{ bytes: string }[]>`select pg_database_size(current_database())::text as bytes`;
  const bytes = Number(size!.bytes);
  await database.sql`update bench_history.marker set complete = true, build_ms = ${buildMs}, bytes = ${bytes}, counts = ${JSON.stringify(counts)}::jsonb`;
  say(`  history ${name}: built in ${(buildMs / 1000).toFixed(0)} s, ${gb(bytes)} on disk, ${counts.journalEntries.toLocaleString("en")} journal rows`);
  return { database, build: { name, url, shape, reused: false, builtAt: new Date(started).toISOString(), buildMs, bytes, counts } };
}

async function readMarker(url: string): Promise<{ version: number; shape: unknown; complete: boolean; builtAt: string; buildMs: number; bytes: number; counts: HistoryCounts } | undefined> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [table] = await sql<{ found: boolean }[]>`select to_regclass('bench_history.marker') is not null as found`;
    if (!table!.found) return undefined;
    const [row] = await sql<{ version: number; shape: unknown; complete: boolean; started_at: Date; build_ms: string | null; bytes: string | null; counts: HistoryCounts | null }[]>`
      select version, shape, complete, started_at, build_ms::text, bytes::text, counts from bench_history.marker limit 1`;
    if (!row) return undefined;
    return { version: row.version, shape: row.shape, complete: row.complete, builtAt: row.started_at.toISOString(), buildMs: Number(row.build_ms ?? 0), bytes: Number(row.bytes ?? 0), counts: row.counts ?? ({} as HistoryCounts) };
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Free bytes where Postgres keeps its data (its data directory when this process can see it, else /). */
async function freeDisk(admin: postgres.Sql): Promise<{ bytes: number | undefined; path: string }> {
  const [row] = await admin<{ dir: string | null }[]>`select current_setting('data_directory', true) as dir`.catch(() => [{ dir: null }]);
  for (const path of [row?.dir, "/"].filter((p): p is string => !!p)) {
    try {
      const stats = statfsSync(path);
      return { bytes: Number(stats.bavail) * Number(stats.bsize), path };
    } catch {
      // not visible from here (another machine, or no permission): try the next
    }
  }
  return { bytes: undefined, path: "?" };
}

const gb = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(1)} GB`;

/** Tables whose secondary indexes and unique constraints are dropped for the load and created again after it. */
const LOADED_TABLES = ["lenders", "mortgages", "mortgage_positions", "obligations", "dispersal_entries", "servicing_fee_entries", "cash_accounts", "cash_journal_entries", "audit_log", "dispersal_healing_attempts"];

/**
 * Loads the history into `database` (freshly migrated, empty; its role a superuser, like the
 * seed's bulk path) and returns what it holds.
 */
export async function buildHistory(database: Database, shape: HistoryShape, say: (line: string) => void = () => {}): Promise<HistoryCounts> {
  const { sql } = database;
  const t0 = Date.now();
  const step = (what: string) => say(`    ${what} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  const tables = LOADED_TABLES.map((t) => `'${t}'`).join(", ");
  // Unique constraints first (their indexes go with them), then the remaining non-primary-key indexes.
  const constraints = await sql.unsafe<{ table: string; name: string; def: string }[]>(`
    select c.conrelid::regclass::text as table, c.conname as name, pg_get_constraintdef(c.oid) as def
      from pg_constraint c where c.contype = 'u' and c.conrelid::regclass::text in (${tables})`);
  for (const c of constraints) await sql.unsafe(`alter table ${c.table} drop constraint "${c.name}"`);
  const indexes = await sql.unsafe<{ name: string; def: string }[]>(`
    select i.indexrelid::regclass::text as name, pg_get_indexdef(i.indexrelid) as def
      from pg_index i where not i.indisprimary and i.indrelid::regclass::text in (${tables})`);
  for (const i of indexes) await sql.unsafe(`drop index ${i.name}`);
  step(`dropped ${constraints.length} unique constraints and ${indexes.length} indexes`);

  const obligations = shape.mortgages * shape.obligationsPerMortgage;
  const seeded: SeedSummary = await seedObligations(database, {
    mortgages: shape.mortgages,
    obligations,
    settledShare: shape.settledShare,
    // Every orphan is on a mortgage with no active position: the open escalations, nothing left to heal.
    orphanShare: Math.min(1, shape.openEscalations / (obligations * shape.settledShare)),
    unfixableOrphanShare: 1,
    lendersPerMortgage: shape.lendersPerMortgage,
    withHistoricalDispersals: true,
    postingKeys: "current",
    paymentAccount: HISTORY_PAYMENT_ACCOUNT,
    seed: shape.seed,
    chunkSize: 50_000,
    parallelism: 2,
  });
  step(`seeded ${seeded.obligations.toLocaleString("en")} obligations, ${seeded.journalEntries.toLocaleString("en")} journal rows`);

  await sql.begin(async (tx) => {
    await tx.unsafe(`set local maintenance_work_mem = '512MB'`);
    for (const i of indexes) await tx.unsafe(i.def);
    for (const c of constraints) await tx.unsafe(`alter table ${c.table} add constraint "${c.name}" ${c.def}`);
  });
  step("indexes and unique constraints created again");

  await database.sql.begin(async (tx) => writeEvents(tx, shape));
  step("returned payments, escalations, healing, audit and reconciliation rows");

  await sql.unsafe(`vacuum (analyze)`);
  step("vacuumed and analysed");
  return countHistory(database);
}

export async function countHistory(database: Database): Promise<HistoryCounts> {
  const [row] = await database.sql<Record<keyof HistoryCounts, string>[]>`
    select (select count(*) from obligations)::text as "obligations",
           (select count(*) from obligations where dispersed)::text as "dispersed",
           (select count(*) from cash_journal_entries)::text as "journalEntries",
           (select count(*) from dispersal_entries)::text as "dispersalEntries",
           (select count(*) from dispersal_healing_attempts where status = 'escalated')::text as "openEscalations",
           (select count(*) from dispersal_healing_attempts where status = 'resolved' and escalated_at is not null)::text as "resolvedEscalations",
           (select count(*) from audit_log where action = ${PAYMENT_RETURN_AUDIT_ACTION})::text as "returnedPayments",
           (select count(*) from audit_log)::text as "auditRows",
           (select count(*) from reconciliation_runs)::text as "reconciliationRuns"`;
  return Object.fromEntries(Object.entries(row!).map(([k, v]) => [k, Number(v)])) as unknown as HistoryCounts;
}

/**
 * The years' events on top of the bulk, in one transaction, as the service writes them (keys,
 * accounts, metadata, channels of db/payments.ts, db/dispersals.ts, db/healing.ts).
 *
 * With session_replication_role = replica, like the seed's load: no row triggers run. That leaves
 * the same rows as the triggers would, because (1) every foreign key points at a row written before
 * (checked by the integration test's reconciliation and by the constraints validated nowhere else:
 * see test/integration/historyDataSet.test.ts), (2) the one state a trigger keeps, obligations.dispersed,
 * is written here directly with the value the triggers and the dispersal would leave (a returned
 * payment makes it false, the allocation that follows true again; still due: false), (3) the notify
 * trigger only sends notifications (nobody listens to this database while it is built), and (4) the
 * append-only triggers refuse UPDATE and DELETE of the journal and audit log, which this never does.
 * Account totals are set from the journal's own sums for every account the events touched.
 */
async function writeEvents(tx: postgres.TransactionSql<{ bigint: bigint }>, shape: HistoryShape): Promise<void> {
  await tx.unsafe(`set local session_replication_role = replica`);
  await tx.unsafe(`set local work_mem = '256MB'`);
  const account = HISTORY_PAYMENT_ACCOUNT;
  // Disjoint samples of the dispersed obligations, by a hash of the id.
  const cut = (share: number) => Math.round(share * 100_000);
  const c1 = cut(shape.returnedRepaidShare);
  const c2 = c1 + cut(shape.returnedUnpaidShare);
  const c3 = c2 + cut(shape.resolvedEscalationShare);
  const c4 = c3 + cut(shape.healedShare);
  await tx.unsafe(`
    create temp table ev on commit drop as
    select o.id, o.mortgage_id, o.amount, o.settled_at, b.bucket,
           (select c.id from cash_journal_entries c where c.obligation_id = o.id and c.entry_type = 'CASH_RECEIVED' limit 1) as cash_id
      from obligations o
     cross join lateral (select (hashtextextended(o.id::text, ${shape.seed}) & 2147483647) % 100000 as h) x
     cross join lateral (select case when x.h < ${c1} then 'repaid' when x.h < ${c2} then 'unpaid'
                                     when x.h < ${c3} then 'resolved' when x.h < ${c4} then 'healed' end as bucket) b
     where o.status = 'settled' and o.dispersed and b.bucket is not null`);
  await tx.unsafe(`create index on ev (id)`);
  await tx.unsafe(`analyze ev`);
  await tx.unsafe(`create temp table touched (account_id uuid) on commit drop`);
  // Every journal row written below goes through this: its accounts are recomputed at the end.
  const post = async (select: string) => {
    await tx.unsafe(`
      with posted as (
        insert into cash_journal_entries (entry_type, effective_date, amount, debit_account_id, credit_account_id, idempotency_key,
                                          mortgage_id, obligation_id, lender_id, reverses_entry_id, reason, metadata, actor, channel, created_at)
        ${select}
        returning debit_account_id, credit_account_id)
      insert into touched select debit_account_id from posted union all select credit_account_id from posted`);
  };

  // 1. Returned payments (db/payments.ts returnPaymentIn): the REVERSAL of the CASH_RECEIVED, then
  //    the REVERSALs of the allocation it no longer covers, its entries marked reversed.
  const returned = `select * from ev where bucket in ('repaid', 'unpaid')`;
  await post(`
    select 'REVERSAL', (r.settled_at + interval '5 days')::date, c.amount, c.credit_account_id, c.debit_account_id, 'cash-ledger:reversal:' || c.id,
           c.mortgage_id, c.obligation_id, null::uuid, c.id, 'payment returned: NSF', jsonb_build_object('reference', c.metadata->>'reference'), c.actor, 'api',
           r.settled_at + interval '5 days'
      from (${returned}) r join cash_journal_entries c on c.id = r.cash_id`);
  await post(`
    select 'REVERSAL', (r.settled_at + interval '5 days')::date, p.amount, p.credit_account_id, p.debit_account_id, 'cash-ledger:reversal:' || p.id,
           p.mortgage_id, p.obligation_id, p.lender_id, p.id, 'net settled cash fell below what was allocated: pending allocation reversed',
           jsonb_build_object('allocation', 1), null, 'dispersal', r.settled_at + interval '5 days'
      from (${returned}) r join cash_journal_entries p on p.obligation_id = r.id
     where p.entry_type in ('LENDER_PAYABLE_CREATED', 'SERVICING_FEE_RECOGNIZED')`);
  await tx.unsafe(`update dispersal_entries set status = 'reversed' where obligation_id in (select id from (${returned}) r)`);
  await tx.unsafe(`update servicing_fee_entries set status = 'reversed' where obligation_id in (select id from (${returned}) r)`);
  await tx.unsafe(`
    insert into audit_log (action, actor, resource_type, resource_id, severity, metadata, created_at)
    select '${PAYMENT_RETURN_AUDIT_ACTION}', '${account}', 'obligation', r.id::text, 'warning',
           jsonb_build_object('reference', c.metadata->>'reference', 'amount', r.amount::text, 'reason', 'NSF', 'status', 'due',
                              'reversalEntryId', (select x.id from cash_journal_entries x where x.reverses_entry_id = c.id), 'reallocated', false, 'channel', 'api'),
           r.settled_at + interval '5 days'
      from (${returned}) r join cash_journal_entries c on c.id = r.cash_id`);
  // Still due: the status the return left, no longer dispersed (nothing to disperse until paid again).
  await tx.unsafe(`update obligations set status = 'due', settled_at = null, dispersed = false where id in (select id from ev where bucket = 'unpaid')`);

  // 2. Paid again (db/payments.ts receivePaymentIn): a second CASH_RECEIVED under a new reference,
  //    then allocation 2 as db/dispersals.ts writes it (the same positions, so the same split).
  const repaid = `select * from ev where bucket = 'repaid'`;
  await post(`
    select 'CASH_RECEIVED', (r.settled_at + interval '12 days')::date, c.amount, c.debit_account_id, c.credit_account_id,
           'cash-ledger:cash-received:${account}:' || lower('PAY-' || r.id || '-2'), c.mortgage_id, c.obligation_id, null::uuid, null::uuid,
           'payment received', jsonb_build_object('reference', 'PAY-' || r.id || '-2'), '${account}', 'api', r.settled_at + interval '12 days'
      from (${repaid}) r join cash_journal_entries c on c.id = r.cash_id`);
  await tx.unsafe(`
    insert into audit_log (action, actor, resource_type, resource_id, severity, metadata, created_at)
    select '${PAYMENT_AUDIT_ACTION}', '${account}', 'obligation', r.id::text, 'info',
           jsonb_build_object('reference', 'PAY-' || r.id || '-2', 'amount', r.amount::text, 'status', 'settled', 'outstanding', '0', 'channel', 'api'),
           r.settled_at + interval '12 days'
      from (${repaid}) r`);
  await tx.unsafe(`
    insert into dispersal_entries (obligation_id, mortgage_id, lender_id, amount, ownership_units, total_units, dispersal_date, allocation, status, created_at)
    select d.obligation_id, d.mortgage_id, d.lender_id, d.amount, d.ownership_units, d.total_units, (r.settled_at + interval '12 days')::date, 2, 'pending',
           r.settled_at + interval '12 days'
      from (${repaid}) r join dispersal_entries d on d.obligation_id = r.id and d.allocation = 1`);
  await tx.unsafe(`
    insert into servicing_fee_entries (obligation_id, mortgage_id, amount, annual_rate_bps, principal_basis, allocation, status, created_at)
    select f.obligation_id, f.mortgage_id, f.amount, f.annual_rate_bps, f.principal_basis, 2, 'pending', r.settled_at + interval '12 days'
      from (${repaid}) r join servicing_fee_entries f on f.obligation_id = r.id and f.allocation = 1`);
  await post(`
    select p.entry_type, (r.settled_at + interval '12 days')::date, p.amount, p.debit_account_id, p.credit_account_id,
           case when p.entry_type = 'LENDER_PAYABLE_CREATED' then 'cash-ledger:lender-payable-created:' || p.obligation_id || ':' || p.lender_id || ':2'
                else 'cash-ledger:servicing-fee-recognized:' || p.obligation_id || ':2' end,
           p.mortgage_id, p.obligation_id, p.lender_id, null::uuid, null, p.metadata || jsonb_build_object('allocation', 2), null, 'dispersal',
           r.settled_at + interval '12 days'
      from (${repaid}) r join cash_journal_entries p on p.obligation_id = r.id
     where p.entry_type in ('LENDER_PAYABLE_CREATED', 'SERVICING_FEE_RECOGNIZED')`);
  await tx.unsafe(`update obligations o set settled_at = o.settled_at + interval '12 days' where id in (select id from (${repaid}) r)`);

  // 3. Escalations (db/healing.ts escalateToSuspense): SUSPENSE_ESCALATED of the unallocated cash
  //    (all of it: nothing was allocated) into the obligation's SUSPENSE account. Open: the orphans
  //    of mortgages with no active position (the seed's unfixable ones). Resolved: dispersed since,
  //    after a requeue, with the SUSPENSE posting reversed (resolveHealing).
  await tx.unsafe(`
    create temp table esc on commit drop as
    select o.id, o.mortgage_id, o.amount, o.settled_at, 'open' as state
      from obligations o where o.status = 'settled' and not o.dispersed
    union all
    select id, mortgage_id, amount, settled_at, 'resolved' from ev where bucket = 'resolved'`);
  await tx.unsafe(`
    insert into cash_accounts (family, mortgage_id, obligation_id) select 'SUSPENSE', e.mortgage_id, e.id from esc e`);
  await post(`
    select 'SUSPENSE_ESCALATED', (e.settled_at + interval '1 hour')::date, e.amount, s.id, rcv.id, 'suspense-escalation:' || e.id,
           e.mortgage_id, e.id, null::uuid, null::uuid, 'no active positions: mortgage ' || e.mortgage_id || ' has no lender with units > 0',
           jsonb_build_object('netCash', e.amount::text, 'allocated', '0', 'suspenseBefore', '0', 'plan', 'park'), 'dispersal-healing', 'dispersal-healing',
           e.settled_at + interval '1 hour'
      from esc e
      join cash_accounts s on s.family = 'SUSPENSE' and s.obligation_id = e.id
      join cash_accounts rcv on rcv.family = 'BORROWER_RECEIVABLE' and rcv.obligation_id = e.id`);
  await post(`
    select 'REVERSAL', (e.settled_at + interval '3 days')::date, j.amount, j.credit_account_id, j.debit_account_id, 'cash-ledger:reversal:' || j.id,
           e.mortgage_id, e.id, null::uuid, j.id, 'escalated obligation dispersed: suspense cleared', null::jsonb, 'ops-history', 'dispersal-healing',
           e.settled_at + interval '3 days'
      from esc e join cash_journal_entries j on j.obligation_id = e.id and j.entry_type = 'SUSPENSE_ESCALATED'
     where e.state = 'resolved'`);
  await tx.unsafe(`
    insert into requeue_requests (obligation_id, requested_by, channel, reason, status, approved_by, decided_at, round, created_at)
    select e.id, 'ops-history', 'ops-page', 'positions corrected by the lender desk', 'carried_out', 'ops-history-approver',
           e.settled_at + interval '2 days', 1, e.settled_at + interval '1 day'
      from esc e where e.state = 'resolved'`);
  await tx.unsafe(`
    insert into dispersal_healing_attempts (obligation_id, attempt_count, status, last_error, last_attempt_at, escalated_at, resolved_at, updated_at,
                                            requeue_count, requeue_request_id, created_at)
    select e.id, case when e.state = 'open' then 3 else 1 end, case when e.state = 'open' then 'escalated' else 'resolved' end,
           'no active positions: mortgage ' || e.mortgage_id || ' has no lender with units > 0',
           e.settled_at + interval '1 hour', e.settled_at + interval '1 hour',
           case when e.state = 'resolved' then e.settled_at + interval '3 days' end,
           e.settled_at + case when e.state = 'resolved' then interval '3 days' else interval '1 hour' end,
           case when e.state = 'resolved' then 1 else 0 end, q.id, e.settled_at
      from esc e left join requeue_requests q on q.obligation_id = e.id and q.status = 'carried_out'`);
  await tx.unsafe(`
    insert into audit_log (action, actor, resource_type, resource_id, severity, metadata, created_at)
    select 'dispersal.self_healing_escalated', 'dispersal-healing', 'obligation', e.id::text, 'error',
           jsonb_build_object('amount', e.amount::text, 'settledAmount', e.amount::text, 'allocated', '0', 'suspensePosting', 'park',
                              'reason', 'no active positions: mortgage ' || e.mortgage_id || ' has no lender with units > 0'),
           e.settled_at + interval '1 hour'
      from esc e
    union all
    select 'dispersal.self_healing_requeued', 'ops-history', 'obligation', e.id::text, 'info',
           jsonb_build_object('reason', 'positions corrected by the lender desk', 'approvedBy', 'ops-history-approver', 'round', 1), e.settled_at + interval '2 days'
      from esc e where e.state = 'resolved'
    union all
    select 'dispersal.self_healing_resolved', 'ops-history', 'obligation', e.id::text, 'info',
           jsonb_build_object('previousStatus', 'requeued', 'attempt', 1, 'approvedBy', 'ops-history-approver'), e.settled_at + interval '3 days'
      from esc e where e.state = 'resolved'`);

  // 4. Orphans the healer dispersed on its own (a resolved healing row, never escalated).
  await tx.unsafe(`
    insert into dispersal_healing_attempts (obligation_id, attempt_count, status, last_attempt_at, resolved_at, updated_at, created_at)
    select id, 1, 'resolved', settled_at + interval '30 seconds', settled_at + interval '30 seconds', settled_at + interval '30 seconds', settled_at
      from ev where bucket = 'healed'`);

  // 5. The intake's audit row of every payment received (db/payments.ts), one per CASH_RECEIVED of the bulk.
  await tx.unsafe(`
    insert into audit_log (action, actor, resource_type, resource_id, severity, metadata, created_at)
    select '${PAYMENT_AUDIT_ACTION}', c.actor, 'obligation', c.obligation_id::text, 'info',
           jsonb_build_object('reference', c.metadata->>'reference', 'amount', c.amount::text, 'journalEntryId', c.id, 'channel', 'api'),
           c.effective_date::timestamptz + interval '9 hours'
      from cash_journal_entries c where c.entry_type = 'CASH_RECEIVED' and c.channel = 'api' and c.idempotency_key not like '%-2'`);

  // 6. A clean daily reconciliation for every day of the years.
  await tx.unsafe(`
    insert into reconciliation_runs (started_at, finished_at, status, defect_count, findings, created_at)
    select now() - make_interval(days => d) + interval '2 hours', now() - make_interval(days => d) + interval '2 hours 1 minute', 'clean', 0,
           (select jsonb_object_agg(k, jsonb_build_object('count', 0, 'sample', '[]'::jsonb))
              from unnest(array['staleOrphans', 'rejectedOrphans', 'conservationDefects', 'payablesMismatch', 'feeMismatch', 'overAllocated',
                                'settledWithoutCash', 'escalatedSuspenseMismatch', 'openSuspenseMismatch', 'resolvedSuspenseNotCleared',
                                'accountTotalsMismatch', 'duplicateIdempotencyKeys']) k),
           now() - make_interval(days => d) + interval '2 hours'
      from generate_series(1, ${shape.reconciliationRuns}) d`);

  // The accounts the events moved: their totals are the journal's sums.
  await tx.unsafe(`
    update cash_accounts a
       set cumulative_debits = coalesce((select sum(j.amount) from cash_journal_entries j where j.debit_account_id = a.id), 0),
           cumulative_credits = coalesce((select sum(j.amount) from cash_journal_entries j where j.credit_account_id = a.id), 0)
     where a.id in (select distinct account_id from touched)`);
}
