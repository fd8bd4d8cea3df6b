// Healing rows in a given state, written directly: for tests of what reads them (escalation guard,
// reconciliation), independent of how a requeue is requested and approved.
import { sql } from "drizzle-orm";
import type { Database } from "../../src/db/client.js";

/** What a carried-out requeue leaves: status `requeued`, a new round (attempt_count 0), its audit row. */
export async function givenRequeued(database: Database, obligationId: string, actor = "alice"): Promise<void> {
  await database.db.transaction(async (tx) => {
    const updated = await tx.execute(sql`
      update dispersal_healing_attempts set status = 'requeued', attempt_count = 0, requeue_count = requeue_count + 1, updated_at = now()
       where obligation_id = ${obligationId}::uuid and status = 'escalated' returning 1`);
    if (updated.length !== 1) throw new Error(`${obligationId} is not escalated`);
    await tx.execute(sql`
      insert into audit_log (action, actor, resource_type, resource_id, severity, metadata)
      values ('dispersal.self_healing_requeued', ${actor}, 'obligation', ${obligationId}, 'warning', '{"channel": "test"}'::jsonb)`);
  });
}

export interface GivenEscalations {
  mortgageId: string;
  count: number;
  amount?: bigint;
  /** The last error; `{obligation}` and `{row}` are replaced by the obligation's id and its row number. */
  error?: string | null;
  escalatedAt?: Date;
}

/**
 * Escalated healing rows for `count` new settled obligations of one mortgage, written set-based
 * (hundreds in one statement), for tests of what selects and groups escalations. No cash postings
 * (settled cash is then the amount) and no SUSPENSE posting.
 */
export async function givenEscalations(database: Database, options: GivenEscalations): Promise<string[]> {
  const rows = await database.db.execute<{ obligation_id: string }>(sql`
    with made as (
      insert into obligations (mortgage_id, type, amount, status, due_date, settled_at)
      select ${options.mortgageId}::uuid, 'regular_interest', ${(options.amount ?? 10_000n).toString()}::bigint, 'settled', current_date, now()
        from generate_series(1, ${options.count})
      returning id
    ), numbered as (select id, row_number() over (order by id) as n from made)
    insert into dispersal_healing_attempts (obligation_id, attempt_count, status, last_error, last_attempt_at, escalated_at)
    select id, 3, 'escalated', replace(replace(${options.error === undefined ? "no active positions" : options.error}::text, '{obligation}', id::text), '{row}', n::text),
           now(), ${(options.escalatedAt ?? new Date()).toISOString()}::timestamptz
      from numbered
    returning obligation_id::text`);
  return rows.map((r) => r.obligation_id).sort();
}
