// Fault: the settlement listeners miss notifications. (1) Every listening process is stopped (one
// SIGTERM, one SIGKILL) while 500 obligations are settled by SQL; when the processes come back,
// their listeners' catch-up scan disperses every one, long before the scheduled scan (an hour
// here), none twice. (2) The listeners' connections are killed again and again while settlements
// stream in: each reconnect catches up, nothing is lost or doubled.
import { sql } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import { readHeartbeats } from "../../src/queues/listenerHeartbeats.js";
import { givenOrphans } from "../helpers/orphans.js";
import { waitFor, type Child } from "./children.js";
import { expectNothingLostOrDoubled, measureEndState } from "./endState.js";
import { recordFaults } from "./faultCounts.js";
import { note, Scenario } from "./scenario.js";

const scenario = await Scenario.open();
afterAll(() => scenario.close());
const db = scenario.database.db;

/** How many of these processes report a listener that is LISTENing (by pid: a killed one's heartbeat stays fresh a while). */
async function listening(children: Child[]): Promise<number> {
  const pids = new Set(children.map((c) => String(c.pid)));
  const heartbeats = await readHeartbeats(scenario.ctx.queues);
  return heartbeats.filter((h) => h.up && pids.has(h.process.split(":").pop()!)).length;
}

async function listenerConnections(): Promise<number> {
  const [row] = await db.execute<{ n: bigint }>(sql`
    select count(*) as n from pg_stat_activity where application_name = 'dispersal-settlement-listener' and datname = current_database()`);
  return Number(row!.n);
}

async function scansIdle(): Promise<boolean> {
  // Not "delayed": the scheduler keeps its next scan (an hour away) there.
  const counts = await scenario.ctx.queues.healing.getJobCounts("active", "wait", "prioritized");
  return Object.values(counts).every((n) => n === 0);
}

async function spawnListeningWorkers(tag: string): Promise<Child[]> {
  const workers = [0, 1].map((i) => scenario.spawnWorker(`worker-${tag}-${i}`, { SETTLEMENT_LISTENER_RECONNECT_MS: "200" }));
  await scenario.explainFailure(waitFor(async () => (await listening(workers)) === 2, { timeoutMs: 30_000, what: "two listening workers" }));
  return workers;
}

async function dispersedOf(ids: string[]): Promise<number> {
  const [row] = await db.execute<{ n: bigint }>(sql`select count(*) as n from obligations where id = any(${`{${ids.join(",")}}`}::uuid[]) and dispersed`);
  return Number(row!.n);
}

/** Scan jobs that ran since `since` (ms), with who asked for each. */
async function scansSince(since: number): Promise<string[]> {
  const jobs = await scenario.ctx.queues.healing.getJobs(["completed", "failed", "active"], 0, 500);
  return jobs.filter((j) => (j.processedOn ?? 0) >= since).map((j) => String((j.data as { requestedBy?: string }).requestedBy));
}

