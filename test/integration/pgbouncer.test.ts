import { describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { freePort } from "../helpers/redisServer.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { httpCall } from "../helpers/http.js";
import { givenOrphans } from "../helpers/orphans.js";
import { startPgBouncer } from "../helpers/pgBouncer.js";
import { testPipeline } from "../helpers/pipeline.js";
import { spawnCli, waitFor, type CliProcess } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";

const SAM = { name: "sam", secret: "sam-service-secret" };
const OLGA = { name: "olga", secret: "olga-operator-secret" };

const database = await testDb();
const pipeline = testPipeline(database);
const { ctx } = pipeline;
const db = database.db;
const bouncer = await startPgBouncer({ poolSize: 4 });

/** The service as deployed behind PgBouncer in transaction mode: its writers through it, LISTEN and the readers direct. */
function serviceEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: bouncer.urlFor(database.url),
    DATABASE_DIRECT_URL: database.url,
    DATABASE_PREPARED_STATEMENTS: "off",
    DATABASE_POOL_SIZE: "6",
    REDIS_URL: pipeline.config.REDIS_URL,
    QUEUE_PREFIX: ctx.queues.prefix,
    OPS_USERS: `${SAM.name}:service:${SAM.secret},${OLGA.name}:operator:${OLGA.secret}`,
    WORKER_CONCURRENCY: "8",
    HEALING_BATCH_SIZE: "4",
    HEALING_BACKOFF_MS: "20",
    HEALING_SCAN_EVERY_MS: "3600000",
    SETTLEMENT_LISTENER_RECONNECT_MS: "100",
    LOG_LEVEL: "warn",
    ...extra,
  };
}

/** A Postgres array literal of ids (drizzle would expand a JS array into a row). */
const ids = (list: readonly string[]) => `{${list.join(",")}}`;

async function untilAnswering(base: string, server: CliProcess): Promise<void> {
  await waitFor(
    async () => {
      if (server.child.exitCode !== null) throw new Error(`server exited: ${server.output()}`);
      return httpCall(base, "GET", "/healthz").then((r) => r.status === 200, () => false);
    },
    // Generous: four processes start at once on a machine that may be busy.
    { timeoutMs: 90_000, what: "the server answering" },
  );
}

