// Fault 4: Postgres goes away under the workers. Their backends are terminated
// (pg_terminate_backend) again and again, and through a loopback TCP proxy Postgres first refuses
// connections, then accepts and resets them, for seconds at a time. Jobs are put back without using
// an attempt; no dispersal is half-written; the workers stay up; /readyz says 503, then 200.
import { sql } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import { scanForOrphans } from "../../src/jobs/scan.js";
import { databaseUrl } from "../helpers/env.js";
import { sleep, waitFor, whyExited, type Child } from "./children.js";
import { expectNothingLostOrDoubled, measureEndState } from "./endState.js";
import { recordFaults } from "./faultCounts.js";
import { ephemeralPort } from "./redisServers.js";
import { note, Scenario } from "./scenario.js";
import { TcpProxy } from "./tcpProxy.js";

const OUTAGE_MS = 3000;
const scenario = await Scenario.open();
const proxy = await TcpProxy.start({ host: "127.0.0.1", port: 5432 });
afterAll(async () => {
  await scenario.close();
  await proxy.close();
});

const throughProxy = (() => {
  const url = new URL(databaseUrl(scenario.databaseName));
  url.port = String(proxy.port);
  return url.toString();
})();

async function terminateWorkerBackends(): Promise<number> {
  const rows = await scenario.database.db.execute<{ terminated: boolean }>(sql`
    select pg_terminate_backend(pid) as terminated from pg_stat_activity
     where datname = ${scenario.databaseName} and application_name like 'dispersal%' and pid <> pg_backend_pid()`);
  return rows.filter((r) => r.terminated).length;
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

describe("fault: Postgres connections killed and Postgres refusing connections", () => {
  it("retries without using attempts or escalating fixable obligations, writes no partial dispersal, keeps the workers up", async () => {
    const orphans = await scenario.seedOrphans({ fixable: 1100, unfixable: 100 });
    const env = { DATABASE_URL: throughProxy, WORKER_CONCURRENCY: "4" };
    const workers: Child[] = [0, 1, 2].map((i) => scenario.spawnWorker(`worker-${i}`, env));
    const port = await ephemeralPort();
    const server = scenario.children.cli("server", ["server"], {
      ...scenario.workerEnv(env),
      PORT: String(port),
      OPS_USERS: "ops:operator:fault-suite-secret-1",
    });
    const base = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await readyz(base)) === 200, { timeoutMs: 60_000, what: "/readyz 200 before the faults" });
    expect((await scanForOrphans(scenario.ctx, "fault-suite")).found).toBeGreaterThan(0);

    let injected = 0;
    let terminated = 0;
    const readiness: Array<{ phase: string; status: number }> = [];

    const terminateRounds = async (rounds: number) => {
      for (let round = 0; round < rounds; round++) {
        terminated += await terminateWorkerBackends();
        injected++;
        await sleep(350);
      }
      note("backends terminated", { rounds, terminated, progress: await scenario.progress() });
    };
    const outage = async (label: string, begin: () => Promise<void> | void) => {
      const started = Date.now();
      await begin();
      injected++;
      note(`outage (${label}) begins`, { progress: await scenario.progress() });
      const during = await waitFor(async () => ((await readyz(base)) === 503 ? 503 : undefined), {
        timeoutMs: OUTAGE_MS,
        what: `/readyz 503 during the ${label} outage`,
        everyMs: 100,
      }).catch(() => readyz(base));
      readiness.push({ phase: `during ${label} outage`, status: during });
      await sleep(Math.max(0, OUTAGE_MS - (Date.now() - started)));
      await proxy.restore();
      note(`outage (${label}) ends`, { progress: await scenario.progress() });
      const after = await waitFor(async () => ((await readyz(base)) === 200 ? 200 : undefined), {
        timeoutMs: 20_000,
        what: `/readyz 200 after the ${label} outage`,
        everyMs: 200,
      }).catch(() => readyz(base));
      readiness.push({ phase: `after ${label} outage`, status: after });
    };

    await scenario.waitForProgress(0.1);
    await terminateRounds(3);
    // Outage 1: nothing listens. Outage 2: connections accepted and reset at once.
    await scenario.waitForProgress(0.35);
    await outage("refused", () => proxy.refuse());
    await scenario.waitForProgress(0.6);
    await outage("reset", () => proxy.resetNewConnections());
    await scenario.waitForProgress(0.8);
    await terminateRounds(2);
    // Outage 3 when only the unfixable ones are left: their final failures and escalations run into
    // it (an escalation that cannot commit is left to the scan's backstop).
    await scenario.waitForProgress(1100 / 1200);
    await outage("refused during escalations", () => proxy.refuse());
    await terminateRounds(1);

    const scans = await scenario.settle();
    const end = await measureEndState(scenario.database, orphans);
    const [attempts] = await scenario.database.db.execute<{ fixable_wasted: bigint; unfixable_wrong: bigint }>(sql`
      select count(*) filter (where x.fixable and (h.attempt_count <> 1 or h.last_error is not null or h.status <> 'resolved')) as fixable_wasted,
             count(*) filter (where not x.fixable and (h.attempt_count <> 3 or h.status <> 'escalated' or h.last_error not like 'no active positions%')) as unfixable_wrong
        from (select (e->>0)::uuid as id, (e->>1)::boolean as fixable
                from jsonb_array_elements(${JSON.stringify([...orphans.fixable.map((id) => [id, true]), ...orphans.unfixable.map((id) => [id, false])])}::jsonb) e) x
        join dispersal_healing_attempts h on h.obligation_id = x.id`);
    recordFaults(import.meta.url, "Postgres backends terminated, connections refused and reset", { injected, ...end });
    note("end", { terminated, readiness, scans: scans.length, attempts });

    expect(terminated).toBeGreaterThan(0);
    expect({ workers: workers.map((w) => w.alive()), server: server.alive() }, whyExited([...workers, server])).toEqual({ workers: [true, true, true], server: true });
    expect(readiness).toEqual([
      { phase: "during refused outage", status: 503 },
      { phase: "after refused outage", status: 200 },
      { phase: "during reset outage", status: 503 },
      { phase: "after reset outage", status: 200 },
      { phase: "during refused during escalations outage", status: 503 },
      { phase: "after refused during escalations outage", status: 200 },
    ]);
    // An outage is not the obligation's fault: no attempt of a fixable one was used up by it.
    expect({ fixableWasted: attempts!.fixable_wasted, unfixableWrong: attempts!.unfixable_wrong }).toEqual({ fixableWasted: 0n, unfixableWrong: 0n });
    expectNothingLostOrDoubled(end, { dispersed: 1100, escalated: 100 });
  }, 180_000);
});
