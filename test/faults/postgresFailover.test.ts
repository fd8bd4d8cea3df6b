// Fault: the Postgres primary fails over. A pg_auto_failover formation of the suite's own (a monitor,
// a primary and its synchronous standby, on loopback ports, as the postgres user); the service is
// given both nodes in one multi-host DATABASE_URL with target_session_attrs=read-write. While
// payments come in through the HTTP intake, two workers heal orphans and settled payments, and
// escalations are requeued, the primary is SIGKILLed (keeper, postmaster, backends) and the monitor
// promotes the standby. The same processes carry on by themselves: every acknowledged payment is on
// the new primary once, nothing is lost or doubled, the listeners reconnect and ask for a catch-up
// scan, every settled obligation ends dispersed without a scan by the test. All of it is gone afterwards.
import { sql } from "drizzle-orm";
import postgres from "postgres";
import { existsSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { migrateDatabase } from "../../src/db/migrate.js";
import { scanForOrphans } from "../../src/jobs/scan.js";
import { givenOrphans } from "../helpers/orphans.js";
import { ChildGroup, sleep, waitFor, whyExited, type Child } from "./children.js";
import { expectNothingLostOrDoubled, measureEndState } from "./endState.js";
import { recordFaults } from "./faultCounts.js";
import { ensurePgAutoFailover, startFailoverFormation } from "./postgresServers.js";
import { ephemeralPort } from "./redisServers.js";
import { note, Scenario } from "./scenario.js";

const DATABASE = "dispersal";
const FEED = { name: "feed", secret: "feed-service-secret-1" };
const OPS = { name: "ops", secret: "ops-operator-secret-1" };
const PAYMENTS = 200;
const ORPHANS = 800;
const REQUEUES = 30;

ensurePgAutoFailover();
const formationChildren = new ChildGroup();
const formation = await startFailoverFormation(formationChildren, { database: DATABASE });
const serviceUrl = formation.url(DATABASE);
await migrateDatabase(serviceUrl);
const scenario = await Scenario.open({ database: { name: DATABASE, url: serviceUrl, drop: async () => {} } });
afterAll(async () => {
  await scenario.close();
  await formation.stop();
  await formationChildren.killAll();
});
const db = scenario.database.db;
const [primary, standby] = formation.nodes as [(typeof formation.nodes)[0], (typeof formation.nodes)[0]];

const idList = (ids: readonly string[]) => `{${ids.join(",")}}`;
const basic = (who: { name: string; secret: string }) => `Basic ${Buffer.from(`${who.name}:${who.secret}`).toString("base64")}`;

/** A probe that treats "Postgres is failing over" as "not yet". */
const orNot = <T>(probe: () => Promise<T>) => () => probe().catch(() => undefined);

interface Payment {
  obligationId: string;
  reference: string;
  amount: bigint;
  tries: number;
  acknowledgedAt?: number;
  replayed?: boolean;
}

/** Posts one payment until the intake answers 201 (a retry carries the same reference: at most once). */
async function pay(base: string, payment: Payment, deadline: number): Promise<void> {
  while (Date.now() < deadline) {
    payment.tries++;
    try {
      const response = await fetch(`${base}/api/obligations/${payment.obligationId}/payments`, {
        method: "POST",
        headers: { authorization: basic(FEED), "content-type": "application/json" },
        body: JSON.stringify({ reference: payment.reference, amount: payment.amount.toString() }),
        signal: AbortSignal.timeout(15_000),
      });
      const body = await response.text();
      if (response.status === 201) {
        payment.acknowledgedAt = Date.now();
        payment.replayed = response.headers.get("idempotent-replayed") === "true";
        return;
      }
      // A 4xx is a verdict on the payment, not an outage: retrying would hide it.
      if (response.status < 500) throw new Error(`payment ${payment.reference}: ${response.status} ${body}`);
    } catch (error) {
      if ((error as Error).message.startsWith("payment ")) throw error;
    }
    await sleep(200);
  }
  throw new Error(`payment ${payment.reference} not acknowledged after ${payment.tries} tries`);
}

interface Requeue {
  obligationId: string;
  tries: number;
  /** 202, or 409 when an earlier try that got no answer had acted. */
  answer?: number;
}

async function requeue(base: string, item: Requeue, deadline: number): Promise<void> {
  while (Date.now() < deadline) {
    item.tries++;
    try {
      const response = await fetch(`${base}/api/escalations/${item.obligationId}/requeue`, {
        method: "POST",
        headers: { authorization: basic(OPS), "content-type": "application/json" },
        body: JSON.stringify({ reason: "positions restored after the incident" }),
        signal: AbortSignal.timeout(15_000),
      });
      await response.arrayBuffer();
      if (response.status === 202 || (response.status === 409 && item.tries > 1)) {
        item.answer = response.status;
        return;
      }
      if (response.status < 500) throw new Error(`requeue ${item.obligationId}: ${response.status}`);
    } catch (error) {
      if ((error as Error).message.startsWith("requeue ")) throw error;
    }
    await sleep(300);
  }
  throw new Error(`requeue ${item.obligationId} not answered after ${item.tries} tries`);
}

async function readyz(base: string): Promise<number> {
  try {
    const response = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(5000) });
    await response.arrayBuffer();
    return response.status;
  } catch {
    return 0;
  }
}

