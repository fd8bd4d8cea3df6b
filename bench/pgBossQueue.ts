// The pg-boss side of the comparison, in the benchmark process: install pg-boss in the bench
// database, and enqueue the orphans the way our scan does (keyset pages of the same query), one
// job per orphan with retryLimit 3 and exponential retryBackoff.
import PgBoss from "pg-boss";
import type { Database } from "../src/db/client.js";
import { findOrphanedObligations } from "../src/db/healing.js";

export const PGBOSS_QUEUE = "dispersal-retrigger";
export const PGBOSS_SCHEMA = "bench_pgboss";

export async function openPgBoss(database: Database): Promise<PgBoss> {
  const boss = new PgBoss({ connectionString: database.url, schema: PGBOSS_SCHEMA, max: 2, supervise: false, schedule: false, application_name: "bench-pgboss" });
  boss.on("error", (error) => process.stderr.write(`pg-boss error: ${error.message}\n`));
  await boss.start();
  if (!(await boss.getQueue(PGBOSS_QUEUE))) await boss.createQueue(PGBOSS_QUEUE);
  return boss;
}

export async function enqueueOrphansOnPgBoss(database: Database, boss: PgBoss, pageSize: number): Promise<number> {
  let after: string | null = null;
  let enqueued = 0;
  for (;;) {
    const page = await findOrphanedObligations(database.db, { after, limit: pageSize });
    if (page.length === 0) break;
    after = page[page.length - 1]!.obligationId;
    await boss.insert(
      page.map((o) => ({ name: PGBOSS_QUEUE, data: { obligationId: o.obligationId }, retryLimit: 3, retryDelay: 1, retryBackoff: true })),
    );
    enqueued += page.length;
    if (page.length < pageSize) break;
  }
  return enqueued;
}