describe("fault: settlement listeners miss notifications", () => {
  it("disperses 500 obligations settled while every listening process was stopped, once each, without waiting for the scheduled scan", async () => {
    const { obligationIds } = await givenOrphans(scenario.database, { count: 500, status: "due", perMortgage: 20 });
    const first = await spawnListeningWorkers("a");
    await waitFor(scansIdle, { timeoutMs: 30_000, what: "the start-up catch-up scans" });

    await Promise.all([first[0]!.kill("SIGTERM"), first[1]!.kill("SIGKILL")]);
    await waitFor(async () => (await listenerConnections()) === 0, { timeoutMs: 30_000, what: "no listener connected" });
    note("listening workers stopped");

    // Nobody hears these: 200 settled one statement each (one notification each), 300 in one statement (a burst).
    const settledFrom = Date.now();
    await db.transaction(async (tx) => {
      for (const id of obligationIds.slice(0, 200)) await tx.execute(sql`update obligations set status = 'settled', settled_at = now() where id = ${id}::uuid`);
    });
    await db.execute(sql`update obligations set status = 'settled', settled_at = now() where id = any(${`{${obligationIds.slice(200).join(",")}}`}::uuid[])`);
    expect(await dispersedOf(obligationIds)).toBe(0);

    const restarted = Date.now();
    const second = await spawnListeningWorkers("b");
    await scenario.explainFailure(
      waitFor(async () => (await dispersedOf(obligationIds)) === 500, { timeoutMs: 60_000, what: "all 500 dispersed", everyMs: 100 }),
    );
    const seconds = (Date.now() - restarted) / 1000;
    const scans = await scansSince(settledFrom);
    note("dispersed after the restart", { seconds, scans });
    // The work was done by the listeners' catch-up scans, not by the scheduled one (due in an hour).
    expect(scans.length).toBeGreaterThan(0);
    expect(scans.every((by) => by.startsWith("settlement-listener"))).toBe(true);

    await scenario.waitQuiescent();
    const end = await measureEndState(scenario.database, { fixable: obligationIds, unfixable: [] });
    recordFaults(import.meta.url, "listening processes stopped while 500 settled", { injected: 2, ...end });
    expectNothingLostOrDoubled(end, { dispersed: 500, escalated: 0 });
    await Promise.all(second.map((w) => w.kill("SIGTERM")));
  }, 180_000);

  it("loses nothing and doubles nothing when the listeners' connections are killed again and again while settlements stream in", async () => {
    const { obligationIds } = await givenOrphans(scenario.database, { count: 500, status: "due", perMortgage: 20, unfixable: 20 });
    const unfixable = new Set((await db.execute<{ id: string }>(sql`
      select o.id from obligations o where o.id = any(${`{${obligationIds.join(",")}}`}::uuid[])
         and not exists (select 1 from mortgage_positions p where p.mortgage_id = o.mortgage_id and p.units > 0)`)).map((r) => r.id));
    const workers = await spawnListeningWorkers("c");
    await waitFor(scansIdle, { timeoutMs: 30_000, what: "the start-up catch-up scans" });

    // Five rounds: kill both listener connections, settle 100 in four statements while they
    // reconnect (some of those notifications have no listener), wait until both listen again.
    let kills = 0;
    for (let round = 0; round < 5; round++) {
      const [row] = await db.execute<{ n: bigint }>(sql`
        select count(pg_terminate_backend(pid)) as n from pg_stat_activity
         where application_name = 'dispersal-settlement-listener' and datname = current_database()`);
      kills += Number(row!.n);
      for (let i = round * 100; i < (round + 1) * 100; i += 25) {
        await db.execute(sql`update obligations set status = 'settled', settled_at = now() where id = any(${`{${obligationIds.slice(i, i + 25).join(",")}}`}::uuid[])`);
      }
      await waitFor(async () => (await listenerConnections()) === 2 && (await listening(workers)) === 2, { timeoutMs: 30_000, what: "both listeners back" });
    }
    note("listener connections killed", { kills });
    expect(kills).toBe(10);

    const fixable = obligationIds.filter((id) => !unfixable.has(id));
    await scenario.explainFailure(
      waitFor(async () => (await dispersedOf(fixable)) === fixable.length, { timeoutMs: 60_000, what: "every fixable one dispersed", everyMs: 100 }),
    );
    await waitFor(async () => (await listening(workers)) === 2, { timeoutMs: 30_000, what: "both listeners back" });
    const scans = await scenario.settle();
    const end = await measureEndState(scenario.database, { fixable, unfixable: [...unfixable] });
    recordFaults(import.meta.url, "listener connections killed while settlements stream in", { injected: kills, ...end });
    expectNothingLostOrDoubled(end, { dispersed: fixable.length, escalated: unfixable.size });
    expect(scans.at(-1)!.found).toBe(0);
  }, 180_000);
});
