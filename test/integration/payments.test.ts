import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { PAYMENT_AUDIT_ACTION } from "../../src/db/payments.js";
import { startSettlementListener, type SettlementListener } from "../../src/jobs/settlementListener.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { testPipeline } from "../helpers/pipeline.js";
import { waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";

const SAM = { name: "sam", secret: "sam-service-secret" };
const OLGA = { name: "olga", secret: "olga-operator-secret" };
const VICTOR = { name: "victor", secret: "victor-viewer-secret" };

const database = await testDb();
const pipeline = testPipeline(database, {
  OPS_USERS: `${SAM.name}:service:${SAM.secret},${OLGA.name}:operator:${OLGA.secret},${VICTOR.name}:viewer:${VICTOR.secret}`,
  PORT: "0",
});
const { ctx } = pipeline;
const db = database.db;
let http: HttpServer;
let listener: SettlementListener;

beforeAll(async () => {
  pipeline.startWorkers();
  listener = startSettlementListener(ctx, { databaseUrl: database.url, reconnectMs: 100 });
  await listener.listening();
  http = await startHttpServer(ctx, pipeline.config);
});
afterAll(async () => {
  await http.close();
  await listener.stop();
});

interface Call {
  as?: { name: string; secret: string } | undefined;
  body?: unknown;
  rawBody?: string;
  contentType?: string | null;
}

async function call(method: string, path: string, options: Call = {}) {
  const headers: Record<string, string> = {};
  if (options.as) headers.authorization = `Basic ${Buffer.from(`${options.as.name}:${options.as.secret}`).toString("base64")}`;
  const body = options.rawBody ?? (options.body !== undefined ? JSON.stringify(options.body) : undefined);
  if (body !== undefined && options.contentType !== null) headers["content-type"] = options.contentType ?? "application/json";
  const response = await fetch(`${http.url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}), redirect: "manual" });
  const text = await response.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, json };
}

/** As the service account unless told otherwise; `null`: without credentials. */
const pay = (obligationId: string, body: unknown, as: Call["as"] | null = SAM) =>
  call("POST", `/api/obligations/${obligationId}/payments`, { as: as ?? undefined, body });

/** An open obligation (due, accrued, nothing received) on a mortgage with lenders 6000/4000. */
async function givenDue(amount = 100_000n, status: "due" | "waived" | "upcoming" = "due") {
  return givenSettledObligation(database, { status, amount, lenders: [6000, 4000], type: "principal_repayment" });
}

/**
 * What a refused call must leave untouched: the cash received, the obligations' statuses, the
 * payment audit rows (dispersals of earlier tests' payments may still be writing other postings).
 */
async function writtenState(): Promise<string> {
  const [row] = await db.execute<{ state: string }>(sql`
    select (select count(*) from cash_journal_entries where entry_type = 'CASH_RECEIVED')::text || '/' ||
           (select string_agg(id::text || status || coalesce(settled_at::text, ''), ',' order by id) from obligations) || '/' ||
           (select count(*) from audit_log where action = ${PAYMENT_AUDIT_ACTION})::text as state`);
  return row!.state;
}

async function obligationRow(id: string) {
  const [row] = await db.execute<{ status: string; settled_at: Date | null; dispersed: boolean }>(sql`
    select status, settled_at, dispersed from obligations where id = ${id}::uuid`);
  return row!;
}

async function cashReceived(id: string) {
  return db.execute<{ amount: bigint; idempotency_key: string; actor: string; channel: string }>(sql`
    select amount, idempotency_key, actor, channel from cash_journal_entries
     where obligation_id = ${id}::uuid and entry_type = 'CASH_RECEIVED' order by sequence`);
}

describe("POST /api/obligations/:obligationId/payments (the payments intake)", () => {
  it("receives a payment in full: CASH_RECEIVED posted, the obligation settled, and dispersed within seconds", async () => {
    const o = await givenDue(100_000n);
    const reference = `PAY-${randomUUID()}`;
    const res = await pay(o.obligationId, { reference, amount: "100000" });

    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({ obligationId: o.obligationId, reference, amount: "100000", receivedTotal: "100000", outstanding: "0", status: "settled" });
    expect(await cashReceived(o.obligationId)).toEqual([
      { amount: 100_000n, idempotency_key: `cash-ledger:cash-received:${SAM.name}:${reference.toLowerCase()}`, actor: SAM.name, channel: "api" },
    ]);
    expect((await obligationRow(o.obligationId)).settled_at).not.toBeNull();
    await waitFor(async () => (await obligationRow(o.obligationId)).dispersed, { timeoutMs: 10_000, what: "the paid obligation dispersed", everyMs: 50 });
    const entries = await db.execute<{ amount: bigint }>(sql`select amount from dispersal_entries where obligation_id = ${o.obligationId}::uuid order by amount desc`);
    expect(entries.map((e) => e.amount)).toEqual([60_000n, 40_000n]);
    const [audit] = await db.execute<{ actor: string; metadata: Record<string, unknown> }>(sql`
      select actor, metadata from audit_log where action = ${PAYMENT_AUDIT_ACTION} and resource_id = ${o.obligationId}`);
    expect(audit).toMatchObject({ actor: SAM.name, metadata: { reference, amount: "100000", status: "settled", channel: "api" } });
  });

  it("a part payment leaves the obligation partially_settled; the rest settles it and the dispersal splits the total", async () => {
    const o = await givenDue(90_000n);
    const first = await pay(o.obligationId, { reference: `P1-${o.obligationId}`, amount: "30000" });
    expect(first.status).toBe(201);
    expect(first.json).toMatchObject({ receivedTotal: "30000", outstanding: "60000", status: "partially_settled" });
    expect(await obligationRow(o.obligationId)).toMatchObject({ status: "partially_settled", settled_at: null, dispersed: false });

    const rest = await pay(o.obligationId, { reference: `P2-${o.obligationId}`, amount: "60000" });
    expect(rest.json).toMatchObject({ receivedTotal: "90000", outstanding: "0", status: "settled" });
    await waitFor(async () => (await obligationRow(o.obligationId)).dispersed, { timeoutMs: 10_000, what: "dispersed", everyMs: 50 });
    const [sum] = await db.execute<{ total: bigint }>(sql`select sum(amount)::int8 as total from dispersal_entries where obligation_id = ${o.obligationId}::uuid`);
    expect(sum!.total).toBe(90_000n);
  });

  it("the same reference and amount again gives the same answer and writes nothing new", async () => {
    const o = await givenDue(50_000n);
    const body = { reference: `SAME-${o.obligationId}`, amount: "20000" };
    const first = await pay(o.obligationId, body);
    await pay(o.obligationId, { reference: `OTHER-${o.obligationId}`, amount: "5000" }); // a later payment does not change the replay's answer
    const before = await writtenState();

    const again = await pay(o.obligationId, body);
    expect(again.status).toBe(first.status);
    expect(again.json).toEqual(first.json);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(await writtenState()).toBe(before);
  });

  it("the same reference paid several times at once is received once", async () => {
    const o = await givenDue(40_000n);
    const body = { reference: `RACE-${o.obligationId}`, amount: "10000" };
    const answers = await Promise.all(Array.from({ length: 6 }, () => pay(o.obligationId, body)));
    expect(new Set(answers.map((a) => a.status))).toEqual(new Set([201]));
    expect(new Set(answers.map((a) => JSON.stringify(a.json))).size).toBe(1);
    expect(await cashReceived(o.obligationId)).toHaveLength(1);
  });

  it("refuses the same reference with another amount, or for another obligation (409), writing nothing", async () => {
    const o = await givenDue(50_000n);
    const other = await givenDue(50_000n);
    const reference = `CONFLICT-${o.obligationId}`;
    expect((await pay(o.obligationId, { reference, amount: "10000" })).status).toBe(201);
    const before = await writtenState();

    const otherAmount = await pay(o.obligationId, { reference, amount: "10001" });
    expect(otherAmount.status).toBe(409);
    expect(otherAmount.json.code).toBe("PAYMENT_REFERENCE_CONFLICT");
    const otherObligation = await pay(other.obligationId, { reference, amount: "10000" });
    expect(otherObligation.status).toBe(409);
    expect(otherObligation.json.code).toBe("PAYMENT_REFERENCE_CONFLICT");
    expect(await writtenState()).toBe(before);
  });

  it("refuses more than the outstanding amount (422), writing nothing", async () => {
    const o = await givenDue(50_000n);
    expect((await pay(o.obligationId, { reference: `PART-${o.obligationId}`, amount: "20000" })).status).toBe(201);
    const before = await writtenState();
    const res = await pay(o.obligationId, { reference: `OVER-${o.obligationId}`, amount: "30001" });
    expect(res.status).toBe(422);
    expect(res.json).toMatchObject({ code: "PAYMENT_EXCEEDS_OUTSTANDING", outstanding: "30000" });
    expect(await writtenState()).toBe(before);
  });

  it("refuses a waived or an already settled obligation (409), writing nothing", async () => {
    const waived = await givenDue(10_000n, "waived");
    const settled = await givenSettledObligation(database, { amount: 10_000n, lenders: [10_000] });
    const before = await writtenState();
    const a = await pay(waived.obligationId, { reference: `W-${waived.obligationId}`, amount: "100" });
    const b = await pay(settled.obligationId, { reference: `S-${settled.obligationId}`, amount: "100" });
    expect([a.status, a.json.code, b.status, b.json.code]).toEqual([409, "OBLIGATION_NOT_PAYABLE", 409, "OBLIGATION_NOT_PAYABLE"]);
    expect(await writtenState()).toBe(before);
  });

  it("answers 404 for an unknown obligation, and accepts any uuid-shaped id in any case", async () => {
    const before = await writtenState();
    const res = await pay("ABCDEF01-2345-6789-ABCD-EF0123456789", { reference: "UNKNOWN-1", amount: "100" });
    expect(res.status).toBe(404);
    expect(res.json.code).toBe("OBLIGATION_NOT_FOUND");
    expect(await writtenState()).toBe(before);

    const o = await givenDue(1_000n);
    const upper = await pay(o.obligationId.toUpperCase(), { reference: `UP-${o.obligationId}`, amount: "1000" });
    expect(upper.status).toBe(201);
    expect(upper.json.obligationId).toBe(o.obligationId);
  });

  it.each([
    ["amount zero", { reference: "R-1", amount: "0" }],
    ["negative amount", { reference: "R-1", amount: "-100" }],
    ["fractional amount", { reference: "R-1", amount: "100.50" }],
    ["amount as a JSON number", { reference: "R-1", amount: 100 }],
    ["amount in exponent notation", { reference: "R-1", amount: "1e3" }],
    ["amount with a leading zero", { reference: "R-1", amount: "0100" }],
    ["amount beyond bigint", { reference: "R-1", amount: "99999999999999999999" }],
    ["empty amount", { reference: "R-1", amount: "" }],
    ["missing amount", { reference: "R-1" }],
    ["missing reference", { amount: "100" }],
    ["empty reference", { reference: "", amount: "100" }],
    ["reference too long", { reference: "R".repeat(121), amount: "100" }],
    ["unknown field", { reference: "R-1", amount: "100", currency: "CAD" }],
    ["SQL in the reference", { reference: "x'; drop table obligations; --", amount: "100" }],
    ["SQL tautology in the reference", { reference: "1 OR 1=1", amount: "100" }],
    ["dollar quoting in the reference", { reference: "$$;delete from cash_journal_entries;$$", amount: "100" }],
    ["a quote in the reference", { reference: "O'Brien", amount: "100" }],
    ["a newline in the reference", { reference: "R-1\nR-2", amount: "100" }],
    ["an array body", [{ reference: "R-1", amount: "100" }]],
    ["a string body", "R-1"],
  ])("answers 400 and writes nothing for %s", async (_name, body) => {
    const o = await givenDue(10_000n);
    const before = await writtenState();
    const res = await pay(o.obligationId, body);
    expect(res.status).toBe(400);
    expect(await writtenState()).toBe(before);
  });

  it.each([
    ["not a uuid", "not-a-uuid"],
    ["SQL in the id", "1%20or%201%3D1"],
    ["a uuid with a suffix", `${randomUUID()}x`],
  ])("answers 400 for a bad obligation id (%s), writing nothing", async (_name, id) => {
    const before = await writtenState();
    const res = await pay(id, { reference: "BAD-ID", amount: "100" });
    expect(res.status).toBe(400);
    expect(await writtenState()).toBe(before);
  });

  it("refuses oversized bodies (413), wrong content types (415) and broken JSON (400), writing nothing", async () => {
    const o = await givenDue(10_000n);
    const before = await writtenState();
    const path = `/api/obligations/${o.obligationId}/payments`;
    const padded = JSON.stringify({ reference: "BIG-1", amount: "100", pad: "x".repeat(4_000) });
    expect((await call("POST", path, { as: SAM, rawBody: padded })).status).toBe(413);
    expect((await call("POST", path, { as: SAM, rawBody: "x".repeat(1_000_000) })).status).toBe(413);
    const json = JSON.stringify({ reference: "CT-1", amount: "100" });
    expect((await call("POST", path, { as: SAM, rawBody: json, contentType: "text/plain" })).status).toBe(415);
    expect((await call("POST", path, { as: SAM, rawBody: "reference=CT-1&amount=100", contentType: "application/x-www-form-urlencoded" })).status).toBe(415);
    expect((await call("POST", path, { as: SAM, rawBody: json, contentType: null })).status).toBe(415);
    expect((await call("POST", path, { as: SAM, rawBody: "{\"reference\": \"J-1\", \"amount\": " })).status).toBe(400);
    expect(await writtenState()).toBe(before);
  });
});

describe("the service role", () => {
  it("operators, viewers and callers without credentials may not post payments", async () => {
    const o = await givenDue(10_000n);
    const before = await writtenState();
    expect((await pay(o.obligationId, { reference: "ROLE-1", amount: "100" }, OLGA)).status).toBe(403);
    expect((await pay(o.obligationId, { reference: "ROLE-1", amount: "100" }, VICTOR)).status).toBe(403);
    expect((await pay(o.obligationId, { reference: "ROLE-1", amount: "100" }, null)).status).toBe(401);
    expect((await pay(o.obligationId, { reference: "ROLE-1", amount: "100" }, { name: SAM.name, secret: "wrong-secret-123" })).status).toBe(401);
    expect(await writtenState()).toBe(before);
  });

  it.each([
    ["GET", "/api/escalations"],
    ["GET", "/api/reconciliation/latest"],
    ["POST", `/api/escalations/${randomUUID()}/requeue`],
    ["POST", "/api/escalations/requeue"],
    ["POST", "/api/healing/scan"],
    ["GET", `/api/obligations/${randomUUID()}/payments`],
    ["GET", "/ops"],
    ["GET", "/admin/queues"],
    ["GET", "/admin/queues/api/queues"],
    ["PUT", "/admin/queues/api/queues/dispersal-retrigger/retry/failed"],
    ["GET", "/metrics"],
  ])("a service account may not %s %s (403)", async (method, path) => {
    const res = await call(method, path, { as: SAM, ...(method === "GET" ? {} : { body: {} }) });
    expect(res.status).toBe(403);
    expect(res.json.error).toMatch(/service accounts may only post payments/);
  });

  it("audits every call, refused ones included, with the caller and the status", async () => {
    const o = await givenDue(10_000n);
    await pay(o.obligationId, { reference: `AUD-${o.obligationId}`, amount: "100" });
    await pay(o.obligationId, { reference: "x'; --", amount: "100" });
    await pay(o.obligationId, { reference: `AUD2-${o.obligationId}`, amount: "100" }, OLGA);
    const path = `/api/obligations/${o.obligationId}/payments`;
    await waitFor(async () => {
      const rows = await db.execute<{ actor: string; status: number }>(sql`
        select actor, (metadata->>'status')::int as status from audit_log
         where action = 'ops.http_response' and metadata->>'path' = ${path} order by created_at`);
      return rows.length === 3 ? rows : undefined;
    }, { timeoutMs: 5_000, what: "three audited calls" }).then((rows) =>
      expect(rows.map((r) => [r.actor, r.status])).toEqual([[SAM.name, 201], [SAM.name, 400], [OLGA.name, 403]]),
    );
  });
});
