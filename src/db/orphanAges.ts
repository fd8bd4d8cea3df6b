// How old the orphans are (settled, not dispersed), by healing state: what reconciliation's deadline
// check and the metrics read. Served by the partial index obligations_healing_scan_idx: the cost
// follows the orphans, not the history.
import { sql, type SQL } from "drizzle-orm";
import type { Executor } from "./client.js";

/** An orphan's healing state: its healing row's status, or `new` when it has none yet. */
export type OrphanState = "new" | "retrying" | "requeued" | "escalated";

/**
 * When the healer's clock started for orphan `o` (healing row `h`): its settlement, or for a requeued
 * one, its latest requeue (a new round; the settlement may be days old by then). Expects `o` and a
 * lateral/joined `h` (status) in scope.
 */
export const orphanSince: SQL = sql`greatest(coalesce(o.settled_at, o.created_at),
  case when h.status = 'requeued' then (select max(a.created_at) from audit_log a
    where a.resource_type = 'obligation' and a.resource_id = o.id::text and a.action = 'dispersal.self_healing_requeued') end)`;

/** The orphans with their healing row (h.status), as the scan sees them. */
export const orphansWithHealing: SQL = sql`
  obligations o
  left join lateral (select status from dispersal_healing_attempts where obligation_id = o.id limit 1) h on true
 where o.status = 'settled' and not o.dispersed`;

export interface OrphanAge {
  state: OrphanState;
  count: number;
  /** Age in seconds of the oldest orphan in this state (since settlement, or its latest requeue); 0 when none. */
  oldestAgeSeconds: number;
}

/** Every state, also those with no orphan (count 0), so that a gauge per state can drop back to 0. */
export async function orphanAges(db: Executor): Promise<OrphanAge[]> {
  const rows = await db.execute<{ state: OrphanState; count: bigint; oldest: number | null }>(sql`
    select coalesce(h.status, 'new') as state, count(*) as count,
           extract(epoch from now() - min(${orphanSince}))::float8 as oldest
      from ${orphansWithHealing}
     group by 1`);
  const byState = new Map(rows.map((r) => [r.state, r]));
  return (["new", "retrying", "requeued", "escalated"] as const).map((state) => {
    const row = byState.get(state);
    return { state, count: Number(row?.count ?? 0), oldestAgeSeconds: Math.max(0, Math.floor(row?.oldest ?? 0)) };
  });
}
