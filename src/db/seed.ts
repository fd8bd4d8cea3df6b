// Bulk generation of mortgages, lenders, positions and obligations with a consistent ledger, for
// tests, the benchmark and `dispersal seed --demo`. Everything is written by set-based SQL, a few
// statements per chunk of obligations, so that a million obligations load in seconds.
//
// Values (statuses, amounts, units, which obligations are orphans) come from hashes of each row's
// ordinal and the seed, so the same seed gives the same data set whatever the chunking or the
// parallelism. Ids are a random per-call tag followed by the row's ordinal: seeding twice into one
// database adds a second, separate data set (mortgage references `SEED-<tag>-…`).
import { randomBytes } from "node:crypto";
import type postgres from "postgres";
import type { Database } from "./client.js";

export interface SeedOptions {
  mortgages: number;
  /** Obligations per mortgage (default 12); or give the total as `obligations`. */
  obligationsPerMortgage?: number;
  /** Obligations in all, spread evenly over the mortgages. */
  obligations?: number;
  /** Fraction of obligations that are settled (0..1, default 0.6). */
  settledShare?: number;
  /** Fraction of the settled obligations left without dispersal entries (0..1, default 0). */
  orphanShare?: number;
  /** Fraction of the orphans on mortgages whose positions all have zero units: they can only be escalated (0..1, default 0). */
  unfixableOrphanShare?: number;
  /** Lenders holding a position in each mortgage (default 1..40). */
  lendersPerMortgage?: { min: number; max: number };
  /** Same seed, same data set (but fresh ids). Random when omitted; the summary says which was used. */
  seed?: number;
  /**
   * Settled obligations that are not orphans get their dispersal as disperseObligation would have
   * written it: entries, fee entry and postings (default true). Without it nothing is dispersed and
   * every settled obligation is an orphan.
   */
  withHistoricalDispersals?: boolean;
  /**
   * The idempotency keys, metadata, actor and channel of the payment and allocation postings:
   * `before` (default) as journals written before allocations were numbered (keys by entry id, no
   * metadata); `current` exactly as the service writes them today — CASH_RECEIVED from the payments
   * intake of service account `paymentAccount` (key `cash-ledger:cash-received:<account>:<reference>`,
   * metadata.reference, channel `api`), payables and fees of allocation 1 (keys
   * `…:<obligation>:<lender>:1` / `…:<obligation>:1`, metadata.allocation and the units).
   */
  postingKeys?: "before" | "current";
  /** The service account the `current` payments were received through (default `history-feed`). */
  paymentAccount?: string;
  /** Obligations per transaction (default 100,000). */
  chunkSize?: number;
  /** Chunks written at the same time, each on a connection of its own (default 2). */
  parallelism?: number;
  onProgress?: (obligationsWritten: number) => void;
}

export interface SeedSummary {
  obligations: number;
  settled: number;
  /** Settled obligations without dispersal entries (the healer's work), unfixable ones included. */
  orphans: number;
  /** Orphans on mortgages whose positions all have zero units. */
  unfixableOrphans: number;
  mortgages: number;
  lenders: number;
  positions: number;
  dispersalEntries: number;
  journalEntries: number;
  /** Mortgage references of this data set start with `SEED-<tag>-`. */
  tag: string;
  seed: number;
  ms: number;
}

/** A realistic small data set: 3,000 obligations on 200 mortgages, ~2% of the settled ones orphaned, a few unfixable. */
export function seedDemo(database: Database, options: Partial<SeedOptions> = {}): Promise<SeedSummary> {
  return seedObligations(database, {
    mortgages: 200,
    obligationsPerMortgage: 15,
    settledShare: 0.7,
    orphanShare: 0.02,
    unfixableOrphanShare: 0.15,
    lendersPerMortgage: { min: 1, max: 12 },
    withHistoricalDispersals: true,
    seed: 2_024,
    ...options,
  });
}

