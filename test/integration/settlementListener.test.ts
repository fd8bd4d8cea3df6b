import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { hostname } from "node:os";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { startSettlementListener, type SettlementListener } from "../../src/jobs/settlementListener.js";
import { givenOrphans } from "../helpers/orphans.js";
import { testPipeline } from "../helpers/pipeline.js";
import { waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";

const OLGA = { name: "olga", secret: "olga-operator-secret" };
const database = await testDb();
// No scheduler is upserted here: the only scans are the ones the listener asks for.
const pipeline = testPipeline(database, { OPS_USERS: `${OLGA.name}:operator:${OLGA.secret}`, HEALING_SCAN_EVERY_MS: "3600000", PORT: "0" });
const { ctx } = pipeline;
const db = database.db;
let listener: SettlementListener;
const extraListeners: SettlementListener[] = [];

beforeAll(async () => {
  pipeline.startWorkers();
  listener = startSettlementListener(ctx, { databaseUrl: database.url, reconnectMs: 100, maxReconnectMs: 500, heartbeatMs: 500 });
  await listener.listening();
  await catchUpScansFinished();
});
afterAll(async () => {
  await Promise.all([listener, ...extraListeners].map((l) => l.stop()));
});

async function scanJobsRun(): Promise<number> {
  const counts = await ctx.queues.healing.getJobCounts("completed", "failed", "active", "wait", "delayed", "prioritized");
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

async function catchUpScansFinished(): Promise<void> {
  await waitFor(async () => {
    const counts = await ctx.queues.healing.getJobCounts("active", "wait", "delayed", "prioritized");
    return Object.values(counts).every((n) => n === 0);
  }, { timeoutMs: 15_000, what: "the catch-up scans to finish", everyMs: 50 });
}

async function settle(ids: string[]): Promise<void> {
  await db.execute(sql`update obligations set status = 'settled', settled_at = now() where id = any(${`{${ids.join(",")}}`}::uuid[])`);
}

async function waitAllDispersed(ids: string[], timeoutMs = 20_000): Promise<void> {
  await waitFor(async () => {
    const [row] = await db.execute<{ n: bigint }>(sql`
      select count(*) as n from obligations where id = any(${`{${ids.join(",")}}`}::uuid[]) and dispersed`);
    return Number(row!.n) === ids.length;
  }, { timeoutMs, what: `${ids.length} obligations dispersed`, everyMs: 50 });
}

async function entriesPerObligation(ids: string[]): Promise<number[]> {
  const rows = await db.execute<{ n: bigint }>(sql`
    select count(d.id) as n from unnest(${`{${ids.join(",")}}`}::uuid[]) as o(id)
      left join dispersal_entries d on d.obligation_id = o.id group by o.id`);
  return [...new Set(rows.map((r) => Number(r.n)))];
}

describe("the settlement listener (fast path)", () => {
  it("disperses obligations set to settled by plain SQL within seconds, without any scan", async () => {
    const { obligationIds } = await givenOrphans(database, { count: 20, status: "due" });
    const scansBefore = await scanJobsRun();
    const enqueuedBefore = listener.status().enqueued;

    await settle(obligationIds);
    await waitAllDispersed(obligationIds, 10_000);

    expect(await scanJobsRun()).toBe(scansBefore);
    expect(listener.status().enqueued - enqueuedBefore).toBe(20);
    expect(await entriesPerObligation(obligationIds)).toEqual([3]);
  });

  it("ignores updates that do not settle: a settled obligation updated again, or one set to partially_settled", async () => {
    const { obligationIds } = await givenOrphans(database, { count: 3, status: "due" });
    const before = listener.status().notifications;
    await db.execute(sql`update obligations set status = 'partially_settled' where id = ${obligationIds[0]!}::uuid`);
    await settle([obligationIds[1]!]);
    await waitAllDispersed([obligationIds[1]!]);
    await db.execute(sql`update obligations set settled_at = now() where id = ${obligationIds[1]!}::uuid`);
    await settle([obligationIds[2]!]); // a notification after the others: once it is heard, the others would have been
    await waitAllDispersed([obligationIds[2]!]);
    expect(listener.status().notifications - before).toBe(2);
  });

  it("a statement settling more than 100 obligations sends one burst notification, and a catch-up scan pages through them", async () => {
    const { obligationIds } = await givenOrphans(database, { count: 300, status: "due" });
    const before = listener.status();

    await settle(obligationIds);
    await waitAllDispersed(obligationIds);

    const after = listener.status();
    expect(after.notifications - before.notifications).toBe(1);
    expect(after.catchUpScans).toBeGreaterThan(before.catchUpScans);
    expect(after.enqueued).toBe(before.enqueued);
    expect(await entriesPerObligation(obligationIds)).toEqual([3]);
  });

  it("holds at most maxPending ids in memory and hands the rest to a catch-up scan", async () => {
    const small = startSettlementListener(ctx, { databaseUrl: database.url, reconnectMs: 100, maxPending: 5, flushMs: 2_000 });
    extraListeners.push(small);
    await small.listening();
    await catchUpScansFinished();
    const { obligationIds } = await givenOrphans(database, { count: 40, status: "due" });

    // 40 statements of one row each in one transaction: 40 notifications at commit.
    await db.transaction(async (tx) => {
      for (const id of obligationIds) await tx.execute(sql`update obligations set status = 'settled', settled_at = now() where id = ${id}::uuid`);
    });
    await waitAllDispersed(obligationIds);

    await waitFor(async () => small.status().notifications === 40, { timeoutMs: 10_000, what: "40 notifications heard" });
    expect(small.status().handedToScan).toBe(35);
    expect(await entriesPerObligation(obligationIds)).toEqual([3]);
    await small.stop();
  });

  it("reconnects after its connection is killed, asks for a catch-up scan, and hears settlements again", async () => {
    const before = listener.status();
    await db.execute(sql`
      select pg_terminate_backend(pid) from pg_stat_activity
       where application_name = 'dispersal-settlement-listener' and datname = current_database()`);
    await waitFor(async () => listener.status().connects === before.connects + 1 && listener.status().up, {
      timeoutMs: 15_000,
      what: "the listener to reconnect",
      everyMs: 20,
    });
    // The catch-up request goes to Redis after LISTEN is in place: counted once BullMQ took the job.
    await waitFor(async () => listener.status().catchUpScans > before.catchUpScans, { timeoutMs: 10_000, what: "the reconnect's catch-up scan request", everyMs: 20 });
    await catchUpScansFinished();

    const { obligationIds } = await givenOrphans(database, { count: 5, status: "due" });
    const scansBefore = await scanJobsRun();
    await settle(obligationIds);
    await waitAllDispersed(obligationIds, 10_000);
    expect(await scanJobsRun()).toBe(scansBefore);
  });

  it("reports each listener on /readyz and as dispersal_settlement_listener_up, 0 while one cannot connect", async () => {
    const http: HttpServer = await startHttpServer(ctx, pipeline.config);
    const auth = { authorization: `Basic ${Buffer.from(`${OLGA.name}:${OLGA.secret}`).toString("base64")}` };
    try {
      const ready = await (await fetch(`${http.url}/readyz`)).json();
      expect(ready.settlementListeners).toContainEqual({ state: "listening", up: true });
      // Public (no credentials): it says what is down, not where it runs.
      expect(JSON.stringify(ready)).not.toContain(hostname());
      expect(JSON.stringify(ready)).not.toContain(listener.process);
      const metric = new RegExp(`dispersal_settlement_listener_up\\{process="${listener.process}"\\} (\\d)`);
      expect(metric.exec(await (await fetch(`${http.url}/metrics`, { headers: auth })).text())?.[1]).toBe("1");

      // Nothing listens on port 1: this listener keeps reconnecting.
      const broken = startSettlementListener(ctx, { databaseUrl: "postgres://postgres@127.0.0.1:1/nowhere", reconnectMs: 100, maxReconnectMs: 200 });
      extraListeners.push(broken);
      await waitFor(async () => broken.status().state === "reconnecting", { timeoutMs: 10_000, what: "the broken listener to reconnect" });
      const degraded = await fetch(`${http.url}/readyz`);
      expect(degraded.status).toBe(200); // the scan is the net: a listener down is not an outage
      expect((await degraded.json()).settlementListeners).toContainEqual({ state: "reconnecting", up: false });
      expect(metric.exec(await (await fetch(`${http.url}/metrics`, { headers: auth })).text())?.[1]).toBe("0");

      await broken.stop();
      expect(metric.exec(await (await fetch(`${http.url}/metrics`, { headers: auth })).text())?.[1]).toBe("1");
    } finally {
      await http.close();
    }
  });
});

describe("the settlement listener under concurrent settlements", () => {
  it("keeps enqueueing wave after wave of single settlements committed from many connections", async () => {
    for (let wave = 0; wave < 3; wave++) {
      const { obligationIds } = await givenOrphans(database, { count: 150, status: "due" });
      await Promise.all(
        Array.from({ length: 5 }, (_, lane) =>
          (async () => {
            for (const id of obligationIds.filter((_, i) => i % 5 === lane)) {
              await db.execute(sql`update obligations set status = 'settled', settled_at = now() where id = ${id}::uuid`);
            }
          })(),
        ),
      );
      await waitAllDispersed(obligationIds);
      expect(await entriesPerObligation(obligationIds)).toEqual([3]);
    }
  });
});