describe("behind PgBouncer in transaction mode", () => {
  it("payments, dispersal and healing by several worker processes: nothing lost, nothing doubled", async () => {
    // Arrange: open obligations to be paid over HTTP, and orphans (some unfixable) for healing.
    const due = [];
    for (let i = 0; i < 12; i++) due.push(await givenSettledObligation(database, { status: "due", amount: 100_000n + BigInt(i), lenders: [5000, 3000, 2000], type: "principal_repayment" }));
    const orphans = await givenOrphans(database, { count: 60, unfixable: 4, perMortgage: 10 });
    const fixable = orphans.obligationIds.filter((id) => !orphans.unfixableIds.includes(id));

    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const server = spawnCli(["server"], serviceEnv({ PORT: String(port) }));
    const workers = [0, 1, 2].map(() => spawnCli(["worker"], serviceEnv()));
    await untilAnswering(base, server);

    // Act: every payment at once, in two parts each, and one replay of each first part; a scan asked for on top.
    const pay = (obligationId: string, reference: string, amount: string) =>
      httpCall(base, "POST", `/api/obligations/${obligationId}/payments`, { as: SAM, body: { reference, amount } });
    const answers = await Promise.all(
      due.flatMap((o) => {
        const first = (o.amount * 2n) / 5n;
        return [
          pay(o.obligationId, `PB1-${o.obligationId}`, first.toString()),
          pay(o.obligationId, `PB2-${o.obligationId}`, (o.amount - first).toString()),
          pay(o.obligationId, `PB1-${o.obligationId}`, first.toString()),
        ];
      }),
    );
    expect(answers.map((a) => a.status).filter((s) => s !== 200 && s !== 201), JSON.stringify(answers.find((a) => a.status >= 300)?.json)).toEqual([]);
    expect((await httpCall(base, "POST", "/api/healing/scan", { as: OLGA })).status).toBe(202);

    const paidIds = due.map((o) => o.obligationId);
    await waitFor(
      async () => {
        const [row] = await db.execute<{ open: bigint }>(sql`
          select count(*) as open from obligations o
           where (o.id = any(${ids([...paidIds, ...fixable])}::uuid[]) and not (o.status = 'settled' and o.dispersed))
              or (o.id = any(${ids(orphans.unfixableIds)}::uuid[])
                  and not exists (select 1 from dispersal_healing_attempts h where h.obligation_id = o.id and h.status = 'escalated'))`);
        return row!.open === 0n;
      },
      { timeoutMs: 90_000, what: "every payment dispersed, every orphan healed or escalated" },
    );

    // Assert: each payment once, each dispersal once and whole, each escalation parked once.
    const cash = await db.execute<{ obligation_id: string; postings: bigint; total: bigint }>(sql`
      select obligation_id, count(*) as postings, sum(amount)::int8 as total from cash_journal_entries
       where entry_type = 'CASH_RECEIVED' and obligation_id = any(${ids(paidIds)}::uuid[]) group by obligation_id`);
    expect(cash).toHaveLength(due.length);
    for (const row of cash) expect({ postings: row.postings, total: row.total }).toEqual({ postings: 2n, total: due.find((o) => o.obligationId === row.obligation_id)!.amount });

    const dispersed = await db.execute<{ id: string; amount: bigint; entries: bigint; lenders: bigint; allocated: bigint | null; payables: bigint }>(sql`
      select o.id, o.amount,
             (select count(*) from dispersal_entries d where d.obligation_id = o.id) as entries,
             (select count(distinct d.lender_id) from dispersal_entries d where d.obligation_id = o.id) as lenders,
             (select sum(d.amount)::int8 from dispersal_entries d where d.obligation_id = o.id) as allocated,
             (select count(*) from cash_journal_entries j where j.obligation_id = o.id and j.entry_type = 'LENDER_PAYABLE_CREATED') as payables
        from obligations o where o.id = any(${ids([...paidIds, ...fixable])}::uuid[])`);
    expect(dispersed).toHaveLength(paidIds.length + fixable.length);
    for (const row of dispersed) expect({ id: row.id, entries: row.entries, lenders: row.lenders, allocated: row.allocated, payables: row.payables }).toEqual({ id: row.id, entries: 3n, lenders: 3n, allocated: row.amount, payables: 3n });

    const parked = await db.execute<{ obligation_id: string; postings: bigint; total: bigint; amount: bigint }>(sql`
      select j.obligation_id, count(*) as postings, sum(j.amount)::int8 as total, min(o.amount) as amount
        from cash_journal_entries j join obligations o on o.id = j.obligation_id
       where j.entry_type = 'SUSPENSE_ESCALATED' and j.obligation_id = any(${ids(orphans.unfixableIds)}::uuid[]) group by j.obligation_id`);
    expect(parked).toHaveLength(orphans.unfixableIds.length);
    for (const row of parked) expect({ postings: row.postings, total: row.total }).toEqual({ postings: 1n, total: row.amount });

    // The work really went through PgBouncer, and LISTEN did not.
    const clients = await bouncer.admin("SHOW CLIENTS");
    const names = new Set(clients.map((c) => String(c.application_name)));
    expect(names).toContain("dispersal-worker");
    expect(names).toContain("dispersal-server");
    expect(names).not.toContain("dispersal-settlement-listener");
    const [listening] = await db.execute<{ n: bigint }>(sql`
      select count(*) as n from pg_stat_activity where datname = current_database() and application_name = 'dispersal-settlement-listener'`);
    expect(listening!.n).toBe(3n);
    const stats = await bouncer.admin("SHOW STATS");
    const ours = stats.find((s) => s.database === database.name);
    expect(Number(ours?.total_xact_count ?? 0)).toBeGreaterThan(100);
    expect(bouncer.log()).not.toMatch(/prepared statement|unsupported startup parameter/i);

    expect(await Promise.all([server, ...workers].map((p) => p.stop("SIGTERM")))).toEqual([0, 0, 0, 0]);
    // The migrations' session lock was taken and released on direct sessions, none left behind in a pooled one.
    const [locks] = await db.execute<{ n: bigint }>(sql`
      select count(*) as n from pg_locks
       where locktype = 'advisory' and objid = 7240001 and database = (select oid from pg_database where datname = current_database())`);
    expect(locks!.n).toBe(0n);
  }, 240_000);

  it("with DATABASE_PREPARED_STATEMENTS on, a process behind it stops at start and names the cause", async () => {
    const server = spawnCli(["server"], serviceEnv({ PORT: String(await freePort()), DATABASE_PREPARED_STATEMENTS: "on" }));
    expect(await server.exited).not.toBe(0);
    expect(server.output()).toMatch(/unsupported startup parameter/);
  });
});
