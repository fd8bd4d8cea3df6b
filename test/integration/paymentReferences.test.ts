// Payment references are the service account's own and compared ignoring case (issue 21 item 8):
// another feed may use the same reference, and no 409 shows anything of another account's payment;
// payments posted under the key of before (no account) still replay and are still returned.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { postEntry } from "../../src/db/ledger.js";
import { idempotencyKeys } from "../../src/domain/ledgerRules.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { httpCall, type Credentials } from "../helpers/http.js";
import { testPipeline } from "../helpers/pipeline.js";
import { testDb } from "../helpers/testDb.js";

const FEED_A = { name: "feed-a", secret: "feed-a-service-secret" };
const FEED_B = { name: "feed-b", secret: "feed-b-service-secret" };

const database = await testDb();
const pipeline = testPipeline(database, { OPS_USERS: `${FEED_A.name}:service:${FEED_A.secret},${FEED_B.name}:service:${FEED_B.secret}`, PORT: "0" });
const db = database.db;
let http: HttpServer;

beforeAll(async () => {
  http = await startHttpServer(pipeline.ctx, pipeline.config);
});
afterAll(async () => {
  await http.close();
});

const pay = (as: Credentials, obligationId: string, reference: string, amount: string) =>
  httpCall(http.url, "POST", `/api/obligations/${obligationId}/payments`, { as, body: { reference, amount } });
const returnOf = (as: Credentials, obligationId: string, reference: string) =>
  httpCall(http.url, "POST", `/api/obligations/${obligationId}/payments/${reference}/return`, { as, body: { reason: "cheque bounced: NSF" } });

async function givenDue(amount = 100_000n) {
  return givenSettledObligation(database, { status: "due", amount, lenders: [6000, 4000], type: "principal_repayment" });
}

async function cashReceived(obligationId: string) {
  return db.execute<{ id: string; amount: bigint; actor: string; idempotency_key: string }>(sql`
    select id, amount, actor, idempotency_key from cash_journal_entries
     where obligation_id = ${obligationId}::uuid and entry_type = 'CASH_RECEIVED' order by sequence`);
}

async function reversalsOf(entryId: string) {
  return db.execute<{ id: string }>(sql`select id from cash_journal_entries where reverses_entry_id = ${entryId}::uuid and entry_type = 'REVERSAL'`);
}

/** A payment as the intake posted it before references were per account: the key is the reference alone. */
async function givenPaymentOfBefore(obligationId: string, reference: string, amount: bigint, account: string) {
  const [o] = await db.execute<{ mortgage_id: string }>(sql`select mortgage_id from obligations where id = ${obligationId}::uuid`);
  return db.transaction(async (tx) => {
    const posted = await postEntry(tx, {
      entryType: "CASH_RECEIVED",
      amount,
      debit: { family: "TRUST_CASH", mortgageId: o!.mortgage_id },
      credit: { family: "BORROWER_RECEIVABLE", obligationId },
      idempotencyKey: idempotencyKeys.cashReceivedBefore(reference),
      mortgageId: o!.mortgage_id,
      obligationId,
      reason: "payment received",
      metadata: { reference },
      actor: account,
      channel: "api",
    });
    await tx.execute(sql`update obligations set status = 'partially_settled' where id = ${obligationId}::uuid`);
    return posted;
  });
}

