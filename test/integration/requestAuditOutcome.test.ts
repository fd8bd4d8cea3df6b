// Every audited request gets its outcome row (issue 21 item 8), also when the client hangs up: while
// its request row is still being written, halfway through sending its body, or right after sending.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type Socket } from "node:net";
import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { basicAuth } from "../helpers/http.js";
import { testPipeline } from "../helpers/pipeline.js";
import { waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";

const OLGA = { name: "olga", secret: "olga-operator-secret" };
const database = await testDb();
const pipeline = testPipeline(database, { OPS_USERS: `${OLGA.name}:operator:${OLGA.secret}` });
const { ctx, config } = pipeline;
const db = database.db;
let http: HttpServer;

beforeAll(async () => {
  http = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
});

afterAll(async () => {
  await http?.close();
});

/** Opens a raw socket and writes the request head and the first bytes of a body promising more. */
async function startRequest(path: string, body: string, promisedLength: number): Promise<Socket> {
  const url = new URL(http.url);
  const head = [`POST ${path} HTTP/1.1`, `Host: ${url.host}`, `Authorization: ${basicAuth(OLGA)}`, "Content-Type: application/json", `Content-Length: ${promisedLength}`];
  return new Promise<Socket>((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => socket.write([...head, "", body].join("\r\n"), () => resolve(socket)));
    socket.on("error", reject);
  });
}

async function serverConnections(): Promise<number> {
  return new Promise((resolve, reject) => http.server.getConnections((error, count) => (error ? reject(error) : resolve(count))));
}

const rowsOf = (path: string) =>
  db.execute<{ action: string; severity: string; metadata: { requestId: string; status: number | null; clientHungUp?: boolean } }>(sql`
    select action, severity, metadata from audit_log where resource_id = ${`POST ${path}`} order by created_at, action`);

/** The request row and, once it is written, its outcome row with the same request id. */
async function bothRows(path: string) {
  const rows = await waitFor(async () => {
    const found = await rowsOf(path);
    return found.some((r) => r.action === "ops.http_response") ? found : undefined;
  }, { timeoutMs: 10_000, what: `the outcome row of ${path}` });
  const request = rows.filter((r) => r.action === "ops.http_request");
  const outcome = rows.filter((r) => r.action === "ops.http_response");
  expect(request).toHaveLength(1);
  expect(outcome).toHaveLength(1);
  expect(outcome[0]!.metadata.requestId).toBe(request[0]!.metadata.requestId);
  return outcome[0]!;
}

describe("the outcome row of an audited request", () => {
  it("is written when the client hangs up while the request row is still being written", async () => {
    const path = `/api/escalations/${randomUUID()}/requeue`;
    // Inserts into audit_log wait while another transaction holds it in SHARE mode.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const holder = database.sql.begin(async (tx) => {
      await tx`lock table audit_log in share mode`;
      locked();
      await released;
    });
    await isLocked;
    try {
      const socket = await startRequest(path, '{"reason":', 200);
      await waitFor(async () => {
        const [row] = await database.sql`select count(*)::int as n from pg_locks l join pg_class c on c.oid = l.relation where c.relname = 'audit_log' and not l.granted`;
        return (row!.n as number) > 0 || undefined;
      }, { timeoutMs: 10_000, what: "the request row's insert to wait for the lock" });
      socket.destroy();
      await waitFor(async () => (await serverConnections()) === 0 || undefined, { timeoutMs: 10_000, what: "the server to see the hang-up" });
    } finally {
      release();
      await holder;
    }
    expect(await bothRows(path)).toMatchObject({ severity: "warning", metadata: { status: null, clientHungUp: true } });
  });

  it("is written when the client hangs up halfway through sending the body", async () => {
    const path = `/api/escalations/${randomUUID()}/requeue`;
    const socket = await startRequest(path, '{"reason":"lender pos', 200);
    await waitFor(async () => (await rowsOf(path)).length > 0 || undefined, { timeoutMs: 10_000, what: "the request row" });
    socket.destroy();
    expect(await bothRows(path)).toMatchObject({ severity: "warning", metadata: { status: null, clientHungUp: true } });
  });

  it("is written when the client hangs up right after sending the whole request", async () => {
    const path = `/api/escalations/${randomUUID()}/requeue`;
    const body = JSON.stringify({ reason: "lender positions corrected" });
    const socket = await startRequest(path, body, Buffer.byteLength(body));
    socket.destroy();
    const outcome = await bothRows(path);
    // Answered (404: no such obligation) before the hang-up was seen, or not: either is on record.
    expect(outcome.metadata.clientHungUp ? outcome.metadata.status === null : outcome.metadata.status === 404).toBe(true);
  });
});
