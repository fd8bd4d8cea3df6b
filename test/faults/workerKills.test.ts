// Fault 1: worker processes SIGKILLed mid-batch, again and again (each one respawned). Their active
// jobs stall and are taken over by the others; every obligation ends dispersed or escalated once.
import { afterAll, describe, expect, it } from "vitest";
import { expectNothingLostOrDoubled, measureEndState } from "./endState.js";
import { recordFaults } from "./faultCounts.js";
import { note, Scenario } from "./scenario.js";
import { waitFor, type Child } from "./children.js";
import { scanForOrphans } from "../../src/jobs/scan.js";

const scenario = await Scenario.open();
afterAll(() => scenario.close());

describe("fault: worker processes killed mid-batch", () => {
  it("takes over the stalled jobs of every killed worker; each obligation ends dispersed or escalated exactly once", async () => {
    const orphans = await scenario.seedOrphans({ fixable: 1400, unfixable: 100 });
    // Concurrency 4 keeps the batch in flight long enough to kill into it several times.
    const env = { WORKER_CONCURRENCY: "4" };
    const workers: Child[] = [0, 1, 2].map((i) => scenario.spawnWorker(`worker-${i}`, env));
    const scan = await scanForOrphans(scenario.ctx, "fault-suite");
    expect(scan.found).toBeGreaterThan(0);

    let kills = 0;
    const takenOver = new Set<string>();
    // The last kill lands after the fixable ones, while the unfixable ones go through their attempts.
    for (const [round, share] of [0.1, 0.3, 0.5, 0.7, 0.94].entries()) {
      await scenario.waitForProgress(share);
      // Kill a worker that holds active jobs right now: those are the jobs that must be taken over.
      const active = await waitFor(async () => {
        const jobs = await scenario.ctx.queues.retrigger.getJobs(["active"], 0, 200);
        return jobs.length > 0 ? jobs : undefined;
      }, { timeoutMs: 5_000, what: "active jobs", everyMs: 20 }).catch(() => []);
      const pidsWithJobs = new Set(active.map((j) => Number(j.processedBy?.split(":").pop())));
      const victimIndex = Math.max(0, workers.findIndex((w) => w.alive() && pidsWithJobs.has(w.pid)));
      const victim = workers[victimIndex]!;
      for (const job of active) if (Number(job.processedBy?.split(":").pop()) === victim.pid) takenOver.add(job.id!);
      const exit = await victim.kill("SIGKILL");
      expect(exit.signal).toBe("SIGKILL");
      kills++;
      note("worker killed", { round, pid: victim.pid, activeJobs: active.length, progress: await scenario.progress() });
      workers[victimIndex] = scenario.spawnWorker(`worker-${victimIndex}-respawn-${round}`, env);
    }

    // Jobs the killed workers held were taken over by the survivors (not lost with the process).
    await scenario.waitQuiescent();
    const stalledJobs = (await Promise.all([...takenOver].map((id) => scenario.ctx.queues.retrigger.getJob(id)))).filter((j) => j !== undefined);
    const states = await Promise.all(stalledJobs.map((j) => j!.getState()));
    expect(states.filter((s) => s !== "completed" && s !== "failed" && s !== "unknown")).toEqual([]);
    const stalledThenFinished = stalledJobs.filter((j) => j!.stalledCounter >= 1 && j!.finishedOn);
    expect(stalledThenFinished.length).toBeGreaterThan(0);

    const scans = await scenario.settle();
    const end = await measureEndState(scenario.database, orphans);
    recordFaults(import.meta.url, "worker SIGKILL mid-batch", { injected: kills, ...end });
    expect({ takenOver: takenOver.size > 0, live: workers.every((w) => w.alive()) }).toEqual({ takenOver: true, live: true });
    expectNothingLostOrDoubled(end, { dispersed: 1400, escalated: 100 });
    expect(scans.at(-1)!.found).toBe(0);
  }, 180_000);
});
