// Hostile input, HTTP side, against a real `dispersal server` process: SQL-looking and oversized ids,
// wrong content types, huge bodies, wrong or missing credentials, cross-site writes, a timing probe
// of the credential check. Every one gets a clear 4xx; the server stays up; nothing is written
// (refused state-changing requests leave only their ops.* audit rows, by design).
import { connect } from "node:net";
import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import { scanForOrphans } from "../../src/jobs/scan.js";
import { waitFor } from "./children.js";
import { recordFaults } from "./faultCounts.js";
import { measureEndState } from "./endState.js";
import { ephemeralPort } from "./redisServers.js";
import { note, Scenario } from "./scenario.js";

const scenario = await Scenario.open();
afterAll(() => scenario.close());

const OPERATOR = { name: "ops", secret: "operator-secret-0123456789" };
const VIEWER = { name: "watcher", secret: "viewer-secret-0123456789" };
const basic = (name: string, secret: string) => `Basic ${Buffer.from(`${name}:${secret}`).toString("base64")}`;
const AS_OPERATOR = { authorization: basic(OPERATOR.name, OPERATOR.secret) };
const AS_VIEWER = { authorization: basic(VIEWER.name, VIEWER.secret) };

interface Answer {
  status: number;
  body: string;
  ms: number;
}

/**
 * One request on a raw socket, answer read until the server closes. Not node:http's client: when
 * the server refuses a request it has not read to the end (431, 413) it answers and closes, and the
 * client's write error would hide that answer.
 */
function send(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  const url = new URL(base);
  const started = performance.now();
  const head = [`${method} ${path} HTTP/1.1`, `host: ${url.host}`, "connection: close"];
  if (body !== undefined) head.push(`content-length: ${Buffer.byteLength(body)}`);
  for (const [name, value] of Object.entries(headers)) head.push(`${name}: ${value}`);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect({ host: url.hostname, port: Number(url.port) });
    const finish = () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1];
      resolve({ status: status ? Number(status) : -1, body: text.slice(text.indexOf("\r\n\r\n") + 4, 2000), ms: performance.now() - started });
    };
    socket.setTimeout(20_000, () => socket.destroy(new Error(`${method} ${path.slice(0, 80)} timed out`)));
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", (error: NodeJS.ErrnoException) => (error.code === "EPIPE" || error.code === "ECONNRESET" ? undefined : reject(error)));
    socket.on("close", finish);
    socket.write(`${head.join("\r\n")}\r\n\r\n`);
    if (body !== undefined) socket.write(body);
  });
}