describe("payment references per service account", () => {
  it("lets another account use the same reference, and its 409 shows nothing of the first account's payment", async () => {
    const first = await givenDue(50_000n);
    const second = await givenDue(50_000n);
    const reference = `SHARED-${randomUUID()}`;
    expect((await pay(FEED_A, first.obligationId, reference, "12345")).status).toBe(201);

    const own = await pay(FEED_B, second.obligationId, reference, "7777");
    expect(own.status, own.text).toBe(201);
    expect(own.json).toMatchObject({ reference, amount: "7777", receivedTotal: "7777" });
    expect(own.headers.get("idempotent-replayed")).toBeNull();
    const conflict = await pay(FEED_B, second.obligationId, reference, "7778");
    expect(conflict.status).toBe(409);
    expect(conflict.json.code).toBe("PAYMENT_REFERENCE_CONFLICT");
    for (const secret of ["12345", first.obligationId, FEED_A.name]) expect(conflict.text).not.toContain(secret);

    expect((await cashReceived(first.obligationId)).map((r) => [r.amount, r.actor])).toEqual([[12_345n, FEED_A.name]]);
    expect((await cashReceived(second.obligationId)).map((r) => [r.amount, r.actor, r.idempotency_key])).toEqual([
      [7777n, FEED_B.name, `cash-ledger:cash-received:${FEED_B.name}:${reference.toLowerCase()}`],
    ]);
  });

  it("compares references ignoring case: the same reference in other letters is the same payment", async () => {
    const o = await givenDue(50_000n);
    const reference = `Case-${randomUUID()}`;
    const first = await pay(FEED_A, o.obligationId, reference, "10000");
    expect(first.status).toBe(201);

    const shouted = await pay(FEED_A, o.obligationId, reference.toUpperCase(), "10000");
    expect(shouted.status).toBe(201);
    expect(shouted.headers.get("idempotent-replayed")).toBe("true");
    expect(shouted.json).toMatchObject({ journalEntryId: first.json.journalEntryId, receivedTotal: "10000" });
    expect((await pay(FEED_A, o.obligationId, reference.toLowerCase(), "10001")).status).toBe(409);
    expect(await cashReceived(o.obligationId)).toHaveLength(1);
  });

  it("returns a payment by its reference in any case, and only the account's own", async () => {
    const o = await givenDue(50_000n);
    const reference = `Ret-${randomUUID()}`;
    const paid = await pay(FEED_A, o.obligationId, reference, "20000");
    expect(paid.status).toBe(201);

    const byAnother = await returnOf(FEED_B, o.obligationId, reference);
    expect(byAnother.status).toBe(404);
    expect(byAnother.text).not.toContain("20000");
    expect(await reversalsOf(paid.json.journalEntryId)).toHaveLength(0);

    const returned = await returnOf(FEED_A, o.obligationId, reference.toUpperCase());
    expect(returned.status, returned.text).toBe(201);
    expect(returned.json).toMatchObject({ amount: "20000", netReceived: "0", status: "due" });
    expect(await reversalsOf(paid.json.journalEntryId)).toHaveLength(1);
  });

  it("a payment posted under the key of before still replays, conflicts and is returned; another account's old one blocks nothing", async () => {
    const o = await givenDue(50_000n);
    const reference = `OLD-${randomUUID()}`;
    const before = await givenPaymentOfBefore(o.obligationId, reference, 15_000n, FEED_A.name);

    const replay = await pay(FEED_A, o.obligationId, reference, "15000");
    expect(replay.status, replay.text).toBe(201);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(replay.json).toMatchObject({ journalEntryId: before.id, receivedTotal: "15000" });
    expect((await pay(FEED_A, o.obligationId, reference, "15001")).status).toBe(409);

    const otherFeed = await pay(FEED_B, o.obligationId, reference, "5000");
    expect(otherFeed.status, otherFeed.text).toBe(201);
    expect(otherFeed.json).toMatchObject({ receivedTotal: "20000" });
    expect(otherFeed.headers.get("idempotent-replayed")).toBeNull();

    const returned = await returnOf(FEED_A, o.obligationId, reference);
    expect(returned.status, returned.text).toBe(201);
    expect(returned.json).toMatchObject({ amount: "15000", netReceived: "5000", status: "partially_settled" });
    expect(await reversalsOf(before.id)).toHaveLength(1);
    expect(await reversalsOf(otherFeed.json.journalEntryId)).toHaveLength(0);
  });
});
