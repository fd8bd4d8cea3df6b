// The end state of a fault scenario, read with SQL: what was lost, doubled, wrongly escalated or
// half-dispersed, and the daily reconciliation run over the whole database.
import { sql } from "drizzle-orm";
import { expect } from "vitest";
import type { Database } from "../../src/db/client.js";
import { postingAllocation } from "../../src/db/obligationAmounts.js";
import { runReconciliation, type ReconciliationReport } from "../../src/db/reconciliation.js";
import type { FaultCounts } from "./faultCounts.js";
import type { Orphans } from "./scenario.js";

export interface EndState extends Pick<FaultCounts, "lost" | "doubled" | "wrongEscalations" | "partialDispersals" | "reconciliationDefects"> {
  dispersed: number;
  escalated: number;
  /** Every non-zero figure by name, to say what went wrong when an assertion fails. */
  details: Record<string, number>;
  reconciliation: ReconciliationReport;
}

const n = (v: unknown) => Number(v ?? 0);

export async function measureEndState(database: Database, orphans: Orphans): Promise<EndState> {
  const expected = JSON.stringify([...orphans.fixable.map((id) => [id, true]), ...orphans.unfixable.map((id) => [id, false])]);
  const [per] = await database.db.execute<Record<string, bigint>>(sql`
    with expected as (
      select (e->>0)::uuid as id, (e->>1)::boolean as fixable from jsonb_array_elements(${expected}::jsonb) e
    ), per as (
      select x.id, x.fixable, o.id is not null as present, coalesce(o.dispersed, false) as dispersed, h.status as healing,
             -- Live entries: a returned payment's reversed ones stay beside the allocation that replaced them.
             (select count(*) from dispersal_entries d where d.obligation_id = x.id and d.status <> 'reversed') as entries,
             (select count(*) from mortgage_positions p where p.mortgage_id = o.mortgage_id and p.units > 0) as positions,
             (select count(*) from cash_journal_entries j where j.obligation_id = x.id and j.entry_type = 'SUSPENSE_ESCALATED') as parked,
             -- The first parking (top-ups of late cash carry the new settled amount in their key).
             (select count(*) from cash_journal_entries j where j.idempotency_key = 'suspense-escalation:' || x.id::text) as first_parked,
             (select count(*) from cash_journal_entries j where j.obligation_id = x.id and j.entry_type = 'REVERSAL') as reversed,
             (select count(*) from audit_log a where a.resource_type = 'obligation' and a.resource_id = x.id::text
                and a.action = 'dispersal.self_healing_escalated') as escalation_audits
        from expected x
        left join obligations o on o.id = x.id
        left join dispersal_healing_attempts h on h.obligation_id = x.id
    )
    select count(*) filter (where not present or (not dispersed and healing is distinct from 'escalated')) as lost,
           count(*) filter (where dispersed) as dispersed,
           count(*) filter (where not dispersed and healing = 'escalated') as escalated,
           count(*) filter (where first_parked > 1) as parked_twice,
           count(*) filter (where dispersed and parked > reversed) as dispersed_and_parked,
           count(*) filter (where fixable and (healing = 'escalated' or parked > 0 or escalation_audits > 0)) as fixable_escalated,
           count(*) filter (where escalation_audits > 1 or first_parked > 1) as escalated_twice,
           count(*) filter (where healing = 'escalated' and (first_parked <> 1 or escalation_audits <> 1)) as escalation_incomplete,
           count(*) filter (where not fixable and dispersed) as unfixable_dispersed,
           count(*) filter (where dispersed and entries <> positions) as entry_count_mismatch,
           count(*) filter (where not dispersed and entries > 0) as entries_without_flag
      from per`);
  const [global] = await database.db.execute<Record<string, bigint>>(sql`
    select (select count(*) from (select 1 from dispersal_entries group by obligation_id, lender_id, allocation having count(*) > 1) s) as duplicate_entries,
           (select count(*) from (select 1 from cash_journal_entries group by idempotency_key having count(*) > 1) s) as duplicate_keys,
           (select count(*) from (select 1 from servicing_fee_entries group by obligation_id, allocation having count(*) > 1) s) as duplicate_fees,
           (select count(*) from (select 1 from cash_journal_entries j where j.entry_type = 'LENDER_PAYABLE_CREATED'
                                   group by j.obligation_id, j.lender_id, ${postingAllocation("j")} having count(*) > 1) s) as payable_posted_twice,
           (select count(*) from cash_journal_entries where entry_type = 'LENDER_PAYABLE_CREATED')
             - (select count(*) from dispersal_entries) as payables_beyond_entries,
           (select count(*) from dispersal_entries d
             where not exists (select 1 from cash_journal_entries j
                                where j.entry_type = 'LENDER_PAYABLE_CREATED' and j.obligation_id = d.obligation_id
                                  and j.lender_id = d.lender_id and ${postingAllocation("j")} = d.allocation and j.amount = d.amount)) as entry_without_payable,
           (select count(*) from servicing_fee_entries f
             where not exists (select 1 from cash_journal_entries j
                                where j.entry_type = 'SERVICING_FEE_RECOGNIZED' and j.obligation_id = f.obligation_id
                                  and ${postingAllocation("j")} = f.allocation and j.amount = f.amount)) as fee_without_posting,
           (select count(*) from obligations o
             where exists (select 1 from dispersal_entries d where d.obligation_id = o.id)
               and (select sum(d.amount) from dispersal_entries d where d.obligation_id = o.id and d.status <> 'reversed')
                   + coalesce((select sum(f.amount) from servicing_fee_entries f where f.obligation_id = o.id and f.status <> 'reversed'), 0)
                   <> obligation_net_cash(o.id)) as conservation_broken`);

  const details: Record<string, number> = {};
  for (const [key, value] of Object.entries({ ...per, ...global })) {
    if (key !== "dispersed" && key !== "escalated" && n(value) !== 0) details[key] = n(value);
  }

  const lost = n(per!.lost);
  const doubled =
    n(per!.parked_twice) + n(per!.dispersed_and_parked) + n(global!.duplicate_entries) + n(global!.duplicate_keys) +
    n(global!.duplicate_fees) + n(global!.payable_posted_twice) + Math.max(0, n(global!.payables_beyond_entries));
  const wrongEscalations = n(per!.fixable_escalated) + n(per!.escalated_twice);
  const partialDispersals =
    n(global!.entry_without_payable) + n(global!.fee_without_posting) + n(global!.conservation_broken) +
    n(per!.entry_count_mismatch) + n(per!.entries_without_flag) + n(per!.escalation_incomplete) + n(per!.unfixable_dispersed);

  // Everything has settled: an orphan older than 0 ms is a stale one.
  const reconciliation = await runReconciliation(database.db, { scanIntervalMs: 0 });
  for (const [check, finding] of Object.entries(reconciliation.findings)) {
    if (typeof finding === "object" && finding.count > 0) details[`reconciliation.${check}`] = finding.count;
  }
  return {
    lost,
    doubled,
    wrongEscalations,
    partialDispersals,
    reconciliationDefects: reconciliation.defectCount,
    dispersed: n(per!.dispersed),
    escalated: n(per!.escalated),
    details,
    reconciliation,
  };
}

/** The verdict every scenario ends with: nothing lost, doubled, wrongly escalated or half-dispersed, a clean reconciliation, and the expected split. */
export function expectNothingLostOrDoubled(end: EndState, expected: { dispersed: number; escalated: number }): void {
  expect(end.details).toEqual({});
  expect({ lost: end.lost, doubled: end.doubled, wrong: end.wrongEscalations, partial: end.partialDispersals, defects: end.reconciliationDefects }).toEqual({
    lost: 0,
    doubled: 0,
    wrong: 0,
    partial: 0,
    defects: 0,
  });
  expect({ dispersed: end.dispersed, escalated: end.escalated }).toEqual(expected);
}