async function snapshot(): Promise<string> {
  const [row] = await scenario.database.db.execute<{ fingerprint: string }>(sql`
    select md5(concat_ws('|',
      (select count(*) || '/' || coalesce(sum(amount), 0) from dispersal_entries),
      (select count(*) || '/' || coalesce(sum(amount), 0) || '/' || coalesce(max(sequence), 0) from cash_journal_entries),
      (select string_agg(family || coalesce(subaccount, '') || cumulative_debits || '/' || cumulative_credits, ',' order by id) from cash_accounts),
      (select string_agg(obligation_id || status || attempt_count || requeue_count || updated_at, ',' order by obligation_id) from dispersal_healing_attempts),
      (select count(*) from audit_log where action not like 'ops.%'),
      (select count(*) || '/' || count(*) filter (where dispersed) from obligations))) as fingerprint`);
  const counts = await scenario.ctx.queues.retrigger.getJobCounts("waiting", "active", "delayed", "failed", "completed", "prioritized");
  const scans = await scenario.ctx.queues.healing.getJobCounts("waiting", "active", "delayed", "prioritized");
  return `${row!.fingerprint} ${JSON.stringify(counts)} ${JSON.stringify(scans)}`;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

describe("hostile HTTP requests to the server", () => {
  it("answers each with a clear 4xx, stays up, and writes nothing", async () => {
    // A small settled world: dispersed obligations and a few escalations a hostile request could try to requeue.
    const orphans = await scenario.seedOrphans({ fixable: 40, unfixable: 4 });
    const worker = scenario.spawnWorker("worker");
    await scanForOrphans(scenario.ctx, "fault-suite");
    await scenario.settle();
    expect((await measureEndState(scenario.database, orphans)).escalated).toBe(4);
    expect((await worker.kill("SIGTERM")).code).toBe(0);
    const escalated = orphans.unfixable[0]!;
    const dispersed = orphans.fixable[0]!;

    const port = await ephemeralPort();
    const server = scenario.children.cli("server", ["server"], {
      ...scenario.workerEnv(),
      PORT: String(port),
      OPS_USERS: `${OPERATOR.name}:operator:${OPERATOR.secret},${VIEWER.name}:viewer:${VIEWER.secret}`,
      // The probes below send ~140 wrong credentials from one address: throttling has its own tests.
      SIGN_IN_FAILURES_PER_ADDRESS: "100000",
      SIGN_IN_FAILURES_PER_USER: "100000",
    });
    const base = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await send(base, "GET", "/readyz").catch(() => ({ status: 0 }))).status === 200, { timeoutMs: 60_000, what: "the server ready" });
    const before = await snapshot();

    const json = { ...AS_OPERATOR, "content-type": "application/json" };
    const uuids = (n: number) => Array.from({ length: n }, () => randomUUID());
    const cases: Array<{ name: string; method: string; path: string; headers?: Record<string, string>; body?: string; expect: number | "4xx" }> = [
      { name: "SQL in the obligation id", method: "POST", path: `/api/escalations/${encodeURIComponent("'; drop table obligations; --")}/requeue`, headers: AS_OPERATOR, expect: 400 },
      { name: "uuid followed by SQL", method: "POST", path: `/api/escalations/${encodeURIComponent(`${escalated}' or '1'='1`)}/requeue`, headers: AS_OPERATOR, expect: 400 },
      { name: "10 kB obligation id", method: "POST", path: `/api/escalations/${"a".repeat(10_000)}/requeue`, headers: AS_OPERATOR, expect: 400 },
      { name: "100 kB obligation id", method: "POST", path: `/api/escalations/${"a".repeat(100_000)}/requeue`, headers: AS_OPERATOR, expect: "4xx" },
      { name: "SQL in mortgageId filter", method: "GET", path: `/api/escalations?mortgageId=${encodeURIComponent("' OR 1=1 --")}`, headers: AS_OPERATOR, expect: 400 },
      { name: "SQL in status filter", method: "GET", path: `/api/escalations?status=${encodeURIComponent("escalated'; --")}`, headers: AS_OPERATOR, expect: 400 },
      { name: "status given twice", method: "GET", path: "/api/escalations?status=escalated&status=resolved", headers: AS_OPERATOR, expect: 400 },
      { name: "huge limit", method: "GET", path: "/api/escalations?limit=99999999999", headers: AS_OPERATOR, expect: 400 },
      { name: "forged cursor", method: "GET", path: `/api/escalations?cursor=${Buffer.from(JSON.stringify(["now()); drop table x; --", "x"])).toString("base64url")}`, headers: AS_OPERATOR, expect: 400 },
      { name: "cursor not base64 JSON", method: "GET", path: "/api/escalations?cursor=%FF%FE%00", headers: AS_OPERATOR, expect: 400 },
      { name: "unknown query parameter", method: "GET", path: "/api/escalations?where=1%3D1", headers: AS_OPERATOR, expect: 400 },
      { name: "text/plain body", method: "POST", path: "/api/escalations/requeue", headers: { ...AS_OPERATOR, "content-type": "text/plain" }, body: '{"all":true}', expect: 415 },
      { name: "form-encoded body to the JSON API", method: "POST", path: "/api/escalations/requeue", headers: { ...AS_OPERATOR, "content-type": "application/x-www-form-urlencoded" }, body: "all=true", expect: 415 },
      { name: "JSON in UTF-16", method: "POST", path: "/api/escalations/requeue", headers: { ...AS_OPERATOR, "content-type": "application/json; charset=utf-16" }, body: '{"all":true}', expect: "4xx" },
      { name: "broken JSON", method: "POST", path: "/api/escalations/requeue", headers: json, body: '{"all": tru', expect: 400 },
      { name: "JSON scalar body", method: "POST", path: "/api/escalations/requeue", headers: json, body: "true", expect: 400 },
      { name: "5 MB JSON body", method: "POST", path: "/api/escalations/requeue", headers: json, body: JSON.stringify({ obligationIds: ["x".repeat(5 * 1024 * 1024)] }), expect: 413 },
      { name: "SQL in a bulk id", method: "POST", path: "/api/escalations/requeue", headers: json, body: JSON.stringify({ obligationIds: ["' or 1=1 --"] }), expect: 400 },
      { name: "too many ids at once", method: "POST", path: "/api/escalations/requeue", headers: json, body: JSON.stringify({ obligationIds: uuids(501) }), expect: 400 },
      { name: "__proto__ smuggling all:true", method: "POST", path: "/api/escalations/requeue", headers: json, body: '{"__proto__": {"all": true}}', expect: 400 },
      { name: "SQL in the bulk filter", method: "POST", path: "/api/escalations/requeue", headers: json, body: JSON.stringify({ all: true, filter: { mortgageId: "' or 1=1" } }), expect: 400 },
      { name: "extra keys beside all", method: "POST", path: "/api/escalations/requeue", headers: json, body: JSON.stringify({ all: true, sql: "drop table obligations" }), expect: 400 },
      { name: "unknown obligation", method: "POST", path: `/api/escalations/${randomUUID()}/requeue`, headers: json, body: '{"reason":"probe of the requeue route"}', expect: 404 },
      { name: "requeue of a dispersed obligation", method: "POST", path: `/api/escalations/${dispersed}/requeue`, headers: json, body: '{"reason":"probe of the requeue route"}', expect: 409 },
      { name: "requeue without a reason", method: "POST", path: `/api/escalations/${escalated}/requeue`, headers: AS_OPERATOR, expect: 400 },
      { name: "requeue with a blank reason", method: "POST", path: `/api/escalations/${escalated}/requeue`, headers: json, body: '{"reason":"  "}', expect: 400 },
      { name: "approval of nothing pending", method: "POST", path: `/api/escalations/${escalated}/requeue/approve`, headers: AS_OPERATOR, expect: 404 },
      { name: "operator adds a job in Bull Board", method: "POST", path: "/admin/queues/api/queues/dispersal-retrigger/add", headers: json, body: JSON.stringify({ name: "retrigger-dispersal", data: { obligationId: escalated, requestedBy: "vic" } }), expect: 403 },
      { name: "operator adds a job, queue name encoded", method: "POST", path: "/admin/queues/api/queues/dispersal%2Dretrigger/add", headers: json, body: JSON.stringify({ name: "retrigger-dispersal", data: { obligationId: escalated } }), expect: 403 },
      { name: "operator obliterates a queue", method: "PUT", path: "/admin/queues/api/queues/dispersal-retrigger/obliterate", headers: json, body: '{"force":true}', expect: 403 },
      { name: "operator empties a queue", method: "PUT", path: "/admin/queues/api/queues/dispersal%2Dretrigger/empty", headers: AS_OPERATOR, expect: 403 },
      { name: "operator pauses every queue", method: "PUT", path: "/admin/queues/api/queues/pause", headers: AS_OPERATOR, expect: 403 },
      { name: "operator removes the daily reconciliation", method: "PUT", path: "/admin/queues/api/queues/dispersal-reconciliation/job-schedulers/dispersal-reconciliation-daily/remove", headers: AS_OPERATOR, expect: 403 },
      { name: "operator retries completed jobs", method: "PUT", path: "/admin/queues/api/queues/dispersal-retrigger/retry/completed", headers: AS_OPERATOR, expect: 409 },
      { name: "impossible timestamp in a cursor", method: "GET", path: `/api/escalations?cursor=${Buffer.from(JSON.stringify(["2024-13-45 99:99:99+00", randomUUID()])).toString("base64url")}`, headers: AS_OPERATOR, expect: 400 },
      { name: "forwarded host from anyone", method: "POST", path: `/api/escalations/${escalated}/requeue`, headers: { ...json, origin: "http://attacker.invalid", "x-forwarded-host": "attacker.invalid" }, body: '{"reason":"probe of the requeue route"}', expect: 403 },
      { name: "viewer requeues", method: "POST", path: `/api/escalations/${escalated}/requeue`, headers: AS_VIEWER, expect: 403 },
      { name: "viewer requests a scan", method: "POST", path: "/api/healing/scan", headers: AS_VIEWER, expect: 403 },
      { name: "viewer retries failed jobs in Bull Board", method: "PUT", path: "/admin/queues/api/queues/dispersal-retrigger/retry/failed", headers: AS_VIEWER, expect: 403 },
      { name: "viewer cleans failed jobs in Bull Board", method: "PUT", path: "/admin/queues/api/queues/dispersal-retrigger/clean/failed", headers: AS_VIEWER, expect: "4xx" },
      { name: "cross-origin requeue", method: "POST", path: `/api/escalations/${escalated}/requeue`, headers: { ...AS_OPERATOR, origin: "http://attacker.invalid" }, expect: 403 },
      { name: "cross-site requeue", method: "POST", path: `/api/escalations/${escalated}/requeue`, headers: { ...AS_OPERATOR, "sec-fetch-site": "cross-site" }, expect: 403 },
      { name: "ops form without token", method: "POST", path: "/ops/requeue", headers: { ...AS_OPERATOR, "content-type": "application/x-www-form-urlencoded" }, body: `only=${escalated}`, expect: 403 },
      { name: "ops form with a forged token", method: "POST", path: "/ops/requeue", headers: { ...AS_OPERATOR, "content-type": "application/x-www-form-urlencoded" }, body: `only=${escalated}&_token=forged`, expect: 403 },
      { name: "no credentials", method: "GET", path: "/api/escalations", expect: 401 },
      { name: "no credentials, state change", method: "POST", path: `/api/escalations/${escalated}/requeue`, expect: 401 },
      { name: "wrong secret", method: "POST", path: `/api/escalations/${escalated}/requeue`, headers: { authorization: basic(OPERATOR.name, "wrong-secret-0123456789") }, expect: 401 },
      { name: "unknown user", method: "GET", path: "/api/escalations", headers: { authorization: basic("mallory", OPERATOR.secret) }, expect: 401 },
      { name: "viewer name with operator secret", method: "POST", path: "/api/healing/scan", headers: { authorization: basic(VIEWER.name, OPERATOR.secret) }, expect: 401 },
      { name: "Basic not base64", method: "GET", path: "/api/escalations", headers: { authorization: "Basic !!!$$$" }, expect: 401 },
      { name: "Basic without colon", method: "GET", path: "/api/escalations", headers: { authorization: `Basic ${Buffer.from("ops").toString("base64")}` }, expect: 401 },
      { name: "Bearer token", method: "GET", path: "/api/escalations", headers: { authorization: "Bearer eyJhbGciOiJub25lIn0.e30." }, expect: 401 },
      { name: "SQL as user name", method: "GET", path: "/api/escalations", headers: { authorization: basic("' or 1=1 --", "x") }, expect: 401 },
      { name: "12 kB credentials", method: "GET", path: "/api/escalations", headers: { authorization: basic("ops", "s".repeat(12_000)) }, expect: 401 },
      { name: "40 kB credentials", method: "GET", path: "/api/escalations", headers: { authorization: basic("ops", "s".repeat(40_000)) }, expect: 431 },
      { name: "path traversal", method: "GET", path: "/api/escalations/../../../etc/passwd", headers: AS_OPERATOR, expect: 404 },
      { name: "DELETE on the list", method: "DELETE", path: "/api/escalations", headers: AS_OPERATOR, expect: 404 },
      { name: "metrics without credentials", method: "GET", path: "/metrics", expect: 401 },
    ];

    const outcomes: Array<{ name: string; status: number }> = [];
    for (const c of cases) {
      const answer = await send(base, c.method, c.path, c.headers ?? {}, c.body);
      outcomes.push({ name: c.name, status: answer.status });
      if (answer.status >= 500 || answer.status < 400) note(`unexpected answer: ${c.name}`, { status: answer.status, body: answer.body.slice(0, 300) });
    }

    // Timing probe: a wrong secret of the right length and one of another length cost the same.
    const right = OPERATOR.secret.length;
    const sameLength = basic(OPERATOR.name, "x".repeat(right));
    const otherLength = basic(OPERATOR.name, "x".repeat(3));
    const timings: Record<"same" | "other", number[]> = { same: [], other: [] };
    const probeStatuses = new Set<number>();
    for (let i = 0; i < 60; i++) {
      for (const [kind, authorization] of [["same", sameLength], ["other", otherLength]] as const) {
        const answer = await send(base, "GET", "/api/escalations", { authorization });
        probeStatuses.add(answer.status);
        if (i >= 10) timings[kind].push(answer.ms); // the first ones warm up
      }
    }
    const probe = { same: median(timings.same), other: median(timings.other) };
    note("timing probe (median ms)", probe);

    const after = await snapshot();
    const healthz = await send(base, "GET", "/healthz");
    const rejected = outcomes.filter((o, i) => {
      const expected = cases[i]!.expect;
      return expected === "4xx" ? o.status >= 400 && o.status < 500 : o.status === expected;
    }).length + (probeStatuses.size === 1 && probeStatuses.has(401) ? 2 : 0);
    recordFaults(import.meta.url, "hostile HTTP requests", { hostileRejected: rejected });

    expect(outcomes.map((o, i) => ({ name: o.name, status: cases[i]!.expect === "4xx" && o.status >= 400 && o.status < 500 ? "4xx" : o.status }))).toEqual(
      cases.map((c) => ({ name: c.name, status: c.expect })),
    );
    expect([...probeStatuses]).toEqual([401]);
    expect(Math.abs(probe.same - probe.other)).toBeLessThan(Math.max(5, 0.5 * Math.min(probe.same, probe.other)));
    expect({ alive: server.alive(), healthz: healthz.status }).toEqual({ alive: true, healthz: 200 });
    expect(after).toBe(before);
  }, 180_000);
});
