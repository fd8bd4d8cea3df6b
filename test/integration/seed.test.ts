import { describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { sql } from "drizzle-orm";
import { connectDatabase, type Database } from "../../src/db/client.js";
import { disperseObligation } from "../../src/db/dispersals.js";
import { runReconciliation } from "../../src/db/reconciliation.js";
import { seedDemo, seedObligations, type SeedSummary } from "../../src/db/seed.js";
import { NoActivePositionsError } from "../../src/domain/errors.js";
import { servicingFeeForPeriod, type ObligationType, type PaymentFrequency } from "../../src/domain/servicingFee.js";
import { splitProRata } from "../../src/domain/shares.js";
import { testDb } from "../helpers/testDb.js";

const database = await testDb();

const seeded = await seedObligations(database, {
  mortgages: 60,
  obligationsPerMortgage: 24,
  settledShare: 0.7,
  orphanShare: 0.1,
  unfixableOrphanShare: 0.2,
  lendersPerMortgage: { min: 1, max: 40 },
  seed: 42,
  chunkSize: 300, // several chunks, written two at a time
});

/** Rows of one data set: its mortgages' references start with SEED-<tag>-. */
const ofDataSet = (summary: SeedSummary) => sql`(select id from mortgages where reference like ${`SEED-${summary.tag}-%`})`;

async function one<T extends Record<string, unknown>>(query: ReturnType<typeof sql>, db: Database = database): Promise<T> {
  const [row] = await db.db.execute<T>(query);
  return row as T;
}

async function countsIn(summary: SeedSummary, db: Database = database) {
  const mortgages = ofDataSet(summary);
  const row = await one<Record<string, bigint>>(
    sql`
    select (select count(*) from obligations where mortgage_id in ${mortgages}) as obligations,
           (select count(*) from obligations where mortgage_id in ${mortgages} and status = 'settled') as settled,
           (select count(*) from obligations o where o.mortgage_id in ${mortgages} and o.status = 'settled'
               and not exists (select 1 from dispersal_entries d where d.obligation_id = o.id)
               and not exists (select 1 from servicing_fee_entries f where f.obligation_id = o.id)) as orphans,
           (select count(*) from obligations o where o.mortgage_id in ${mortgages} and o.status = 'settled'
               and not exists (select 1 from dispersal_entries d where d.obligation_id = o.id)
               and not exists (select 1 from mortgage_positions p where p.mortgage_id = o.mortgage_id and p.units > 0)) as unfixable_orphans,
           (select count(*) from mortgages where id in ${mortgages}) as mortgages,
           (select count(*) from lenders where name like ${`Lender ${summary.tag}-%`}) as lenders,
           (select count(*) from mortgage_positions where mortgage_id in ${mortgages}) as positions,
           (select count(*) from dispersal_entries where mortgage_id in ${mortgages}) as dispersal_entries,
           (select count(*) from cash_journal_entries where mortgage_id in ${mortgages}) as journal_entries`,
    db,
  );
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, Number(v)]));
}

