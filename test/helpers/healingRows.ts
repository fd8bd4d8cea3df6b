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
