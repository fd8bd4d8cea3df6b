// A worker process serves its own /metrics on METRICS_PORT (issue 21 item 6): the jobs it ran and
// its dispersal batches, behind the same credentials as the server's; a port in use stops it.
import { createServer, type Server } from "node:net";
import { sql } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { httpCall } from "../helpers/http.js";
import { spawnCli, waitFor } from "../helpers/processes.js";
import { sample } from "../helpers/prometheusText.js";
import { testDb } from "../helpers/testDb.js";
import { testQueues } from "../helpers/testQueues.js";

const database = await testDb();
const { prefix, redisUrl } = testQueues();
const SCRAPER = { name: "prometheus", secret: "scrape-secret-0001" };
const env = { DATABASE_URL: database.url, REDIS_URL: redisUrl, QUEUE_PREFIX: prefix, HOST: "127.0.0.1", OPS_USERS: `${SCRAPER.name}:viewer:${SCRAPER.secret}`, LOG_LEVEL: "silent" };

const holders: Server[] = [];
afterAll(() => Promise.all(holders.map((h) => new Promise<void>((resolve) => h.close(() => resolve())))));

/** A port held by this test (the second test's conflict), or one just freed for the worker to take. */
async function port(options: { keep: boolean }): Promise<number> {
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
  const { port } = holder.address() as { port: number };
  if (options.keep) holders.push(holder);
  else await new Promise<void>((resolve) => holder.close(() => resolve()));
  return port;
}

describe("dispersal worker with METRICS_PORT", () => {
  it("serves the jobs it ran and its dispersal batches on /metrics, behind credentials", async () => {
    const metricsPort = await port({ keep: false });
    const worker = spawnCli(["worker"], { ...env, METRICS_PORT: String(metricsPort) });
    const base = `http://127.0.0.1:${metricsPort}`;
    await waitFor(async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.ok, { timeoutMs: 60_000, what: "the worker's /healthz on METRICS_PORT" });

    const { obligationId } = await givenSettledObligation(database, { lenders: [6000, 4000] });
    await waitFor(
      async () => (await database.db.execute<{ dispersed: boolean }>(sql`select dispersed from obligations where id = ${obligationId}::uuid`))[0]?.dispersed,
      { timeoutMs: 20_000, what: "the worker to disperse the obligation" },
    );

    expect((await httpCall(base, "GET", "/metrics")).status).toBe(401);
    const metrics = await waitFor(
      async () => {
        const text = (await httpCall(base, "GET", "/metrics", { as: SCRAPER })).text;
        return sample(text, "dispersal_worker_jobs_total", { queue: "dispersal-retrigger", outcome: "completed" }) >= 1 ? text : undefined;
      },
      { timeoutMs: 10_000, what: "the completed retrigger job on the worker's /metrics" },
    );
    expect(sample(metrics, "dispersal_worker_jobs_total", { queue: "dispersal-retrigger", outcome: "failed" })).toBe(0);
    expect(sample(metrics, "dispersal_worker_dispersal_batches_total")).toBeGreaterThanOrEqual(1);
    expect(sample(metrics, "dispersal_worker_dispersal_batch_obligations_total")).toBeGreaterThanOrEqual(1);
    expect(sample(metrics, "dispersal_worker_jobs_active", { queue: "dispersal-retrigger" })).toBe(0);
    expect(metrics).toContain(`dispersal_process_info{queue_prefix="${prefix}"} 1`);
    expect(sample(metrics, "dispersal_process_resident_memory_bytes")).toBeGreaterThan(0);

    expect(await worker.stop("SIGTERM")).toBe(0);
  }, 120_000);

  it("exits non-zero at start, naming METRICS_PORT, when the port is in use", async () => {
    const taken = await port({ keep: true });
    const worker = spawnCli(["worker"], { ...env, METRICS_PORT: String(taken) });
    const exited = await Promise.race([worker.exited, new Promise<"alive">((r) => setTimeout(() => r("alive"), 45_000))]);
    expect(exited, `still running after 45 s:\n${worker.output()}`).not.toBe("alive");
    expect(exited).not.toBe(0);
    expect(worker.output().trim().split("\n")).toEqual([`dispersal: METRICS_PORT ${taken} is already in use on 127.0.0.1: stop what holds it or set METRICS_PORT to a free port`]);
    }, 90_000);

  it("is off unless set, and a bad METRICS_PORT is refused at start, named", () => {
    expect(loadConfig({}).METRICS_PORT).toBeUndefined();
    expect(loadConfig({ METRICS_PORT: "9464" }).METRICS_PORT).toBe(9464);
    expect(() => loadConfig({ METRICS_PORT: "abc" })).toThrow(/^Invalid configuration: METRICS_PORT must be a port number from 0 to 65535/);
    expect(() => loadConfig({ METRICS_PORT: "70000" })).toThrow(/^Invalid configuration: METRICS_PORT must be a port number/);
  });
});
