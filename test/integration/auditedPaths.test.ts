// No way around the audited path (issue 10): Bull Board's side doors through its real HTTP API with
// an operator's credentials, the audit row of a request whose client hangs up, schedules that come
// back, the retrigger guard, sign-in throttling, TRUST_PROXY and malformed cursors.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "node:net";
import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { scanAndWait } from "../../src/jobs/scanAndWait.js";
import { log } from "../../src/log.js";
import { JOB, SCHEDULER } from "../../src/queues/names.js";
import { keepSchedules, type ScheduleKeeper } from "../../src/queues/schedulers.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { basicAuth, httpCall, type Credentials, type HttpCallOptions } from "../helpers/http.js";
import { testPipeline } from "../helpers/pipeline.js";
import { waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";

const OLGA = { name: "olga", secret: "olga-operator-secret" };
const OSCAR = { name: "oscar", secret: "oscar-operator-secret" };
const VICTOR = { name: "victor", secret: "victor-viewer-secret" };
const BOARD_REASON = "positions fixed in the servicing system";

const database = await testDb();
const pipeline = testPipeline(database, {
  OPS_USERS: `${OLGA.name}:operator:${OLGA.secret},${OSCAR.name}:operator:${OSCAR.secret},${VICTOR.name}:viewer:${VICTOR.secret}`,
});
const { ctx, config } = pipeline;
const db = database.db;
const retrigger = ctx.queues.retrigger.name;
const board = "/admin/queues/api/queues";

let http: HttpServer;
let keeper: ScheduleKeeper;
const escalated: string[] = [];
let dispersedId: string;
let escalatedMortgages: string[] = [];

const call = (method: string, path: string, options: HttpCallOptions = {}) => httpCall(http.url, method, path, options);

async function healingStatus(obligationId: string) {
  const [row] = await db.execute<{ status: string }>(sql`select status from dispersal_healing_attempts where obligation_id = ${obligationId}::uuid`);
  return row?.status;
}

async function failedJobOf(obligationId: string) {
  return (await ctx.queues.retrigger.getJobs(["failed"])).find((j) => j.data.obligationId === obligationId);
}

async function auditOf(obligationId: string) {
  return db.execute<{ action: string; actor: string; metadata: Record<string, unknown> }>(sql`
    select action, actor, metadata from audit_log where resource_type = 'obligation' and resource_id = ${obligationId} order by created_at, id`);
}

beforeAll(async () => {
  const workers = pipeline.startWorkers();
  const unfixable = await Promise.all(Array.from({ length: 6 }, () => givenSettledObligation(database, { lenders: [0], amount: 50_000n })));
  const fixable = await givenSettledObligation(database, { lenders: [1] });
  expect(await scanAndWait(ctx, { timeoutMs: 25_000 })).toMatchObject({ found: 7, escalated: 6, dispersed: 1 });
  await workers.close();
  escalated.push(...unfixable.map((o) => o.obligationId));
  escalatedMortgages = unfixable.map((o) => o.mortgageId);
  dispersedId = fixable.obligationId;
  // A short period so the test sees a schedule come back; production checks every 30 s.
  keeper = await keepSchedules(ctx.queues, { ...config, SCHEDULE_CHECK_EVERY_MS: 1500 }, log);
  http = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
});

afterAll(async () => {
  await keeper?.stop();
  await http?.close();
});

describe("Bull Board, as an operator", () => {
  it("refuses to add a job (403): nothing is queued and the escalation stays", async () => {
    const before = await ctx.queues.retrigger.getJobCounts();
    const added = await call("POST", `${board}/${retrigger}/add`, { as: OLGA, body: { name: JOB.retrigger, data: { obligationId: escalated[0], requestedBy: "vic" } } });
    expect(added.status).toBe(403);
    const encoded = await call("POST", `${board}/${encodeURIComponent(retrigger).replace("-", "%2D")}/add`, { as: OLGA, body: { name: JOB.retrigger, data: { obligationId: escalated[0] } } });
    expect(encoded.status).toBe(403);
    expect(await ctx.queues.retrigger.getJobCounts()).toEqual(before);
    expect(await healingStatus(escalated[0]!)).toBe("escalated");
  });

  it("refuses every other write on every queue (403), by any spelling, and changes nothing", async () => {
    const failed = (await failedJobOf(escalated[0]!))!;
    const jobId = encodeURIComponent(failed.id!);
    const encodedQueue = "dispersal%2Dretrigger";
    const writes: Array<[string, string, unknown?]> = [
      ["PATCH", `${board}/${retrigger}/${jobId}/update-data`, { data: { obligationId: escalated[0], requestedBy: "vic" } }],
      ["PATCH", `${board}/${encodedQueue}/${jobId}/update-data`, { data: { obligationId: escalated[0], requestedBy: "vic" } }],
      ["PATCH", `${board}/${retrigger}/${jobId}/delay`, { delay: 1 }],
      ["PATCH", `${board}/${retrigger}/${jobId}/priority`, { priority: 1 }],
      ["PUT", `${board}/${retrigger}/${jobId}/promote`],
      ["PUT", `${board}/${retrigger}/${jobId}/clean`],
      ["PUT", `${board}/${encodedQueue}/${jobId}/clean`],
      ["PUT", `${board}/${retrigger}/promote`],
      ["PUT", `${board}/${retrigger}/clean/failed`],
      ["PUT", `${board}/${retrigger}/empty`],
      ["PUT", `${board}/${retrigger}/obliterate`, { force: true }],
      ["PUT", `${board}/${retrigger}/pause`],
      ["PUT", `${board}/${retrigger}/concurrency`, { concurrency: 1 }],
      ["PUT", `${board}/${retrigger}/rate-limit`, { max: 1, duration: 1000 }],
      ["PUT", `${board}/pause`],
      ["PUT", `${board}/resume`],
      ["PUT", `${board}/dispersal-reconciliation/job-schedulers/${SCHEDULER.reconciliation}/remove`],
      ["PUT", `${board}/dispersal%2Dreconciliation/job-schedulers/${SCHEDULER.reconciliation}/remove`],
      ["PATCH", `${board}/dispersal-healing/job-schedulers/${SCHEDULER.scan}`, { every: 1 }],
      ["PUT", `${board}/dispersal-healing/job-schedulers/${SCHEDULER.scan}/run`],
      ["PUT", `${board}/dispersal-healing/obliterate`, { force: true }],
      ["DELETE", `${board}/${retrigger}`],
    ];
    for (const [method, path, body] of writes) {
      const answer = await call(method, path, { as: OLGA, ...(body === undefined ? {} : { body }) });
      expect({ method, path, status: answer.status }).toEqual({ method, path, status: 403 });
    }
    expect(await failed.getState()).toBe("failed");
    expect((await ctx.queues.retrigger.getJob(failed.id!))!.data).toEqual(failed.data);
    expect(await ctx.queues.retrigger.isPaused()).toBe(false);
    expect((await call("GET", "/readyz")).json.pausedQueues).toEqual([]);
    // Paused from outside (redis-cli): reported, not silent.
    await ctx.queues.reconciliation.pause();
    expect((await call("GET", "/readyz")).json.pausedQueues).toEqual(["dispersal-reconciliation"]);
    await ctx.queues.reconciliation.resume();
    expect(await ctx.queues.reconciliation.getJobScheduler(SCHEDULER.reconciliation)).toBeDefined();
    expect(await ctx.queues.healing.getJobScheduler(SCHEDULER.scan)).toMatchObject({ every: config.HEALING_SCAN_EVERY_MS });
    expect(await healingStatus(escalated[0]!)).toBe("escalated");
  });

  it("carries out a retry through a percent-encoded queue name as an audited requeue naming the operator", async () => {
    const obligationId = escalated[1]!;
    const failed = (await failedJobOf(obligationId))!;
    const response = await call("PUT", `${board}/dispersal%2Dretrigger/${encodeURIComponent(failed.id!)}/retry`, { as: OLGA, body: { reason: BOARD_REASON } });
    expect(response.status).toBe(200);
    expect(response.json).toMatchObject({ status: "requeued", obligationId, round: 2 });
    expect(await healingStatus(obligationId)).toBe("requeued");
    const audit = await auditOf(obligationId);
    expect(audit.filter((a) => a.action === "dispersal.self_healing_requeued")).toMatchObject([
      { actor: "olga", metadata: { channel: "bull-board", reason: BOARD_REASON, round: 2 } },
    ]);
    expect((await ctx.queues.retrigger.getJob(response.json.jobId))!.data).toEqual({ obligationId });
  });

  it("carries out 'retry all failed' through an encoded path as requeues, one per escalation", async () => {
    const response = await call("PUT", `${board}/dispersal%2Dretrigger/retry/%66ailed`, { as: OLGA });
    expect(response.status).toBe(200);
    const requeued = response.json.requeued.map((r: { obligationId: string }) => r.obligationId).sort();
    expect(requeued).toEqual([escalated[0], ...escalated.slice(2)].sort());
    for (const id of requeued) {
      expect(await healingStatus(id)).toBe("requeued");
      expect((await auditOf(id)).filter((a) => a.action === "dispersal.self_healing_requeued")).toMatchObject([{ actor: "olga", metadata: { channel: "bull-board" } }]);
    }
  });

  it("refuses a retry of completed jobs (the obligation is dispersed): no bare BullMQ retry, no new job", async () => {
    const completed = (await ctx.queues.retrigger.getJobs(["completed"])).find((j) => j.data.obligationId === dispersedId)!;
    expect(completed).toBeDefined();
    const before = await ctx.queues.retrigger.getJobCounts();
    const one = await call("PUT", `${board}/${retrigger}/${encodeURIComponent(completed.id!)}/retry`, { as: OLGA, body: { reason: BOARD_REASON } });
    expect(one).toMatchObject({ status: 409, json: { code: "NOT_ESCALATED" } });
    const all = await call("PUT", `${board}/${retrigger}/retry/completed`, { as: OLGA });
    expect(all.status).toBe(409);
    expect(all.json.retried).toBe(0);
    expect(await completed.getState()).toBe("completed");
    expect(await ctx.queues.retrigger.getJobCounts()).toEqual(before);
  });

  it("refuses retries on the scan and reconciliation queues, and on a queue name in another case", async () => {
    expect((await call("PUT", `${board}/dispersal-healing/retry/failed`, { as: OLGA })).status).toBe(403);
    expect((await call("PUT", `${board}/dispersal-reconciliation/some-job/retry`, { as: OLGA })).status).toBe(403);
    expect((await call("PUT", `${board}/DISPERSAL-RETRIGGER/retry/failed`, { as: OLGA })).status).toBe(404);
  });

  it("still shows the board and its jobs to operators and viewers", async () => {
    for (const who of [OLGA, VICTOR]) {
      const queues = await call("GET", `${board}?activeQueue=${retrigger}&status=completed`, { as: who });
      expect(queues.status).toBe(200);
      const queue = queues.json.queues.find((q: { name: string }) => q.name === retrigger);
      expect(queue).toMatchObject({ readOnlyMode: who === VICTOR, allowRetries: who === OLGA, allowCompletedRetries: false });
    }
  });
});

describe("the retrigger guard and the round's actor", () => {
  it("does nothing with a hand-made job for an escalation nobody requeued, and the REVERSAL of a requeued one names its operator", async () => {
    const fresh = await givenSettledObligation(database, { lenders: [0], amount: 7_000n });
    // The escalations olga requeued through Bull Board above can now succeed: their rounds are hers.
    await db.execute(sql`update mortgage_positions set units = 10000 where mortgage_id = any(${`{${escalatedMortgages.join(",")}}`}::uuid[])`);
    const workers = pipeline.startWorkers();
    try {
      await scanAndWait(ctx, { timeoutMs: 20_000 });
      expect(await healingStatus(fresh.obligationId)).toBe("escalated");
      // Positions fixed: a job would now succeed, so only the guard keeps it from moving money.
      await db.execute(sql`update mortgage_positions set units = 10000 where mortgage_id = ${fresh.mortgageId}::uuid`);
      // A job carrying an actor is refused whole (malformed); one shaped like ours meets the guard.
      const withActor = await ctx.queues.retrigger.add(JOB.retrigger, { obligationId: fresh.obligationId, requestedBy: "vic" } as never, { attempts: 3 });
      const job = await ctx.queues.retrigger.add(JOB.retrigger, { obligationId: fresh.obligationId }, { attempts: 3 });
      await waitFor(async () => ((await withActor.isFailed()) && (await job.isFailed())) || undefined, { timeoutMs: 15_000, what: "the hand-made jobs to be refused" });
      expect((await ctx.queues.retrigger.getJob(withActor.id!))!.failedReason).toMatch(/^unrecoverable: .*malformed/);
      const refused = (await ctx.queues.retrigger.getJob(job.id!))!;
      expect(refused.failedReason).toMatch(/ESCALATED_WITHOUT_REQUEUE/);
      expect(refused.attemptsMade).toBe(1);
      expect(await healingStatus(fresh.obligationId)).toBe("escalated");
      const [entries] = await db.execute<{ n: bigint }>(sql`select count(*) as n from dispersal_entries where obligation_id = ${fresh.obligationId}::uuid`);
      expect(entries!.n).toBe(0n);

      // An operator requeues it (Bull Board's retry of that failed job): the round is his.
      const retried = await call("PUT", `${board}/${retrigger}/${encodeURIComponent(job.id!)}/retry`, { as: OSCAR, body: { reason: BOARD_REASON } });
      expect(retried.status).toBe(200);
      await waitFor(async () => ((await healingStatus(fresh.obligationId)) === "resolved" ? true : undefined), { timeoutMs: 20_000, what: "the requeued round to resolve" });
      const [reversal] = await db.execute<{ actor: string }>(sql`select actor from cash_journal_entries where entry_type = 'REVERSAL' and obligation_id = ${fresh.obligationId}::uuid`);
      expect(reversal!.actor).toBe("oscar");
      const resolved = (await auditOf(fresh.obligationId)).find((a) => a.action === "dispersal.self_healing_resolved");
      expect(resolved).toMatchObject({ actor: "oscar" });
      // Everything requeued through Bull Board by olga above resolved in her name.
      await waitFor(async () => {
        const [open] = await db.execute<{ n: bigint }>(sql`select count(*) as n from dispersal_healing_attempts where status = 'requeued'`);
        return open!.n === 0n || undefined;
      }, { timeoutMs: 20_000, what: "every requeued round to resolve" });
      const actors = await db.execute<{ actor: string }>(sql`select distinct actor from cash_journal_entries where entry_type = 'REVERSAL' order by actor`);
      expect(actors.map((a) => a.actor)).toEqual(["olga", "oscar"]);
    } finally {
      await workers.close();
    }
  });
});

describe("the audit row of a state-changing request", () => {
  /** Sends one request on a raw socket and closes it as soon as the last byte is written. */
  async function sendAndHangUp(method: string, path: string, body?: string): Promise<void> {
    const url = new URL(http.url);
    const head = [`${method} ${path} HTTP/1.1`, `Host: ${url.host}`, `Authorization: ${basicAuth(OLGA)}`];
    if (body !== undefined) head.push("Content-Type: application/json", `Content-Length: ${Buffer.byteLength(body)}`);
    await new Promise<void>((resolve, reject) => {
      const socket = connect(Number(url.port), url.hostname, () => {
        socket.write([...head, "", body ?? ""].join("\r\n"), () => {
          socket.destroy();
          resolve();
        });
      });
      socket.on("error", reject);
    });
  }

  const requestRows = (path: string) =>
    waitFor(async () => {
      const found = await db.execute<{ actor: string; created_at: string }>(sql`
        select actor, created_at from audit_log where action = 'ops.http_request' and resource_id = ${path}`);
      return found.length > 0 ? found : undefined;
    }, { timeoutMs: 10_000, what: `the audit row of ${path}` });

  it("exists even when the client hangs up right after sending the request, and the action comes after it", async () => {
    await sendAndHangUp("POST", "/api/healing/scan");
    expect(await requestRows("POST /api/healing/scan")).toMatchObject([{ actor: "olga" }]);
    const scan = await waitFor(async () => (await ctx.queues.healing.getJobs(["wait", "active", "delayed", "prioritized", "completed"])).find((j) => j.data?.requestedBy === "olga"), {
      timeoutMs: 10_000,
      what: "the scan the abandoned request asked for",
    });
    expect(scan).toBeDefined();
  });

  it("exists for a hung-up request whose body was lost, and nothing unaudited happened", async () => {
    const fresh = await givenSettledObligation(database, { lenders: [0] });
    await db.execute(sql`insert into dispersal_healing_attempts (obligation_id, attempt_count, status, escalated_at) values (${fresh.obligationId}::uuid, 3, 'escalated', now())`);
    const path = `/api/escalations/${fresh.obligationId}/requeue`;
    await sendAndHangUp("POST", path, JSON.stringify({ reason: "hang-up test" }));
    expect(await requestRows(`POST ${path}`)).toMatchObject([{ actor: "olga" }]);
    // The body may or may not have been read before the socket went: either way the request is on record first.
    const requeued = (await auditOf(fresh.obligationId)).find((a) => a.action === "dispersal.self_healing_requeued");
    if (requeued) expect(requeued).toMatchObject({ actor: "olga", metadata: { reason: "hang-up test" } });
    else expect(await healingStatus(fresh.obligationId)).toBe("escalated");
  });
});

describe("schedules", () => {
  it("reports a schedule removed from Redis as missing, then puts it back within the check period", async () => {
    let sawMissing: { readyz: unknown; metric: string } | undefined;
    for (let tries = 0; tries < 5 && !sawMissing; tries++) {
      await ctx.queues.reconciliation.removeJobScheduler(SCHEDULER.reconciliation);
      const [ready, metrics] = await Promise.all([call("GET", "/readyz"), call("GET", "/metrics", { as: VICTOR })]);
      const metric = /dispersal_schedule_present\{scheduler="dispersal-reconciliation-daily"\} (\d)/.exec(metrics.text)?.[1];
      // The keeper may have run between the removal and the reads (a loaded machine): remove it again.
      if (ready.json.missingSchedules.includes(SCHEDULER.reconciliation) && metric === "0") sawMissing = { readyz: ready.json, metric };
    }
    expect(sawMissing?.readyz).toMatchObject({ status: "ready", missingSchedules: [SCHEDULER.reconciliation], schedules: { [SCHEDULER.reconciliation]: false, [SCHEDULER.scan]: true } });
    await waitFor(async () => (await ctx.queues.reconciliation.getJobScheduler(SCHEDULER.reconciliation)) !== undefined || undefined, {
      timeoutMs: 15_000,
      what: "the reconciliation schedule to come back",
    });
    expect(await ctx.queues.reconciliation.getJobScheduler(SCHEDULER.reconciliation)).toMatchObject({ pattern: config.RECONCILIATION_CRON, tz: "UTC" });
    expect((await call("GET", "/readyz")).json.missingSchedules).toEqual([]);
    expect((await call("GET", "/metrics", { as: VICTOR })).text).toMatch(/dispersal_schedule_present\{scheduler="dispersal-reconciliation-daily"\} 1/);
  });
});

describe("sign-in throttling", () => {
  // Behind a proxy on loopback (TRUST_PROXY=loopback), so X-Forwarded-For stands for the client address.
  async function behindProxy(limits: { perAddress: number; perUser: number }) {
    return startHttpServer(ctx, {
      ...config,
      PORT: 0,
      HOST: "127.0.0.1",
      TRUST_PROXY: ["loopback"],
      SIGN_IN_FAILURES_PER_ADDRESS: limits.perAddress,
      SIGN_IN_FAILURES_PER_USER: limits.perUser,
      SIGN_IN_WINDOW_SECONDS: 120,
      QUEUE_PREFIX: `${config.QUEUE_PREFIX}-${randomUUID().slice(0, 8)}`, // its own counters in Redis
    });
  }
  const from = (address: string, who: Credentials) => ({ as: who, headers: { "x-forwarded-for": address } });

  it("answers 429 with Retry-After to a burst of wrong passwords from one address, audited once, not per probe", async () => {
    const server = await behindProxy({ perAddress: 3, perUser: 100 });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 20; i++) {
        const answer = await httpCall(server.url, "GET", "/api/escalations", from("10.0.0.1", { name: `guess${i}`, secret: "wrong-secret-xxxxxx" }));
        statuses.push(answer.status);
        if (answer.status === 429) expect(Number(answer.headers.get("retry-after"))).toBeGreaterThan(0);
      }
      expect(statuses.slice(0, 2)).toEqual([401, 401]);
      expect(new Set(statuses.slice(2))).toEqual(new Set([429]));
      // The right password from that address waits too; from another address it works at once.
      expect((await httpCall(server.url, "GET", "/api/escalations", from("10.0.0.1", OLGA))).status).toBe(429);
      expect((await httpCall(server.url, "GET", "/api/escalations", from("10.0.0.2", OLGA))).status).toBe(200);
      const rows = await waitFor(async () => {
        const found = await db.execute<{ event: string }>(sql`
          select metadata->>'event' as event from audit_log where action = 'ops.sign_in_failed' and metadata->>'address' = '10.0.0.1' order by created_at`);
        return found.length >= 2 ? found : undefined;
      }, { timeoutMs: 5000, what: "the sign-in audit rows" });
      expect(rows.map((r) => r.event)).toEqual(["first_failure", "address_throttled"]);
    } finally {
      await server.close();
    }
  });

  it("answers 429 to guesses at one user name from several addresses, while the right password from another address works", async () => {
    const server = await behindProxy({ perAddress: 100, perUser: 4 });
    try {
      const statuses: number[] = [];
      for (let i = 1; i <= 8; i++) statuses.push((await httpCall(server.url, "GET", "/api/escalations", from(`10.1.0.${i}`, { name: OLGA.name, secret: "not-olgas-secret" }))).status);
      expect(statuses).toEqual([401, 401, 401, 429, 429, 429, 429, 429]);
      const throttled = await httpCall(server.url, "GET", "/api/escalations", from("10.1.0.2", OLGA));
      expect(throttled.status).toBe(429); // an address that guessed at her name waits, even with the right secret
      expect(Number(throttled.headers.get("retry-after"))).toBeGreaterThan(0);
      expect((await httpCall(server.url, "GET", "/api/escalations", from("10.1.9.9", OLGA))).status).toBe(200);
      expect((await httpCall(server.url, "GET", "/api/escalations", from("10.1.0.3", OSCAR))).status).toBe(200); // other names are not affected
    } finally {
      await server.close();
    }
  });

  it("never slows a successful sign-in", async () => {
    const server = await behindProxy({ perAddress: 2, perUser: 2 });
    try {
      for (let i = 0; i < 30; i++) expect((await httpCall(server.url, "GET", "/api/escalations?limit=1", from("10.2.0.1", OLGA))).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});

describe("TRUST_PROXY", () => {
  it("ignores X-Forwarded-For and X-Forwarded-Host unless a proxy is trusted", async () => {
    const untrusting = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1", SIGN_IN_FAILURES_PER_ADDRESS: 3, QUEUE_PREFIX: `${config.QUEUE_PREFIX}-${randomUUID().slice(0, 8)}` });
    try {
      const forged = await httpCall(untrusting.url, "POST", `/api/escalations/${randomUUID()}/requeue`, {
        as: OSCAR,
        body: { reason: "a reason of ten visible characters" },
        headers: { origin: "https://evil.example", "x-forwarded-host": "evil.example" },
      });
      expect(forged.status).toBe(403);
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) {
        statuses.push((await httpCall(untrusting.url, "GET", "/api/escalations", { as: { name: `n${i}`, secret: "wrong-secret-xxxxxx" }, headers: { "x-forwarded-for": `10.3.0.${i}` } })).status);
      }
      expect(statuses).toEqual([401, 401, 429, 429]); // counted against the real peer, whatever the header says
    } finally {
      await untrusting.close();
    }
    const trusting = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1", TRUST_PROXY: ["loopback"] });
    try {
      const proxied = await httpCall(trusting.url, "POST", `/api/escalations/${randomUUID()}/requeue`, {
        as: OSCAR,
        body: { reason: "a reason of ten visible characters" },
        headers: { origin: "https://ops.example", "x-forwarded-host": "ops.example" },
      });
      expect(proxied.status).toBe(404); // past the cross-site guard: the obligation does not exist
    } finally {
      await trusting.close();
    }
  });
});

describe("cursors", () => {
  it("answers 400 to a hand-made cursor with an impossible timestamp", async () => {
    const cursor = (timestamp: string) => Buffer.from(JSON.stringify([timestamp, randomUUID()])).toString("base64url");
    for (const impossible of ["2024-13-45 99:99:99+00", "2023-02-29 00:00:00+00", "2024-01-01 24:00:00+00", "0000-01-01 00:00:00+00", "2024-01-01 00:00:00+99"]) {
      const answer = await call("GET", `/api/escalations?cursor=${cursor(impossible)}`, { as: VICTOR });
      expect({ impossible, status: answer.status }).toEqual({ impossible, status: 400 });
    }
    expect((await call("GET", `/api/escalations?cursor=${cursor("2024-02-29 23:59:59.123456+00")}`, { as: VICTOR })).status).toBe(200);
  });
});