interface Plan {
  tag: string;
  seed: number;
  mortgages: number;
  obligations: number;
  settledShare: number;
  /** Probability that a settled obligation on a mortgage with active positions is an orphan. */
  fixableOrphanProbability: number;
  /** Mortgages whose positions all have zero units, spread evenly over the ordinals. */
  zeroMortgages: number;
  lendersMin: number;
  lendersMax: number;
  lenderPool: number;
  historical: boolean;
  postingKeys: "before" | "current";
  paymentAccount: string;
  /** Load without row triggers and foreign-key checks (superusers only; see seedChunk). */
  skipTriggers: boolean;
}

interface ChunkCounts {
  obligations: number;
  settled: number;
  orphans: number;
  unfixable_orphans: number;
  positions: number;
  dispersal_entries: number;
  journal_entries: number;
}

export async function seedObligations(database: Database, options: SeedOptions): Promise<SeedSummary> {
  const started = performance.now();
  const [role] = await database.sql<{ superuser: boolean }[]>`select current_setting('is_superuser') = 'on' as superuser`;
  const plan = { ...planSeed(options), skipTriggers: role!.superuser };
  const chunkSize = positiveInteger("chunkSize", options.chunkSize ?? 100_000);
  const parallelism = positiveInteger("parallelism", options.parallelism ?? 2);

  for (let from = 0; from < plan.lenderPool; from += 500_000) {
    const to = Math.min(plan.lenderPool, from + 500_000);
    await database.sql.unsafe(`
      insert into lenders (id, name)
      select ${id(plan, "lender", "i")}, 'Lender ${plan.tag}-' || i from generate_series(${from}, ${to - 1}) i`);
  }

  // Chunks are ranges of whole mortgages, so that no two chunks touch the same account: each
  // chunk writes its mortgages' accounts with their final totals, and chunks can run in parallel.
  const mortgagesPerChunk = Math.max(1, Math.floor(chunkSize / Math.max(1, plan.obligations / plan.mortgages)));
  const chunks: Array<[number, number]> = [];
  for (let m = 0; m < plan.mortgages; m += mortgagesPerChunk) chunks.push([m, Math.min(plan.mortgages, m + mortgagesPerChunk)]);

  const totals: ChunkCounts = { obligations: 0, settled: 0, orphans: 0, unfixable_orphans: 0, positions: 0, dispersal_entries: 0, journal_entries: 0 };
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < chunks.length) {
      const [from, to] = chunks[next++]!;
      try {
        const counts = await database.sql.begin((tx) => seedChunk(tx, plan, from, to));
        for (const key of Object.keys(totals) as Array<keyof ChunkCounts>) totals[key] += Number(counts[key]);
      } catch (error) {
        failed = true; // the other workers stop after their current chunk
        throw error;
      }
      options.onProgress?.(totals.obligations);
    }
  };
  // allSettled: a failure returns only once every other chunk in flight has ended too.
  const outcomes = await Promise.allSettled(Array.from({ length: Math.min(parallelism, chunks.length) }, worker));
  for (const outcome of outcomes) if (outcome.status === "rejected") throw outcome.reason;

  return {
    obligations: totals.obligations,
    settled: totals.settled,
    orphans: totals.orphans,
    unfixableOrphans: totals.unfixable_orphans,
    mortgages: plan.mortgages,
    lenders: plan.lenderPool,
    positions: totals.positions,
    dispersalEntries: totals.dispersal_entries,
    journalEntries: totals.journal_entries,
    tag: plan.tag,
    seed: plan.seed,
    ms: Math.round(performance.now() - started),
  };
}

