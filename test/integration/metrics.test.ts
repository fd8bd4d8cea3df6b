import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { JOB } from "../../src/queues/names.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { testPipeline } from "../helpers/pipeline.js";
import { spawnCli, waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";
import { sample } from "../helpers/prometheusText.js";

const SCRAPER = { name: "prometheus", secret: "scrape-secret-0001" };
const OPERATOR = { name: "olga", secret: "olga-operator-secret" };

const database = await testDb();
const pipeline = testPipeline(database, { OPS_USERS: `${SCRAPER.name}:viewer:${SCRAPER.secret},${OPERATOR.name}:operator:${OPERATOR.secret}` });
const { ctx, config } = pipeline;
const retrigger = ctx.queues.retrigger.name;
const healing = ctx.queues.healing.name;

let http: HttpServer;

function basic(user: { name: string; secret: string }): string {
  return `Basic ${Buffer.from(`${user.name}:${user.secret}`).toString("base64")}`;
}

async function scrape(url = http.url): Promise<string> {
  const response = await fetch(`${url}/metrics`, { headers: { authorization: basic(SCRAPER) } });
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toMatch(/text\/plain/);
  return response.text();
}

beforeAll(async () => {
  http = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
});

afterAll(async () => {
  await http?.close();
});

describe("/metrics", () => {
  it("needs credentials", async () => {
    expect((await fetch(`${http.url}/metrics`)).status).toBe(401);
  });

  it("moves when jobs complete and fail in a worker of another process", async () => {
    const before = await scrape();
    for (const queue of [retrigger, healing]) {
      expect(sample(before, "dispersal_jobs_completed_total", { queue })).toBeGreaterThanOrEqual(0);
      expect(sample(before, "dispersal_jobs_failed_total", { queue })).toBeGreaterThanOrEqual(0);
    }
    expect(sample(before, "dispersal_escalations_open")).toBe(0);
    expect(sample(before, "dispersal_retrigger_backlog_cap")).toBe(20_000);
    expect(sample(before, "dispersal_healing_scan_duration_seconds_count")).toBe(0);

    await givenSettledObligation(database, { lenders: [5000, 5000] });
    await givenSettledObligation(database, { lenders: [3000, 7000] });
    const unfixable = await givenSettledObligation(database, { lenders: [0] });
    await ctx.queues.retrigger.add(JOB.retrigger, { obligationId: "not-a-uuid" } as never, { attempts: 3 });
    const scan = await fetch(`${http.url}/api/healing/scan`, {
        method: "POST",
        headers: { authorization: basic(OPERATOR), "content-type": "application/json" },
        body: JSON.stringify({ reason: "positions fixed" }),
      });
    expect(scan.status).toBe(202);

    // The workers run in a child process: this server only sees them through Redis and Postgres.
    const worker = spawnCli(["worker", "--concurrency", "4"], {
      DATABASE_URL: database.url,
      REDIS_URL: config.REDIS_URL,
      QUEUE_PREFIX: config.QUEUE_PREFIX,
      HEALING_BACKOFF_MS: "20",
      LOG_LEVEL: "warn",
    });
    try {
      const after = await waitFor(
        async () => {
          const text = await scrape();
          const moved =
            sample(text, "dispersal_jobs_completed_total", { queue: retrigger }) - sample(before, "dispersal_jobs_completed_total", { queue: retrigger }) >= 2 &&
            sample(text, "dispersal_jobs_failed_total", { queue: retrigger }) - sample(before, "dispersal_jobs_failed_total", { queue: retrigger }) >= 2 &&
            sample(text, "dispersal_jobs_completed_total", { queue: healing }) >= 1 &&
            sample(text, "dispersal_escalations_open") === 1;
          return moved ? text : undefined;
        },
        { timeoutMs: 25_000, what: `metrics to move (worker output: ${worker.output().slice(-500)})`, everyMs: 250 },
      );

      // Failed for good: the unfixable obligation's last attempt and the malformed job, not every attempt.
      expect(sample(after, "dispersal_jobs_failed_total", { queue: retrigger }) - sample(before, "dispersal_jobs_failed_total", { queue: retrigger })).toBe(2);
      expect(sample(after, "dispersal_jobs_unrecoverable_total", { queue: retrigger, reason: "malformed_job_data" })).toBe(1);
      expect(sample(after, "dispersal_healing_scan_duration_seconds_count")).toBeGreaterThanOrEqual(1);
      expect(sample(after, "dispersal_healing_orphans_found_total")).toBeGreaterThanOrEqual(3);
      expect(sample(after, "dispersal_escalations_total") - sample(before, "dispersal_escalations_total")).toBe(1);
      expect(sample(after, "dispersal_healing_obligations", { status: "escalated" })).toBe(1);
      expect(sample(after, "dispersal_healing_obligations", { status: "resolved" }) - sample(before, "dispersal_healing_obligations", { status: "resolved" })).toBe(2);
      expect(sample(after, "dispersal_queue_jobs", { queue: retrigger, state: "failed" })).toBe(2);
      expect(sample(after, "dispersal_scrape_source_up", { source: "redis" })).toBe(1);
      expect(sample(after, "dispersal_scrape_source_up", { source: "postgres" })).toBe(1);

      // A requeue moves the SQL-backed numbers: one requeue more, one open escalation less.
      await database.db.execute(sql`update mortgage_positions set units = 10000 where mortgage_id = ${unfixable.mortgageId}::uuid`);
      const requeue = await fetch(`${http.url}/api/escalations/${unfixable.obligationId}/requeue`, {
        method: "POST",
        headers: { authorization: basic(OPERATOR), "content-type": "application/json" },
        body: JSON.stringify({ reason: "positions fixed" }),
      });
      expect(requeue.status).toBe(202);
      const resolved = await waitFor(
        async () => {
          const text = await scrape();
          return sample(text, "dispersal_escalations_resolved_total") === 1 ? text : undefined;
        },
        { timeoutMs: 15_000, what: "the requeued escalation to resolve", everyMs: 250 },
      );
      expect(sample(resolved, "dispersal_requeues_total") - sample(before, "dispersal_requeues_total")).toBe(1);
      expect(sample(resolved, "dispersal_escalations_open")).toBe(0);
      expect(sample(resolved, "dispersal_jobs_completed_total", { queue: retrigger }) - sample(after, "dispersal_jobs_completed_total", { queue: retrigger })).toBeGreaterThanOrEqual(1);
    } finally {
      await worker.stop("SIGTERM");
    }
  });

  it("lives on its own registry, so two servers in one process both serve it", async () => {
    const second = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
    try {
      const [first, other] = await Promise.all([scrape(), scrape(second.url)]);
      expect(sample(first, "dispersal_escalations_open")).toBe(0);
      expect(sample(other, "dispersal_escalations_open")).toBe(0);
      expect(sample(other, "dispersal_jobs_completed_total", { queue: retrigger })).toBe(0);
    } finally {
      await second.close();
    }
  });
});
