// The Postgres driver never mixes transactions (postgres.js 3.4.9 carries PR #1218 as a patch: patches/,
// docs/postgres-driver.md). Upstream #823 / #1189: when BEGIN was the query that filled a
// connection's pipeline, sql.begin() never reserved the connection, so the transaction stayed open
// on the server while the pool handed the connection to other queries: acknowledged writes rolled
// back with someone else's transaction, or committed by it. These tests fail on the unpatched driver.
import { readFileSync, readdirSync, existsSync, realpathSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { connectDatabase } from "../../src/db/client.js";
import { log } from "../../src/log.js";
import { createTestDatabase } from "../helpers/testDb.js";

const require = createRequire(import.meta.url);

/** Every copy of postgres.js under node_modules (nested copies too), by its package folder. */
function driverCopies(): string[] {
  const found = new Set<string>();
  const visit = (modules: string, depth: number) => {
    if (!existsSync(modules) || depth > 6) return;
    for (const entry of readdirSync(modules)) {
      if (entry.startsWith(".")) continue;
      const folder = join(modules, entry);
      if (entry.startsWith("@")) {
        visit(folder, depth);
        continue;
      }
      if (entry === "postgres" && existsSync(join(folder, "package.json"))) found.add(realpathSync(folder));
      visit(join(folder, "node_modules"), depth + 1);
    }
  };
  visit(join(dirname(fileURLToPath(import.meta.url)), "../../node_modules"), 0);
  return [...found];
}

/** The builds inside one copy that a runtime can load: ESM (src), CommonJS (cjs), workerd (cf). */
function connectionSources(folder: string): string[] {
  return ["src", "cjs/src", "cf/src", "deno/src"].map((build) => join(folder, build, "connection.js")).filter((file) => existsSync(file));
}

const UNPATCHED = /sent\.length < max_pipeline\s*&& \(!q\.options\.onexecute \|\| q\.options\.onexecute\(connection\)\)/;
const PATCHED = /q\.options\.onexecute && q\.options\.onexecute\(connection\)/;

describe("the postgres.js driver Node loads is the patched 3.4.9", () => {
  it("resolves, for import and for require, to a copy whose every build reserves the connection when BEGIN is written", () => {
    const copies = driverCopies();
    expect(copies.length).toBeGreaterThan(0);
    const esm = realpathSync(fileURLToPath(import.meta.resolve("postgres")));
    const cjs = realpathSync(require.resolve("postgres"));
    for (const entry of [esm, cjs]) expect(copies.some((copy) => entry.startsWith(copy))).toBe(true);
    for (const copy of copies) {
      const manifest = JSON.parse(readFileSync(join(copy, "package.json"), "utf8")) as { version: string };
      // When upstream releases the fix, drop patches/postgres+3.4.9.patch and this pin in one commit.
      expect(manifest.version, copy).toBe("3.4.9");
      const sources = connectionSources(copy);
      expect(sources.length, copy).toBeGreaterThanOrEqual(2);
      for (const file of sources) {
        const text = readFileSync(file, "utf8");
        expect(UNPATCHED.test(text), `${file} still skips onexecute at the pipeline boundary`).toBe(false);
        expect(PATCHED.test(text), `${file} lacks the PR #1218 change`).toBe(true);
      }
    }
  });
});

describe("transactions at the pipeline boundary, on real Postgres", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let admin: postgres.Sql;

  beforeAll(async () => {
    database = await createTestDatabase();
    admin = postgres(database.url, { max: 1, onnotice: () => {} });
    await admin`create table driver_probe (id bigserial primary key, tag text not null, txid bigint)`;
  });
  afterAll(async () => {
    await admin.end();
    await database.drop();
  });

  async function leftIdleInTransaction(): Promise<number> {
    const [row] = await admin<{ n: number }[]>`
      select count(*)::int as n from pg_stat_activity
       where datname = current_database() and state like 'idle in transaction%'`;
    return row!.n;
  }

  async function tags(prefix: string): Promise<Set<string>> {
    const rows = await admin<{ tag: string }[]>`select tag from driver_probe where tag like ${prefix + "%"}`;
    return new Set(rows.map((r) => r.tag));
  }

  it("a BEGIN that is a connection's 100th pipelined query reserves that connection (pool of one, default pipelining)", async () => {
    for (const before of [97, 98, 99, 100, 101]) {
      const notices: string[] = [];
      const sql = postgres(database.url, { max: 1, onnotice: (n) => void notices.push(String(n.code)) });
      try {
        await sql`select 1`; // the connection is open, so the queries below pipeline on it
        const prefix = `boundary-${before}-`;
        // execute(): handed to the pool now, in this order (a tagged query otherwise waits for its .then).
        const plain = Array.from({ length: before }, (_, i) => sql`insert into driver_probe (tag) values (${prefix + "plain-" + i})`.execute());
        const committed = sql.begin(async (tx) => {
          await tx`insert into driver_probe (tag, txid) values (${prefix + "tx"}, txid_current())`;
        });
        const rolledBack = sql
          .begin(async (tx) => {
            await tx`insert into driver_probe (tag, txid) values (${prefix + "rolled-back"}, txid_current())`;
            throw new Error("roll back");
          })
          .catch((e: Error) => e.message);
        const after = Array.from({ length: 3 }, (_, i) => sql`insert into driver_probe (tag) values (${prefix + "after-" + i})`.execute());
        const outcomes = await Promise.allSettled([...plain, committed, rolledBack, ...after]);
        const rejected = outcomes.filter((o) => o.status === "rejected").map((o) => String((o as PromiseRejectedResult).reason?.code ?? (o as PromiseRejectedResult).reason));
        expect(rejected, `BEGIN after ${before} pipelined queries`).toEqual([]);
        expect(await rolledBack).toBe("roll back");
        const present = await tags(prefix);
        for (let i = 0; i < before; i++) expect(present.has(prefix + "plain-" + i), `plain-${i} acknowledged but gone`).toBe(true);
        for (let i = 0; i < 3; i++) expect(present.has(prefix + "after-" + i), `after-${i} acknowledged but gone`).toBe(true);
        expect(present.has(prefix + "tx")).toBe(true);
        expect(present.has(prefix + "rolled-back")).toBe(false);
        expect(notices).not.toContain("25001");
        expect(await leftIdleInTransaction()).toBe(0);
      } finally {
        await sql.end({ timeout: 1 });
      }
    }
  });

  it("a saturated small pool (3 connections, max_pipeline 2) never loses, commits elsewhere, or shares a transaction", async () => {
    for (let iteration = 0; iteration < 20; iteration++) {
      const notices: string[] = [];
      const sql = postgres(database.url, { max: 3, onnotice: (n) => void notices.push(String(n.code)), ...({ max_pipeline: 2 } as object) });
      const prefix = `saturated-${iteration}-`;
      try {
        const busy = Array.from({ length: 3 }, () => sql`select pg_sleep(0.05)`.execute());
        const plain = Array.from({ length: 6 }, (_, i) => sql`insert into driver_probe (tag) values (${prefix + "plain-" + i})`.execute());
        const transactions = Array.from({ length: 5 }, (_, i) =>
          sql.begin(async (tx) => {
            const [row] = await tx<{ txid: string }[]>`insert into driver_probe (tag, txid) values (${prefix + "tx-" + i}, txid_current()) returning txid::text`;
            await tx`insert into driver_probe (tag, txid) values (${prefix + "tx-" + i + "-second"}, txid_current())`;
            if (i % 2 === 1) throw new Error(`roll back ${i}`);
            return row!.txid;
          }),
        );
        const outcomes = await Promise.allSettled([...busy, ...plain, ...transactions]);
        const unexpected = outcomes
          .map((o, index) => ({ o, index }))
          .filter(({ o, index }) => o.status === "rejected" && !(index >= 9 && (index - 9) % 2 === 1 && String((o.reason as Error).message).startsWith("roll back")))
          .map(({ o }) => String(((o as PromiseRejectedResult).reason as { code?: string }).code ?? (o as PromiseRejectedResult).reason));
        expect(unexpected, `iteration ${iteration}`).toEqual([]);
        const present = await tags(prefix);
        for (let i = 0; i < 6; i++) expect(present.has(prefix + "plain-" + i), `iteration ${iteration}: plain-${i} acknowledged but gone`).toBe(true);
        for (let i = 0; i < 5; i++) {
          expect(present.has(prefix + "tx-" + i), `iteration ${iteration}: tx-${i}`).toBe(i % 2 === 0);
          expect(present.has(prefix + "tx-" + i + "-second"), `iteration ${iteration}: tx-${i}-second`).toBe(i % 2 === 0);
        }
        // Each transaction ran in a transaction of its own, and no plain insert ran inside one.
        const rows = await admin<{ tag: string; txid: string }[]>`select tag, txid::text from driver_probe where tag like ${prefix + "tx-%"}`;
        const byTx = new Map<string, Set<string>>();
        for (const r of rows) byTx.set(r.txid, (byTx.get(r.txid) ?? new Set()).add(r.tag.replace(/-second$/, "")));
        for (const members of byTx.values()) expect(members.size, `iteration ${iteration}: two transactions shared one`).toBe(1);
        const committedIds = outcomes.slice(9).filter((o) => o.status === "fulfilled").map((o) => (o as PromiseFulfilledResult<string>).value);
        expect(new Set(committedIds).size).toBe(committedIds.length);
        expect(notices, `iteration ${iteration}`).not.toContain("25001");
        expect(await leftIdleInTransaction()).toBe(0);
      } finally {
        await sql.end({ timeout: 1 });
      }
    }
  });

  it("the service's own client (prepared-statement proxy, transactions that survive lost connections) at every pipeline position", async () => {
    const service = connectDatabase(database.url, { max: 3, applicationName: "driver-boundary-test" });
    try {
      await Promise.all([1, 2, 3].map(() => service.sql`select pg_sleep(0.01)`)); // three open connections
      const acknowledged: string[] = [];
      const failures: string[] = [];
      // Three open connections take queries in turn, so each one's pipeline fills near the 300th
      // query: a transaction begins at every position around it, one round each.
      for (let before = 290; before <= 310; before++) {
        const prefix = `service-${before}-`;
        const work: Promise<unknown>[] = [];
        const plain = (tag: string) => work.push(service.sql`insert into driver_probe (tag) values (${tag})`.execute().then(() => acknowledged.push(tag), (e: Error) => failures.push(e.message)));
        for (let i = 0; i < before; i++) plain(`${prefix}plain-${i}`);
        for (const [name, rollback] of [["tx", false], ["rolled-back", true]] as const) {
          work.push(
            service.sql
              .begin(async (tx) => {
                await tx`insert into driver_probe (tag, txid) values (${prefix + name}, txid_current())`;
                if (rollback) throw new Error("roll back");
              })
              .then(() => acknowledged.push(prefix + name), (e: Error) => e.message === "roll back" || failures.push(e.message)),
          );
        }
        for (let i = 0; i < 20; i++) plain(`${prefix}after-${i}`);
        await Promise.all(work);
      }
      expect(failures).toEqual([]);
      const present = await tags("service-");
      expect(acknowledged.filter((t) => !present.has(t))).toEqual([]);
      expect([...present].filter((t) => t.endsWith("-rolled-back"))).toEqual([]);
      expect(present.size).toBe(acknowledged.length);
      expect(await leftIdleInTransaction()).toBe(0);
    } finally {
      await service.close();
    }
  });

  it("the service logs Postgres warning 25001 (a BEGIN inside a transaction) as an error instead of hiding it", async () => {
    const service = connectDatabase(database.url, { max: 1, applicationName: "driver-notice-test" });
    const errors = vi.spyOn(log, "error");
    try {
      await service.sql.begin(async (tx) => {
        await tx.unsafe("begin"); // what a second request's BEGIN on a shared connection looks like to Postgres
      });
      await expect.poll(() => errors.mock.calls.filter(([fields]) => (fields as { code?: string }).code === "25001").length).toBe(1);
      await service.sql`select 1`;
      expect(errors.mock.calls.filter(([fields]) => (fields as { code?: string }).code === "25001")).toHaveLength(1);
    } finally {
      errors.mockRestore();
      await service.close();
    }
  });
});
