// Fault 5: ten worker processes started at the same instant (a deploy, a restart of the fleet). They
// race to migrate and to upsert the schedules: exactly one scan scheduler and one reconciliation
// scheduler result, the scheduled scan runs once, and the ten share the orphans exactly once.
import { afterAll, describe, expect, it } from "vitest";
import { SCHEDULER } from "../../src/queues/names.js";
import { waitFor } from "./children.js";
import { expectNothingLostOrDoubled, measureEndState } from "./endState.js";
import { recordFaults } from "./faultCounts.js";
import { note, Scenario } from "./scenario.js";

const scenario = await Scenario.open();
afterAll(() => scenario.close());

describe("fault: ten worker processes started at once", () => {
  it("registers exactly one scan scheduler and one reconciliation scheduler, and heals every orphan once", async () => {
    const orphans = await scenario.seedOrphans({ fixable: 1100, unfixable: 60 });
    const { healing, reconciliation, retrigger } = scenario.ctx.queues;
    const workers = Array.from({ length: 10 }, (_, i) => scenario.spawnWorker(`worker-${i}`, { WORKER_CONCURRENCY: "4" }));

    // Every process is up when each one's retrigger worker holds its blocking connection.
    await scenario.explainFailure(
      waitFor(
        async () => {
          const names = new Set((await retrigger.getWorkers()).map((w) => String(w.rawname ?? "").split(":").pop()));
          return workers.every((w) => names.has(String(w.pid)));
        },
        { timeoutMs: 90_000, what: "all ten worker processes connected", everyMs: 250 },
      ),
    );
    note("ten workers up", { progress: await scenario.progress() });

    const scanSchedulers = await healing.getJobSchedulers();
    const reconciliationSchedulers = await reconciliation.getJobSchedulers();
    expect(scanSchedulers.map((s) => ({ key: s.key, every: Number(s.every) }))).toEqual([{ key: SCHEDULER.scan, every: 3_600_000 }]);
    expect(reconciliationSchedulers.map((s) => ({ key: s.key, pattern: s.pattern, tz: s.tz })).sort((a, b) => a.key.localeCompare(b.key))).toEqual([
      { key: SCHEDULER.reconciliation, pattern: "0 7 * * *", tz: "UTC" },
      { key: SCHEDULER.fullReconciliation, pattern: "30 7 * * 0", tz: "UTC" },
    ]);

    // The scheduled scan (run at once by an `every` schedule) runs once; besides it, only the
    // settlement listeners' catch-up scans (each process asks for one when its listener connects;
    // requests made while one waits join it) and nobody else.
    await scenario.settle();
    const scanJobs = await healing.getJobs(["completed", "failed", "active", "wait"], 0, 100);
    const requestedBy = (j: (typeof scanJobs)[number]) => String((j.data as { requestedBy?: string }).requestedBy);
    const ran = scanJobs.filter((j) => j.finishedOn || j.processedOn);
    const ranScans = ran.filter((j) => requestedBy(j) === "scheduler");
    const catchUps = ran.filter((j) => requestedBy(j) !== "scheduler");
    const end = await measureEndState(scenario.database, orphans);
    recordFaults(import.meta.url, "ten worker processes started at once", { injected: 1, ...end });
    note("end", { scheduledScansRun: ranScans.length, catchUpScansRun: catchUps.length, byProcess: ranScans.map((j) => j.processedBy) });

    expect(await healing.getJobSchedulersCount()).toBe(1);
    expect(await reconciliation.getJobSchedulersCount()).toBe(2);
    expect(ranScans).toHaveLength(1);
    expect(catchUps.length).toBeLessThanOrEqual(workers.length);
    expect(catchUps.every((j) => requestedBy(j).startsWith("settlement-listener: listener connected"))).toBe(true);
    expect(workers.map((w) => w.alive())).toEqual(workers.map(() => true));
    expectNothingLostOrDoubled(end, { dispersed: 1100, escalated: 60 });
  }, 180_000);
});
