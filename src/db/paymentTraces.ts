// Where a settlement's trace continues: the traceparent the payments intake kept in the payment's
// audit row (db/payments.ts), read by the settlement listener for the obligations it is told of.
import { sql } from "drizzle-orm";
import type { Executor } from "./client.js";
import { PAYMENT_AUDIT_ACTION } from "./payments.js";

/** The latest payment's traceparent of each obligation that has one (obligations settled by other systems' SQL have none). */
export async function paymentTraceparents(db: Executor, obligationIds: readonly string[]): Promise<Map<string, string>> {
  if (obligationIds.length === 0) return new Map();
  const rows = await db.execute<{ id: string; traceparent: string }>(sql`
    select distinct on (a.resource_id) a.resource_id as id, a.metadata->>'traceparent' as traceparent
      from audit_log a
     where a.resource_type = 'obligation'
       and a.resource_id in (select jsonb_array_elements_text(${JSON.stringify(obligationIds)}::jsonb))
       and a.action = ${PAYMENT_AUDIT_ACTION}
     order by a.resource_id, a.created_at desc`);
  return new Map(rows.flatMap((row) => (row.traceparent ? [[row.id, row.traceparent] as const] : [])));
}