describe("seedObligations", () => {
  it("reports exactly what it wrote", async () => {
    expect(await countsIn(seeded)).toEqual({
      obligations: seeded.obligations,
      settled: seeded.settled,
      orphans: seeded.orphans,
      unfixable_orphans: seeded.unfixableOrphans,
      mortgages: seeded.mortgages,
      lenders: seeded.lenders,
      positions: seeded.positions,
      dispersal_entries: seeded.dispersalEntries,
      journal_entries: seeded.journalEntries,
    });
  });

  it("follows the requested shape: counts, settled share, orphan share, unfixable orphans, lenders per mortgage", async () => {
    expect(seeded).toMatchObject({ obligations: 1_440, mortgages: 60, seed: 42 });
    expect(seeded.settled / seeded.obligations).toBeGreaterThan(0.62);
    expect(seeded.settled / seeded.obligations).toBeLessThan(0.78);
    expect(seeded.orphans / seeded.settled).toBeGreaterThan(0.05);
    expect(seeded.orphans / seeded.settled).toBeLessThan(0.16);
    expect(seeded.unfixableOrphans).toBeGreaterThan(0);
    expect(seeded.unfixableOrphans).toBeLessThan(seeded.orphans);

    const perMortgage = await database.db.execute<{ lenders: bigint; obligations: bigint; total_units: bigint; active: bigint }>(sql`
      select (select count(*) from mortgage_positions p where p.mortgage_id = m.id) as lenders,
             (select count(*) from obligations o where o.mortgage_id = m.id) as obligations,
             (select coalesce(sum(units), 0) from mortgage_positions p where p.mortgage_id = m.id) as total_units,
             (select count(*) from mortgage_positions p where p.mortgage_id = m.id and p.units > 0) as active
        from mortgages m where m.id in ${ofDataSet(seeded)}`);
    for (const row of perMortgage) {
      expect(Number(row.lenders)).toBeGreaterThanOrEqual(1);
      expect(Number(row.lenders)).toBeLessThanOrEqual(40);
      expect(Number(row.obligations)).toBe(24);
      expect([0, 10_000]).toContain(Number(row.total_units)); // 10,000 units, or none on an unfixable mortgage
    }
    expect(Math.max(...perMortgage.map((r) => Number(r.lenders)))).toBeGreaterThan(20);
    expect(perMortgage.filter((r) => Number(r.active) === 0).length).toBeGreaterThan(0);
  });

  it("writes every status, type and payment frequency, with servicing fees of 0..200 bps", async () => {
    const mortgages = ofDataSet(seeded);
    const statuses = await database.db.execute<{ status: string }>(sql`select distinct status from obligations where mortgage_id in ${mortgages} order by 1`);
    expect(statuses.map((r) => r.status)).toEqual(["due", "overdue", "partially_settled", "settled", "upcoming", "waived"]);
    const types = await database.db.execute<{ type: string }>(sql`select distinct type from obligations where mortgage_id in ${mortgages} order by 1`);
    expect(types.map((r) => r.type)).toEqual(["arrears_cure", "late_fee", "principal_repayment", "regular_interest"]);
    const frequencies = await database.db.execute<{ payment_frequency: string }>(sql`
      select distinct payment_frequency from mortgages where id in ${mortgages} order by 1`);
    expect(frequencies.map((r) => r.payment_frequency)).toEqual(["accelerated_bi_weekly", "bi_weekly", "monthly", "weekly"]);
    const fees = await one<{ low: number; high: number; charged: bigint }>(sql`
      select min(servicing_fee_bps) as low, max(servicing_fee_bps) as high,
             (select count(*) from servicing_fee_entries where mortgage_id in ${mortgages}) as charged
        from mortgages where id in ${mortgages}`);
    expect(fees.low).toBeGreaterThanOrEqual(0);
    expect(fees.high).toBeLessThanOrEqual(200);
    expect(Number(fees.charged)).toBeGreaterThan(0);
  });

  it("leaves as orphans exactly the settled obligations without dispersal, and flags every other settled one dispersed", async () => {
    const mortgages = ofDataSet(seeded);
    const row = await one<{ undispersed: bigint; flag_without_dispersal: bigint; dispersal_without_flag: bigint; unsettled_dispersed: bigint }>(sql`
      select count(*) filter (where o.status = 'settled' and not o.dispersed) as undispersed,
             count(*) filter (where o.dispersed and not exists (select 1 from dispersal_entries d where d.obligation_id = o.id)
                              and not exists (select 1 from servicing_fee_entries f where f.obligation_id = o.id)) as flag_without_dispersal,
             count(*) filter (where not o.dispersed and exists (select 1 from dispersal_entries d where d.obligation_id = o.id)) as dispersal_without_flag,
             count(*) filter (where o.status <> 'settled' and (o.dispersed or exists (select 1 from dispersal_entries d where d.obligation_id = o.id))) as unsettled_dispersed
        from obligations o where o.mortgage_id in ${mortgages}`);
    expect(Number(row.undispersed)).toBe(seeded.orphans);
    expect(Number(row.flag_without_dispersal)).toBe(0);
    expect(Number(row.dispersal_without_flag)).toBe(0);
    expect(Number(row.unsettled_dispersed)).toBe(0);
  });

  it("keeps the ledger consistent: totals equal journal lines, families fit the entry types, keys follow the contract", async () => {
    const mortgages = ofDataSet(seeded);
    const totals = await one<{ n: bigint }>(sql`
      select count(*) as n from cash_accounts a
       where a.cumulative_debits <> coalesce((select sum(amount) from cash_journal_entries where debit_account_id = a.id), 0)
          or a.cumulative_credits <> coalesce((select sum(amount) from cash_journal_entries where credit_account_id = a.id), 0)`);
    expect(Number(totals.n)).toBe(0);

    const pairs = await database.db.execute<{ entry_type: string; debit: string; credit: string }>(sql`
      select distinct j.entry_type, d.family || coalesce(':' || d.subaccount, '') as debit, c.family || coalesce(':' || c.subaccount, '') as credit
        from cash_journal_entries j join cash_accounts d on d.id = j.debit_account_id join cash_accounts c on c.id = j.credit_account_id
       where j.mortgage_id in ${mortgages} order by 1`);
    expect(pairs).toEqual([
      { entry_type: "CASH_RECEIVED", debit: "TRUST_CASH", credit: "BORROWER_RECEIVABLE" },
      { entry_type: "LENDER_PAYABLE_CREATED", debit: "CONTROL:ALLOCATION", credit: "LENDER_PAYABLE" },
      { entry_type: "OBLIGATION_ACCRUED", debit: "BORROWER_RECEIVABLE", credit: "CONTROL:ACCRUAL" },
      { entry_type: "SERVICING_FEE_RECOGNIZED", debit: "CONTROL:ALLOCATION", credit: "SERVICING_REVENUE" },
    ]);

    const dimensions = await one<{ n: bigint }>(sql`
      select count(*) as n from cash_journal_entries j join cash_accounts d on d.id = j.debit_account_id join cash_accounts c on c.id = j.credit_account_id
       where j.mortgage_id in ${mortgages}
         and not (case j.entry_type
           when 'OBLIGATION_ACCRUED' then d.obligation_id = j.obligation_id and c.mortgage_id = j.mortgage_id
           when 'CASH_RECEIVED' then d.mortgage_id = j.mortgage_id and c.obligation_id = j.obligation_id
           when 'LENDER_PAYABLE_CREATED' then d.mortgage_id = j.mortgage_id and c.mortgage_id = j.mortgage_id and c.lender_id = j.lender_id
           when 'SERVICING_FEE_RECOGNIZED' then d.mortgage_id = j.mortgage_id and c.mortgage_id = j.mortgage_id
         end)`);
    expect(Number(dimensions.n)).toBe(0);

    const keys = await one<{ n: bigint }>(sql`
      select count(*) as n from cash_journal_entries j
       where j.mortgage_id in ${mortgages}
         and j.idempotency_key <> case j.entry_type
           when 'OBLIGATION_ACCRUED' then 'cash-ledger:obligation-accrued:' || j.obligation_id
           when 'CASH_RECEIVED' then 'cash-ledger:cash-received:seed-' || j.obligation_id
           when 'LENDER_PAYABLE_CREATED' then 'cash-ledger:lender-payable-created:'
             || (select d.id from dispersal_entries d where d.obligation_id = j.obligation_id and d.lender_id = j.lender_id)
           when 'SERVICING_FEE_RECOGNIZED' then 'cash-ledger:servicing-fee-recognized:' || j.obligation_id
         end`);
    expect(Number(keys.n)).toBe(0);

    const negative = await one<{ n: bigint }>(sql`
      select count(*) as n from cash_accounts
       where mortgage_id in ${mortgages}
         and ((family = 'TRUST_CASH' and cumulative_debits < cumulative_credits)
           or (family in ('LENDER_PAYABLE', 'SERVICING_REVENUE') and cumulative_credits < cumulative_debits))`);
    expect(Number(negative.n)).toBe(0);
  });

  it("passes the daily reconciliation: no conservation defect, no totals mismatch; the orphans are its stale orphans", async () => {
    const report = await runReconciliation(database.db, { scanIntervalMs: 15 * 60_000 });
    expect(report.findings.conservationDefects?.count).toBe(0);
    expect(report.findings.accountTotalsMismatch?.count).toBe(0);
    expect(report.findings.duplicateIdempotencyKeys?.count).toBe(0);
    expect(report.findings.staleOrphans?.count).toBe(seeded.orphans);
  });

  it("writes historical dispersals exactly as the pure fee and split compute them", async () => {
    const rows = await database.db.execute<{
      id: string;
      mortgage_id: string;
      type: ObligationType;
      cash: bigint;
      principal: bigint;
      servicing_fee_bps: number;
      payment_frequency: PaymentFrequency;
      fee: bigint | null;
      entries: Array<{ lenderId: string; amount: string; units: string; total: string }> | null;
    }>(sql`
      select o.id, o.mortgage_id, o.type, m.principal, m.servicing_fee_bps, m.payment_frequency,
             (select sum(j.amount) from cash_journal_entries j where j.obligation_id = o.id and j.entry_type = 'CASH_RECEIVED') as cash,
             (select f.amount from servicing_fee_entries f where f.obligation_id = o.id) as fee,
             (select json_agg(json_build_object('lenderId', d.lender_id, 'amount', d.amount::text, 'units', d.ownership_units::text,
                                                'total', d.total_units::text) order by d.lender_id)
                from dispersal_entries d where d.obligation_id = o.id) as entries
        from obligations o join mortgages m on m.id = o.mortgage_id
       where o.mortgage_id in ${ofDataSet(seeded)} and o.dispersed`);
    const positions = await database.db.execute<{ mortgage_id: string; lender_id: string; units: bigint }>(sql`
      select mortgage_id, lender_id, units from mortgage_positions where mortgage_id in ${ofDataSet(seeded)}`);
    const byMortgage = new Map<string, Array<{ lenderId: string; units: bigint }>>();
    for (const p of positions) byMortgage.set(p.mortgage_id, [...(byMortgage.get(p.mortgage_id) ?? []), { lenderId: p.lender_id, units: BigInt(p.units) }]);

    expect(rows.length).toBe(seeded.settled - seeded.orphans);
    for (const row of rows) {
      const settledAmount = BigInt(row.cash);
      const fee = servicingFeeForPeriod({
        obligationType: row.type,
        principal: BigInt(row.principal),
        servicingFeeBps: row.servicing_fee_bps,
        paymentFrequency: row.payment_frequency,
        settledAmount,
      });
      expect(BigInt(row.fee ?? 0n), row.id).toBe(fee);
      const shares = splitProRata(row.mortgage_id, settledAmount - fee, byMortgage.get(row.mortgage_id)!);
      expect(
        (row.entries ?? []).map((e) => ({ lenderId: e.lenderId, amount: BigInt(e.amount), ownershipUnits: BigInt(e.units), totalUnits: BigInt(e.total) })),
        row.id,
      ).toEqual(shares);
    }
  });

  it("leaves orphans that disperseObligation heals, unfixable ones that it cannot, and history that it replays", async () => {
    const pick = (filter: ReturnType<typeof sql>) =>
      one<{ id: string }>(sql`select o.id from obligations o where o.mortgage_id in ${ofDataSet(seeded)} and ${filter} limit 1`);
    const fixable = await pick(sql`o.status = 'settled' and not o.dispersed
      and exists (select 1 from mortgage_positions p where p.mortgage_id = o.mortgage_id and p.units > 0)`);
    const unfixable = await pick(sql`o.status = 'settled' and not o.dispersed
      and not exists (select 1 from mortgage_positions p where p.mortgage_id = o.mortgage_id and p.units > 0)`);
    const historical = await pick(sql`o.dispersed and exists (select 1 from dispersal_entries d where d.obligation_id = o.id)`);

    const healed = await database.db.transaction((tx) => disperseObligation(tx, fixable.id));
    expect(healed.replayed).toBe(false);
    expect(healed.entries.length).toBeGreaterThan(0);
    await expect(database.db.transaction((tx) => disperseObligation(tx, unfixable.id))).rejects.toBeInstanceOf(NoActivePositionsError);
    const replayed = await database.db.transaction((tx) => disperseObligation(tx, historical.id));
    expect(replayed.replayed).toBe(true);
    expect(replayed.entries.reduce((sum, e) => sum + e.amount, 0n) + replayed.fee).toBe(replayed.settledAmount);
  });

  it("gives the same data for the same seed (fresh ids), and other data for another seed", async () => {
    const shape = { mortgages: 8, obligationsPerMortgage: 10, orphanShare: 0.2, lendersPerMortgage: { min: 1, max: 6 } };
    const [a, b, c] = [
      await seedObligations(database, { ...shape, seed: 7 }),
      await seedObligations(database, { ...shape, seed: 7, chunkSize: 25, parallelism: 3 }),
      await seedObligations(database, { ...shape, seed: 8 }),
    ];
    const strip = ({ tag: _tag, ms: _ms, ...rest }: SeedSummary) => rest;
    expect(strip(b)).toEqual(strip(a));
    expect(b.tag).not.toBe(a.tag);

    const fingerprint = async (summary: SeedSummary) =>
      database.db.execute<{ row: string }>(sql`
        select concat_ws('|', o.type, o.amount, o.status, o.due_date, o.dispersed, m.principal, m.payment_frequency,
                         (select string_agg(d.amount::text, ',' order by d.amount) from dispersal_entries d where d.obligation_id = o.id)) as row
          from obligations o join mortgages m on m.id = o.mortgage_id
         where o.mortgage_id in ${ofDataSet(summary)} order by o.id`);
    expect(await fingerprint(b)).toEqual(await fingerprint(a));
    expect(await fingerprint(c)).not.toEqual(await fingerprint(a));
  });

  it("without historical dispersals, leaves every settled obligation an orphan", async () => {
    const summary = await seedObligations(database, { mortgages: 5, obligationsPerMortgage: 10, withHistoricalDispersals: false, seed: 3 });
    expect(summary.orphans).toBe(summary.settled);
    expect(summary.dispersalEntries).toBe(0);
    expect(await countsIn(summary)).toMatchObject({ orphans: summary.settled, dispersal_entries: 0 });
  });

  it("spreads a total number of obligations over the mortgages", async () => {
    const summary = await seedObligations(database, { mortgages: 7, obligations: 100, seed: 5 });
    expect(summary.obligations).toBe(100);
    const counts = await database.db.execute<{ n: bigint }>(sql`
      select count(o.id) as n from mortgages m left join obligations o on o.mortgage_id = m.id
       where m.id in ${ofDataSet(summary)} group by m.id`);
    expect(counts.map((r) => Number(r.n)).sort()).toEqual([14, 14, 14, 14, 14, 15, 15]);
  });

  it("refuses options out of range", async () => {
    for (const options of [
      { mortgages: 0 },
      { mortgages: 1.5 },
      { mortgages: 1, settledShare: 1.1 },
      { mortgages: 1, orphanShare: -0.1 },
      { mortgages: 1, unfixableOrphanShare: Number.NaN },
      { mortgages: 1, lendersPerMortgage: { min: 5, max: 2 } },
      { mortgages: 1, obligations: -1 },
    ]) {
      await expect(seedObligations(database, options), JSON.stringify(options)).rejects.toBeInstanceOf(RangeError);
    }
  });

  it("writes rows that satisfy every foreign key and trigger when loaded by a role that cannot skip them", async () => {
    // A non-superuser cannot switch triggers off, so the load goes through every foreign-key check
    // and the dispersed-flag trigger: proof that the fast path writes nothing they would refuse.
    const role = `dispersal_seed_${randomBytes(4).toString("hex")}`;
    await database.db.execute(sql.raw(`create role ${role} login`));
    await database.db.execute(sql.raw(`grant select, insert, update on all tables in schema public to ${role}`));
    const url = new URL(database.url);
    url.username = role;
    const limited = connectDatabase(url.toString(), { max: 2 });
    try {
      const summary = await seedObligations(limited, {
        mortgages: 6,
        obligationsPerMortgage: 20,
        orphanShare: 0.1,
        unfixableOrphanShare: 0.5,
        lendersPerMortgage: { min: 1, max: 10 },
        seed: 11,
      });
      expect(summary.obligations).toBe(120);
      expect(await countsIn(summary)).toMatchObject({ obligations: 120, orphans: summary.orphans, dispersal_entries: summary.dispersalEntries });
    } finally {
      await limited.close();
      await database.db.execute(sql.raw(`drop owned by ${role}`));
      await database.db.execute(sql.raw(`drop role ${role}`));
    }
  });
});

describe("seedDemo", () => {
  it("writes a few thousand obligations with about 2% orphans and a few unfixable ones", async () => {
    const demo = await seedDemo(database);
    expect(demo.obligations).toBe(3_000);
    expect(demo.orphans / demo.settled).toBeGreaterThan(0.01);
    expect(demo.orphans / demo.settled).toBeLessThan(0.04);
    expect(demo.unfixableOrphans).toBeGreaterThanOrEqual(1);
    expect(demo.unfixableOrphans).toBeLessThanOrEqual(25);
    expect(await countsIn(demo)).toMatchObject({ obligations: 3_000, orphans: demo.orphans, unfixable_orphans: demo.unfixableOrphans });
  });
});