async function dispersedOf(ids: readonly string[]): Promise<number> {
  const [row] = await db.execute<{ n: bigint }>(sql`select count(*) as n from obligations where id = any(${idList(ids)}::uuid[]) and dispersed`);
  return Number(row!.n);
}

describe("fault: Postgres primary failover (pg_auto_failover, multi-host DATABASE_URL)", () => {
  it("connects a read-write multi-host URL to the primary even with the standby listed first", async () => {
    // postgres.js 3.4.9 took a hot standby for read-write (it looked at default_transaction_read_only
    // only); patches/ carries libpq's meaning. Unpatched, this lands on the standby.
    const client = postgres(serviceUrl, { max: 1, onnotice: () => {} });
    try {
      const [row] = await client<{ port: number; recovery: boolean }[]>`select inet_server_port() as port, pg_is_in_recovery() as recovery`;
      expect(row).toEqual({ port: primary.port, recovery: false });
    } finally {
      await client.end();
    }
  });

  it("loses nothing and doubles nothing when the primary is killed under payments, healing and requeues, and the standby takes over", async () => {
    // Escalations to requeue later: obligations on mortgages without units, escalated by the workers;
    // then their positions are restored, as an operator would before requeuing.
    const broken = await givenOrphans(scenario.database, { count: REQUEUES, unfixable: REQUEUES, perMortgage: 10 });

    const env = { WORKER_CONCURRENCY: "4", SETTLEMENT_LISTENER_RECONNECT_MS: "200" };
    const workers: Child[] = [0, 1].map((i) => scenario.spawnWorker(`worker-${i}`, env));
    const port = await ephemeralPort();
    const server = scenario.children.cli("server", ["server"], {
      ...scenario.workerEnv(env),
      PORT: String(port),
      OPS_USERS: `${FEED.name}:service:${FEED.secret},${OPS.name}:operator:${OPS.secret}`,
    });
    const base = `http://127.0.0.1:${port}`;
    await scenario.explainFailure(waitFor(async () => (await readyz(base)) === 200, { timeoutMs: 60_000, what: "/readyz 200 before the failover" }));

    note("service up", { workers: workers.map((w) => w.pid), server: server.pid });
    // Only the broken ones are orphans yet: the scan (or the listeners' first catch-up scan, whichever
    // is first) sends them round their three attempts.
    await scanForOrphans(scenario.ctx, "fault-suite");
    await scenario.explainFailure(
      waitFor(
        async () => {
          const [row] = await db.execute<{ n: bigint }>(sql`
            select count(*) as n from dispersal_healing_attempts where obligation_id = any(${idList(broken.unfixableIds)}::uuid[]) and status = 'escalated'`);
          return Number(row!.n) === REQUEUES;
        },
        { timeoutMs: 60_000, what: "the broken obligations escalated", everyMs: 100 },
      ),
    );
    note("broken obligations escalated");
    await db.execute(sql`
      update mortgage_positions set units = 2500
       where mortgage_id in (select mortgage_id from obligations where id = any(${idList(broken.unfixableIds)}::uuid[]))`);

    // The load: orphans to heal, open obligations to pay in three lanes, escalations to requeue in one.
    const orphans = await givenOrphans(scenario.database, { count: ORPHANS, perMortgage: 25 });
    const open = await givenOrphans(scenario.database, { count: PAYMENTS, status: "due", perMortgage: 20 });
    const amounts = await db.execute<{ id: string; amount: bigint }>(sql`select id, amount from obligations where id = any(${idList(open.obligationIds)}::uuid[])`);
    const payments: Payment[] = amounts.map((o, i) => ({ obligationId: o.id, reference: `failover-${i}-${o.id.slice(0, 8)}`, amount: BigInt(o.amount), tries: 0 }));
    await scanForOrphans(scenario.ctx, "fault-suite");
    const deadline = Date.now() + 120_000;
    let next = 0;
    const lane = async () => {
      while (next < payments.length) {
        const payment = payments[next++]!;
        await pay(base, payment, deadline);
        await sleep(40);
      }
    };
    const paying = Promise.all([lane(), lane(), lane()]);
    const requeues: Requeue[] = broken.unfixableIds.map((obligationId) => ({ obligationId, tries: 0 }));
    const requeuing = (async () => {
      for (const item of requeues) {
        await requeue(base, item, deadline);
        await sleep(150);
      }
    })();
    paying.catch(() => {});
    requeuing.catch(() => {});

    await scenario.explainFailure(
      waitFor(async () => payments.filter((p) => p.acknowledgedAt).length >= PAYMENTS / 4, { timeoutMs: 60_000, what: "a quarter of the payments acknowledged", everyMs: 50 }),
    );
    const before = await scenario.progress();
    expect(await formation.writable()).toBe(primary);
    const killed = await formation.crash(primary);
    const crashedAt = Date.now();
    // /readyz while no node takes writes: the server's probe must say so (503), not hang or pass.
    const readiness: number[] = [];
    let promotedYet = false;
    const sampling = (async () => {
      while (!promotedYet) {
        readiness.push(await readyz(base));
        await sleep(200);
      }
    })();
    note("primary killed", { port: primary.port, pids: killed.length, progress: before, paid: payments.filter((p) => p.acknowledgedAt).length, requeued: requeues.filter((r) => r.answer).length });

    // Until the monitor has seen the crash it still names the old primary.
    const promoted = await waitFor(orNot(async () => ((await formation.writable()) ?? primary) !== primary && formation.writable()), {
      timeoutMs: 60_000,
      what: "the standby promoted",
      everyMs: 200,
    });
    promotedYet = true;
    await sampling;
    expect(promoted).toBe(standby);
    expect(readiness).toContain(503);
    note("standby promoted", { port: standby.port, afterMs: Date.now() - crashedAt, readiness: readiness.join(","), states: await formation.states() });

    await scenario.explainFailure(Promise.all([paying, requeuing]));
    const paidAfter = payments.filter((p) => p.acknowledgedAt! > crashedAt).length;
    note("payments and requeues answered", {
      paidAfter,
      retried: payments.filter((p) => p.tries > 1).length,
      replayed: payments.filter((p) => p.replayed).length,
      requeueTries: requeues.reduce((n, r) => n + r.tries, 0),
    });

    // No scan by the test: the listeners' notifications and catch-up scans must get every one dispersed.
    const everyone = [...orphans.obligationIds, ...open.obligationIds, ...broken.unfixableIds];
    await scenario.explainFailure(
      waitFor(orNot(async () => (await dispersedOf(everyone)) === everyone.length), { timeoutMs: 90_000, what: "every settled obligation dispersed", everyMs: 250 }),
    );
    await scenario.waitQuiescent();

    // The same processes, reconnected by themselves.
    expect({ workers: workers.map((w) => w.alive()), server: server.alive() }, whyExited([...workers, server])).toEqual({ workers: [true, true], server: true });
    expect(await readyz(base)).toBe(200);
    expect(paidAfter).toBeGreaterThan(0);
    const catchUps = (await scenario.ctx.queues.healing.getJobs(["completed", "failed", "active", "wait"], 0, 500))
      .filter((j) => (j.timestamp ?? 0) >= crashedAt)
      .map((j) => String((j.data as { requestedBy?: string }).requestedBy));
    note("scans after the crash", { catchUps });
    expect(catchUps).toContain("settlement-listener: listener reconnected");

    // Every acknowledged payment is on the new primary (read there alone), once, with its amount.
    const onNewPrimary = postgres(formation.nodeUrl(standby, DATABASE), { max: 1, onnotice: () => {}, types: { bigint: postgres.BigInt } });
    try {
      const rows = await onNewPrimary<{ obligation_id: string; reference: string; amount: bigint; postings: bigint }[]>`
        select obligation_id::text, min(metadata->>'reference') as reference, sum(amount)::int8 as amount, count(*) as postings
          from cash_journal_entries
         where entry_type = 'CASH_RECEIVED' and obligation_id = any(${idList(open.obligationIds)}::uuid[])
         group by obligation_id`;
      const found = new Map(rows.map((r) => [r.obligation_id, r]));
      const wrong = payments.filter((p) => {
        const row = found.get(p.obligationId);
        return !row || row.postings !== 1n || row.amount !== p.amount || row.reference !== p.reference;
      });
      expect(wrong.map((p) => ({ ...p, found: found.get(p.obligationId) }))).toEqual([]);
    } finally {
      await onNewPrimary.end();
    }

    // The requeued escalations: resolved, their SUSPENSE reversed, one escalation and one resolution each.
    const [requeued] = await db.execute<{ resolved: bigint; suspense_left: bigint; escalations: bigint; resolutions: bigint }>(sql`
      select (select count(*) from dispersal_healing_attempts where obligation_id = any(${idList(broken.unfixableIds)}::uuid[]) and status = 'resolved') as resolved,
             (select count(*) from cash_accounts where family = 'SUSPENSE' and obligation_id = any(${idList(broken.unfixableIds)}::uuid[])
                and cumulative_debits <> cumulative_credits) as suspense_left,
             (select count(*) from audit_log where resource_type = 'obligation' and resource_id = any(${idList(broken.unfixableIds)}::text[])
                and action = 'dispersal.self_healing_escalated') as escalations,
             (select count(*) from audit_log where resource_type = 'obligation' and resource_id = any(${idList(broken.unfixableIds)}::text[])
                and action = 'dispersal.self_healing_resolved') as resolutions`);
    expect(requeued).toEqual({ resolved: BigInt(REQUEUES), suspense_left: 0n, escalations: BigInt(REQUEUES), resolutions: BigInt(REQUEUES) });

    // Nothing left for the net: a scan now finds no orphan.
    expect((await scanForOrphans(scenario.ctx, "fault-suite")).found).toBe(0);
    const end = await measureEndState(scenario.database, { fixable: [...orphans.obligationIds, ...open.obligationIds], unfixable: [] });
    recordFaults(import.meta.url, "Postgres primary killed, standby promoted by pg_auto_failover", { injected: 1, postgresFailovers: 1, ...end });
    expectNothingLostOrDoubled(end, { dispersed: ORPHANS + PAYMENTS, escalated: 0 });
  }, 240_000);

  it("stops every server of the formation and removes its temp dir", async () => {
    const dirs = formation.nodes.map((n) => n.pgdata);
    await scenario.close();
    await formation.stop();
    expect(formation.nodes.map((n) => n.child.alive())).toEqual([false, false]);
    expect(dirs.every((d) => !existsSync(d))).toBe(true);
  }, 60_000);
});
