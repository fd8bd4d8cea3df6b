// A transaction whose connection is terminated (pg_terminate_backend, a failover, a proxy reset)
// must reject, never take the process down. postgres.js (3.4.9) writes a transaction's next
// statement (or its ROLLBACK, ROLLBACK TO) to the connection even after that connection closed, and
// the write, deferred to a setImmediate, dereferences the closed socket: an uncaught TypeError
// (porsager/postgres#1154, #1208). The fault suite met it as a worker that died while its idle
// transactions' backends were terminated (test/faults/postgresOutage.test.ts, one run in five); the
// driver patch (patches/postgres+3.4.9.patch, docs/postgres-driver.md) settles such a write with
// CONNECTION_CLOSED instead.
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { sql } from "drizzle-orm";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { connectDatabase, isOutage, postgresErrorCode, type Database } from "../../src/db/client.js";
import { testDb } from "../helpers/testDb.js";

const database = await testDb();
let victim: Database;
const uncaught: unknown[] = [];
const record = (error: unknown) => uncaught.push(error);

beforeEach(() => {
  victim = connectDatabase(database.url, { max: 1, applicationName: "dispersal-lost-connection" });
  uncaught.length = 0;
  // Vitest would report them as errors of the run; recording them here names the case.
  process.prependListener("uncaughtException", record);
});
afterEach(async () => {
  process.removeListener("uncaughtException", record);
  await victim.close();
});
afterAll(() => database.close());

async function backendPid(tx: Pick<Database["db"], "execute">): Promise<number> {
  const rows = (await tx.execute<{ pid: number }>(sql`select pg_backend_pid() as pid`)) as unknown as Array<{ pid: number }>;
  return rows[0]!.pid;
}

async function terminate(pid: number): Promise<void> {
  await database.db.execute(sql`select pg_terminate_backend(${pid})`);
}

/** Waits past the driver's deferred writes (setImmediate) and a few timer turns. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 300));
/** Long enough for the driver to see the close of a terminated backend before the next statement. */
const closeSeen = () => new Promise((resolve) => setTimeout(resolve, 200));

describe("every build of the driver settles a write after its socket closed", () => {
  it("guards nextWrite, clears the deferred write and rejects what was in flight when the socket closes, and rejects a lost transaction's statements (ESM, CommonJS, workerd)", () => {
    const root = join(dirname(createRequire(import.meta.url).resolve("postgres")), "../..");
    const builds = ["src", "cjs/src", "cf/src"].map((b) => join(root, b, "connection.js")).filter((f) => existsSync(f));
    expect(builds.length).toBe(3);
    for (const file of builds) {
      const text = readFileSync(file, "utf8");
      expect(/function nextWrite\(fn\) \{[^}]*if \(socket === null\)/.test(text), `${file}: nextWrite does not guard a closed socket`).toBe(true);
      expect(/connectTimer\.cancel\(\)[\s\S]{0,400}chunk = nextWriteTimer = null[\s\S]{0,120}socket = null/.test(text), `${file}: closed() leaves the deferred write set`).toBe(true);
      expect(/socket = null[\s\S]{0,700}query && queryError\(query, lostQueries\)[\s\S]{0,200}if \(initial\)\s*return reconnect\(\)/.test(text), `${file}: closed() leaves queries in flight`).toBe(true);
    }
    for (const file of builds.map((f) => f.replace(/connection\.js$/, "index.js"))) {
      const text = readFileSync(file, "utf8");
      expect(/function handler\(q\) \{[^}]*if \(lost\)\s*return q\.reject/.test(text), `${file}: a lost transaction still writes its statements`).toBe(true);
    }
  });
});