function planSeed(options: SeedOptions): Omit<Plan, "skipTriggers"> {
  const mortgages = positiveInteger("mortgages", options.mortgages);
  const obligations =
    options.obligations !== undefined
      ? nonNegativeInteger("obligations", options.obligations)
      : mortgages * positiveInteger("obligationsPerMortgage", options.obligationsPerMortgage ?? 12);
  const settledShare = share("settledShare", options.settledShare ?? 0.6);
  const orphanShare = share("orphanShare", options.orphanShare ?? 0);
  const unfixableShare = share("unfixableOrphanShare", options.unfixableOrphanShare ?? 0);
  const lendersMin = positiveInteger("lendersPerMortgage.min", options.lendersPerMortgage?.min ?? 1);
  const lendersMax = positiveInteger("lendersPerMortgage.max", options.lendersPerMortgage?.max ?? 40);
  if (lendersMax < lendersMin || lendersMax > 10_000) throw new RangeError("lendersPerMortgage must have 1 <= min <= max <= 10000");
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  if (!Number.isSafeInteger(seed) || seed < 0 || seed >= 2 ** 40) throw new RangeError("seed must be an integer in 0..2^40");

  const settledPerMortgage = (obligations / mortgages) * settledShare;
  const targetOrphans = obligations * settledShare * orphanShare;
  const targetUnfixable = targetOrphans * unfixableShare;
  const zeroMortgages =
    targetUnfixable <= 0 || settledPerMortgage === 0 ? 0 : Math.min(mortgages, Math.max(1, Math.round(targetUnfixable / settledPerMortgage)));
  const expectedUnfixable = zeroMortgages * settledPerMortgage;
  const settledElsewhere = obligations * settledShare - expectedUnfixable;
  const fixableOrphanProbability =
    settledElsewhere <= 0 ? 0 : Math.min(1, Math.max(0, (targetOrphans - expectedUnfixable) / settledElsewhere));

  return {
    tag: randomBytes(4).toString("hex"),
    seed,
    mortgages,
    obligations,
    settledShare,
    fixableOrphanProbability,
    zeroMortgages,
    lendersMin,
    lendersMax,
    // Lenders hold positions in about four mortgages each, as a real book of investors does.
    lenderPool: Math.max(lendersMax, Math.ceil((mortgages * (lendersMin + lendersMax)) / 2 / 4)),
    historical: options.withHistoricalDispersals ?? true,
    postingKeys: options.postingKeys ?? "before",
    paymentAccount: options.paymentAccount ?? "history-feed",
  };
}

/** The independent random draws, one hash salt each. */
const DRAW = {
  frequency: 1,
  principal: 2,
  feeRate: 3,
  interestRate: 4,
  lenderCount: 5,
  lenderOffset: 6,
  soldOut: 7,
  weight: 8,
  type: 9,
  settled: 10,
  status: 11,
  orphan: 12,
  amount: 13,
  settleDelay: 14,
  partial: 15,
  dueAhead: 16,
} as const;

/** A uniform draw in [0, 1) from a row ordinal: the same for the same seed, ordinal and purpose. */
function draw(plan: Plan, ordinal: string, purpose: keyof typeof DRAW): string {
  return `((hashint8extended((${ordinal})::int8, ${plan.seed * 100 + DRAW[purpose]}) & 9007199254740991)::float8 / 9007199254740992.0)`;
}

/** Row kinds, each a block of the data set's id space. */
const KIND = {
  mortgage: "0001",
  lender: "0002",
  obligation: "0003",
  dispersalEntry: "0004",
  receivableAccount: "0011",
  trustCashAccount: "0012",
  accrualAccount: "0013",
  allocationAccount: "0014",
  revenueAccount: "0015",
  payableAccount: "0016",
  accruedPosting: "0021",
  cashPosting: "0022",
  payablePosting: "0023",
  feePosting: "0024",
} as const;

/** Lender slots per mortgage in ordinals (m × SLOTS + j): more than lendersPerMortgage.max may be. */
const SLOTS = 100_003;

/**
 * The uuid of a row: the data set's tag, its kind, its ordinal (< 2^48). Every statement finds the
 * same row again without a join, and ids grow with the ordinal, so that each index is appended to
 * instead of written at random places: with random ids a million obligations load three times slower.
 */
function id(plan: Plan, kind: keyof typeof KIND, ordinal: string): string {
  return `('${plan.tag}-${KIND[kind]}-4000-8000-' || lpad(to_hex((${ordinal})::int8), 12, '0'))::uuid`;
}

async function seedChunk(tx: postgres.TransactionSql<{ bigint: bigint }>, plan: Plan, fromMortgage: number, toMortgage: number): Promise<ChunkCounts> {
  const { mortgages: M, obligations: N } = plan;
  // A bulk load: losing the last commits in a crash is acceptable; sorting the splits in memory is faster.
  // Foreign-key checks are row triggers and cost more than the insert itself; every row referenced
  // here is written by this chunk or before it (lenders), and the one trigger that matters
  // (obligations.dispersed) is written directly, so a superuser may load without them.
  await tx.unsafe(`set local synchronous_commit = off`);
  await tx.unsafe(`set local work_mem = '256MB'`);
  if (plan.skipTriggers) await tx.unsafe(`set local session_replication_role = replica`);

  await tx.unsafe(`
    create temp table seed_m on commit drop as
    with base as (
      select m,
             (m::int8 * ${N} + ${M} - 1) / ${M} as first_obligation,
             ((m::int8 + 1) * ${N} + ${M} - 1) / ${M} - (m::int8 * ${N} + ${M} - 1) / ${M} as obligation_count,
             ((m::int8 + 1) * ${plan.zeroMortgages}) / ${M} > (m::int8 * ${plan.zeroMortgages}) / ${M} as zero_units,
             ${draw(plan, "m", "frequency")} as f
        from generate_series(${fromMortgage}, ${toMortgage - 1}) m)
    select m, ${id(plan, "mortgage", "m")} as id, first_obligation, obligation_count, zero_units,
           'SEED-${plan.tag}-' || lpad(m::text, 7, '0') as reference,
           (500 + floor(${draw(plan, "m", "principal")} * 19500))::int8 * 10000 as principal,
           (array[0, 25, 50, 50, 75, 100, 100, 125, 150, 200])[1 + floor(${draw(plan, "m", "feeRate")} * 10)::int] as servicing_fee_bps,
           case when f < 0.55 then 'monthly' when f < 0.75 then 'bi_weekly' when f < 0.88 then 'accelerated_bi_weekly' else 'weekly' end as payment_frequency,
           case when f < 0.55 then 12 when f < 0.88 then 26 else 52 end as periods,
           300 + floor(${draw(plan, "m", "interestRate")} * 500)::int as interest_bps,
           ${plan.lendersMin} + floor(${draw(plan, "m", "lenderCount")} * ${plan.lendersMax - plan.lendersMin + 1})::int as lender_count,
           floor(${draw(plan, "m", "lenderOffset")} * ${plan.lenderPool})::int8 as lender_offset
      from base`);
  await tx.unsafe(`
    insert into mortgages (id, reference, principal, servicing_fee_bps, payment_frequency)
    select id, reference, principal, servicing_fee_bps, payment_frequency from seed_m`);

  // 10,000 units per mortgage split by random weights; about one position in twenty was sold down to
  // zero units. Consecutive lenders of the pool, from a random offset: distinct within a mortgage.
  await tx.unsafe(`
    create temp table seed_p on commit drop as
    with slots as (
      select s.m, s.id as mortgage_id, s.zero_units, j, (s.lender_offset + j) % ${plan.lenderPool} as lender_index,
             case when j > 0 and ${draw(plan, `s.m * ${SLOTS}::int8 + j`, "soldOut")} < 0.05 then 0
                  else 1 + floor(${draw(plan, `s.m * ${SLOTS}::int8 + j`, "weight")} * 99)::int8 end as weight
        from seed_m s cross join lateral generate_series(0, s.lender_count - 1) j),
    floored as (
      select *, (10000 * weight) / (sum(weight) over (partition by m))::int8 as floor_units from slots)
    select m, j, m * ${SLOTS}::int8 + j as slot, mortgage_id, ${id(plan, "lender", "lender_index")} as lender_id,
           case when zero_units then 0
                when j = 0 then floor_units + 10000 - (sum(floor_units) over (partition by m))::int8
                else floor_units end::int8 as units
      from floored`);
  await tx.unsafe(`
    insert into mortgage_positions (mortgage_id, lender_id, units) select mortgage_id, lender_id, units from seed_p`);

  // Obligation g belongs to mortgage floor(g × M / N): contiguous and even, so whole mortgages make a chunk.
  await tx.unsafe(`
    create temp table seed_o on commit drop as
    with base as (
      select g, s.m, s.id as mortgage_id, s.zero_units, s.principal, s.servicing_fee_bps, s.payment_frequency, s.periods,
             s.interest_bps, s.obligation_count - (g - s.first_obligation) as periods_ago,
             ${draw(plan, "g", "type")} as t, ${draw(plan, "g", "amount")} as a,
             ${draw(plan, "g", "settled")} < ${plan.settledShare} as settled, ${draw(plan, "g", "status")} as st
        from generate_series((${fromMortgage}::int8 * ${N} + ${M} - 1) / ${M}, (${toMortgage}::int8 * ${N} + ${M} - 1) / ${M} - 1) g
        join seed_m s on s.m = (g * ${M}) / ${N}),
    typed as (
      select *,
             case when t < 0.70 then 'regular_interest' when t < 0.88 then 'principal_repayment'
                  when t < 0.95 then 'late_fee' else 'arrears_cure' end as type,
             case when settled then 'settled' when st < 0.30 then 'upcoming' when st < 0.50 then 'due'
                  when st < 0.70 then 'overdue' when st < 0.85 then 'partially_settled' else 'waived' end as status
        from base),
    dated as (
      -- one period apart, the last one a period ago; upcoming ones fall due one to three periods ahead
      select *, case when payment_frequency = 'monthly' then (current_date - make_interval(months => due_in::int))::date
                     else current_date - (due_in * (case when periods = 52 then 7 else 14 end))::int end as due_date
        from (select *, case when status = 'upcoming' then -1 - floor(${draw(plan, "g", "dueAhead")} * 3)::int else periods_ago end as due_in
                from typed) t),
    valued as (
      select *,
             greatest(1, case type
               when 'regular_interest' then (principal * interest_bps * 2 + 10000 * periods) / (20000 * periods)
               when 'principal_repayment' then principal / (periods * (20 + floor(a * 10)::int))
               when 'late_fee' then 2500 + floor(a * 7500)::int8
               else 20000 + floor(a * 480000)::int8 end)::int8 as amount,
             settled and (zero_units or ${draw(plan, "g", "orphan")} < ${plan.fixableOrphanProbability}) as orphan
        from dated)
    select ${id(plan, "obligation", "g")} as id, g, m, mortgage_id, type, amount, status, due_date,
           case when settled then due_date + make_interval(hours => floor(${draw(plan, "g", "settleDelay")} * 72)::int) end as settled_at,
           orphan, settled and zero_units as unfixable,
           status in ('due', 'overdue', 'partially_settled', 'settled') as accrued,
           case when settled then amount
                when status = 'partially_settled' and amount > 1 then 1 + floor(${draw(plan, "g", "partial")} * (amount - 1))::int8
                else 0 end as cash,
           ${plan.historical} and settled and not orphan as dispersed,
           case when ${plan.historical} and settled and not orphan and type = 'regular_interest'
                then least(amount, (principal * servicing_fee_bps * 2 + 10000 * periods) / (20000 * periods)) else 0 end as fee,
           principal, servicing_fee_bps
      from valued`);
  await tx.unsafe(`analyze seed_o`);
  await tx.unsafe(`
    insert into obligations (id, mortgage_id, type, amount, status, due_date, settled_at, dispersed)
    select id, mortgage_id, type, amount, status, due_date, settled_at, dispersed from seed_o`);

  // The historical dispersals, split as domain/shares.ts does: floor of the pro-rata share, then one
  // leftover cent each to the largest remainders, ties by lender id ascending. obligations.dispersed
  // is already true for these, so the dispersal_entries trigger finds nothing left to update.
  await tx.unsafe(`
    create temp table seed_d on commit drop as
    with parts as (
      select o.m, o.g, p.j, p.slot, o.id as obligation_id, o.mortgage_id, p.lender_id, p.units, o.settled_at, o.cash - o.fee as distributable,
             (sum(p.units) over (partition by o.id))::int8 as total_units
        from seed_o o join seed_p p on p.m = o.m and p.units > 0
       where o.dispersed and o.cash > o.fee),
    floored as (
      select *, (distributable * units) / total_units as base, (distributable * units) % total_units as remainder from parts),
    ranked as (
      select *, distributable - (sum(base) over (partition by obligation_id))::int8 as leftover,
             row_number() over (partition by obligation_id order by remainder desc, lender_id) as place
        from floored)
    select ${id(plan, "dispersalEntry", `g * ${SLOTS}::int8 + j`)} as id, g * ${SLOTS}::int8 + j as ordinal, m, slot, obligation_id, mortgage_id, lender_id, units, total_units, settled_at::date as dispersal_date,
           base + (place <= leftover)::int as amount
      from ranked
     where base + (place <= leftover)::int > 0`);
  await tx.unsafe(`
    insert into dispersal_entries (id, obligation_id, mortgage_id, lender_id, amount, ownership_units, total_units, dispersal_date)
    select id, obligation_id, mortgage_id, lender_id, amount, units, total_units, dispersal_date from seed_d`);
  await tx.unsafe(`
    insert into servicing_fee_entries (obligation_id, mortgage_id, amount, annual_rate_bps, principal_basis)
    select id, mortgage_id, fee, servicing_fee_bps, principal from seed_o where fee > 0`);

  // Accounts with their final totals (no chunk shares an account with another), then their journal lines.
  const receivable = id(plan, "receivableAccount", "o.g");
  const trustCash = id(plan, "trustCashAccount", "o.m");
  const accrual = id(plan, "accrualAccount", "o.m");
  const allocation = id(plan, "allocationAccount", "o.m");
  const revenue = id(plan, "revenueAccount", "o.m");
  const payable = id(plan, "payableAccount", "d.slot");
  await tx.unsafe(`
    insert into cash_accounts (id, family, subaccount, mortgage_id, obligation_id, lender_id, cumulative_debits, cumulative_credits)
    select ${receivable}, 'BORROWER_RECEIVABLE', null::text, null::uuid, o.id, null::uuid,
           case when o.accrued then o.amount else 0 end, o.cash
      from seed_o o where o.accrued or o.cash > 0
    union all
    select ${trustCash}, 'TRUST_CASH', null, o.mortgage_id, null, null, sum(o.cash)::int8, 0
      from seed_o o group by o.m, o.mortgage_id having sum(o.cash) > 0
    union all
    select ${accrual}, 'CONTROL', 'ACCRUAL', o.mortgage_id, null, null, 0, sum(o.amount)::int8
      from seed_o o where o.accrued group by o.m, o.mortgage_id
    union all
    select ${allocation}, 'CONTROL', 'ALLOCATION', o.mortgage_id, null, null, sum(o.cash)::int8, 0
      from seed_o o where o.dispersed group by o.m, o.mortgage_id
    union all
    select ${revenue}, 'SERVICING_REVENUE', null, o.mortgage_id, null, null, 0, sum(o.fee)::int8
      from seed_o o where o.fee > 0 group by o.m, o.mortgage_id
    union all
    select ${payable}, 'LENDER_PAYABLE', null, d.mortgage_id, null, d.lender_id, 0, sum(d.amount)::int8
      from seed_d d group by d.slot, d.mortgage_id, d.lender_id`);
  const current = plan.postingKeys === "current";
  const account = plan.paymentAccount.replace(/'/g, "''");
  // The payment reference of obligation g's cash (PAY-<tag>-<g>), keyed in lower case as the intake keys it.
  const reference = `'PAY-${plan.tag}-' || o.g`;
  const cash = current
    ? `'cash-ledger:cash-received:${account.toLowerCase()}:' || lower(${reference}), o.mortgage_id, o.id, null, 'payment received', jsonb_build_object('reference', ${reference}), '${account}', 'api'`
    : `'cash-ledger:cash-received:seed-' || o.id, o.mortgage_id, o.id, null, null::text, null::jsonb, 'seed', 'seed'`;
  const payableKey = current ? `'cash-ledger:lender-payable-created:' || d.obligation_id || ':' || d.lender_id || ':1'` : `'cash-ledger:lender-payable-created:' || d.id`;
  const payableMetadata = current ? `jsonb_build_object('allocation', 1, 'ownershipUnits', d.units::text, 'totalUnits', d.total_units::text)` : "null";
  const feeKey = current ? `'cash-ledger:servicing-fee-recognized:' || o.id || ':1'` : `'cash-ledger:servicing-fee-recognized:' || o.id`;
  const feeMetadata = current ? `jsonb_build_object('allocation', 1)` : "null";
  const dispersalActor = current ? "null" : "'seed'";
  await tx.unsafe(`
    insert into cash_journal_entries (id, entry_type, effective_date, amount, debit_account_id, credit_account_id, idempotency_key,
                                      mortgage_id, obligation_id, lender_id, reason, metadata, actor, channel)
    select ${id(plan, "accruedPosting", "o.g")}, 'OBLIGATION_ACCRUED', o.due_date, o.amount, ${receivable}, ${accrual},
           'cash-ledger:obligation-accrued:' || o.id, o.mortgage_id, o.id, null::uuid, null::text, null::jsonb, 'seed', 'seed'
      from seed_o o where o.accrued
    union all
    select ${id(plan, "cashPosting", "o.g")}, 'CASH_RECEIVED', coalesce(o.settled_at::date, o.due_date), o.cash, ${trustCash}, ${receivable},
           ${cash}
      from seed_o o where o.cash > 0
    union all
    select ${id(plan, "payablePosting", "d.ordinal")}, 'LENDER_PAYABLE_CREATED', d.dispersal_date, d.amount, ${id(plan, "allocationAccount", "d.m")}, ${payable},
           ${payableKey}, d.mortgage_id, d.obligation_id, d.lender_id, null, ${payableMetadata}, ${dispersalActor}, 'dispersal'
      from seed_d d
    union all
    select ${id(plan, "feePosting", "o.g")}, 'SERVICING_FEE_RECOGNIZED', o.settled_at::date, o.fee, ${allocation}, ${revenue},
           ${feeKey}, o.mortgage_id, o.id, null, null, ${feeMetadata}, ${dispersalActor}, 'dispersal'
      from seed_o o where o.fee > 0`);

  const [counts] = await tx.unsafe<ChunkCounts[]>(`
    select count(*)::int as obligations,
           count(*) filter (where status = 'settled')::int as settled,
           count(*) filter (where status = 'settled' and not dispersed)::int as orphans,
           count(*) filter (where unfixable)::int as unfixable_orphans,
           (select count(*) from seed_p)::int as positions,
           (select count(*) from seed_d)::int as dispersal_entries,
           (count(*) filter (where accrued) + count(*) filter (where cash > 0) + count(*) filter (where fee > 0)
             + (select count(*) from seed_d))::int as journal_entries
      from seed_o`);
  return counts!;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}

function nonNegativeInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
  return value;
}

function share(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0 || value > 1) throw new RangeError(`${name} must be between 0 and 1, got ${value}`);
  return value;
}