describe("a transaction whose connection is terminated", () => {
  it("rejects as an outage and throws nothing uncaught when the backend goes between two statements", async () => {
    const outcome = await victim.db
      .transaction(async (tx) => {
        const pid = await backendPid(tx);
        await terminate(pid);
        await closeSeen();
        await tx.execute(sql`select 1`);
      })
      .then(() => "committed", (error: unknown) => error);
    await settle();
    expect(isOutage(outcome), String(outcome)).toBe(true);
    expect(uncaught.map(String)).toEqual([]);
  });

  it("rejects as an outage and throws nothing uncaught when the connection goes inside a savepoint", async () => {
    const outcome = await victim.db
      .transaction(async (tx) => {
        const pid = await backendPid(tx);
        await tx.transaction(async (savepoint) => {
          await terminate(pid);
          await closeSeen();
          await savepoint.execute(sql`select 1`);
        });
      })
      .then(() => "committed", (error: unknown) => error);
    await settle();
    expect(isOutage(outcome), String(outcome)).toBe(true);
    expect(uncaught.map(String)).toEqual([]);
  });

  it("rejects as an outage and throws nothing uncaught when the backend goes during a statement", async () => {
    const outcome = await victim.db
      .transaction(async (tx) => {
        const pid = await backendPid(tx);
        const slow = tx.execute(sql`select pg_sleep(2)`);
        await closeSeen();
        await terminate(pid);
        await slow;
      })
      .then(() => "committed", (error: unknown) => error);
    await settle();
    expect(isOutage(outcome), String(outcome)).toBe(true);
    expect(uncaught.map(String)).toEqual([]);
  });

  it("serves the next transaction on a new connection after the lost one", async () => {
    await victim.db
      .transaction(async (tx) => {
        const pid = await backendPid(tx);
        await terminate(pid);
        await closeSeen();
        await tx.execute(sql`select 1`);
      })
      .catch(() => {});
    await settle();
    const next = await victim.db.transaction(async (tx) => (await tx.execute<{ one: number }>(sql`select 1 as one`)) as unknown as Array<{ one: number }>);
    expect(next[0]!.one).toBe(1);
    expect(uncaught.map(String)).toEqual([]);
  });

  it("never writes a lost transaction's next statement to the connection the pool is reconnecting, and both settle", async () => {
    let statement: Promise<string> = Promise.resolve("not sent");
    let poolQuery: Promise<string> = Promise.resolve("not sent");
    let sent!: () => void;
    const bothSent = new Promise<void>((resolve) => (sent = resolve));
    const outcome = await victim.db
      .transaction(async (tx) => {
        const pid = await backendPid(tx);
        await terminate(pid);
        await closeSeen();
        // The pool reconnects the same connection (a pool of one) for a query outside the
        // transaction; the transaction's next statement comes while that connect is under way.
        poolQuery = victim.db.execute(sql`select 1 as one`).then(() => "answered", (e: Error) => `failed: ${String((e.cause as Error | undefined)?.message ?? e.message)}`);
        statement = tx.execute(sql`select 2`).then(() => "answered", (e: unknown) => (isOutage(e) ? "rejected as an outage" : `failed: ${String(e)}`));
        sent();
        await statement;
      })
      .then(() => "committed", (error: unknown) => error);
    const within = <T>(p: Promise<T>, ms: number) => Promise.race([p, new Promise<string>((r) => setTimeout(() => r(`still pending after ${ms} ms`), ms))]);
    expect(isOutage(outcome), String(outcome)).toBe(true);
    await bothSent;
    expect({ statement: await within(statement, 3000), poolQuery: await within(poolQuery, 8000) }).toEqual({ statement: "rejected as an outage", poolQuery: "answered" });
    await settle();
    expect(uncaught.map(String)).toEqual([]);
  });

  it("still rolls a savepoint back, and keeps the transaction, when its body fails for a reason of its own", async () => {
    await victim.db.execute(sql`create table if not exists lost_connection_rows (n int)`);
    await victim.db.transaction(async (tx) => {
      await tx.execute(sql`insert into lost_connection_rows values (1)`);
      const inner = await tx
        .transaction(async (savepoint) => {
          await savepoint.execute(sql`insert into lost_connection_rows values (2)`);
          await savepoint.execute(sql`select 1 / 0`);
        })
        .then(() => "committed", (error: unknown) => postgresErrorCode(error));
      expect(inner).toBe("22012");
    });
    const rows = (await victim.db.execute<{ n: number }>(sql`select n from lost_connection_rows order by n`)) as unknown as Array<{ n: number }>;
    expect(rows.map((r) => r.n)).toEqual([1]);
    // The pool's one connection is still usable.
    expect(((await victim.db.execute(sql`select 1 as one`)) as unknown as Array<{ one: number }>)[0]!.one).toBe(1);
  });
});
