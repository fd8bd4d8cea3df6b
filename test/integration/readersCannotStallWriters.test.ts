import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { sql } from "drizzle-orm";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { REFUSAL_DELAY_MS } from "../../src/dashboard/searchThrottle.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { httpCall } from "../helpers/http.js";
import { testPipeline } from "../helpers/pipeline.js";
import { testDb } from "../helpers/testDb.js";

const SAM = { name: "sam", secret: "sam-service-secret" };
const VERA = { name: "vera", secret: "vera-viewer-secret" };
const VICTOR = { name: "victor", secret: "victor-viewer-secret" };
const TOM = { name: "tom", secret: "tom-viewer-secret-1" };
const TIMEOUT_MS = 3_000;
const SEARCHES_PER_MINUTE = 8;

const database = await testDb();
const pipeline = testPipeline(database, {
  OPS_USERS: [`${SAM.name}:service:${SAM.secret}`, ...[VERA, VICTOR, TOM].map((u) => `${u.name}:viewer:${u.secret}`)].join(","),
  PORT: "0",
  READER_POOL_SIZE: "2",
  READER_STATEMENT_TIMEOUT_MS: String(TIMEOUT_MS),
  SEARCHES_PER_USER_PER_MINUTE: String(SEARCHES_PER_MINUTE),
});
const { ctx } = pipeline;
let http: HttpServer;

beforeAll(async () => {
  http = await startHttpServer(ctx, pipeline.config);
});
afterAll(async () => {
  await http.close();
});

const search = (q: string, as = VERA) => httpCall(http.url, "GET", `/api/search?q=${encodeURIComponent(q)}`, { as });

describe("search and the ops pages cannot stall the writers", () => {
  it("refuses a search of fewer than 3 characters with a JSON reason; the ops page says so instead of searching", async () => {
    for (const q of ["a", "ab", "  ab  "]) {
      const answer = await search(q);
      expect(answer.status).toBe(400);
      expect(answer.json.error).toMatch(/at least 3 characters/);
    }
    const page = await httpCall(http.url, "GET", "/ops?q=ab", { as: VERA });
    expect(page.status).toBe(200);
    expect(page.text).toContain("Type at least 3 characters to search.");
  });

  it("finds a mortgage by its whole reference, longer than the index probe", async () => {
    const o = await givenSettledObligation(database, { lenders: [10_000] });
    const answer = await search(`M-${o.mortgageId}`, TOM);
    expect(answer.status).toBe(200);
    expect(answer.json.obligations).toEqual([expect.objectContaining({ obligationId: o.obligationId, matchedBy: "mortgage" })]);
  });

  it("a search that would run long is stopped by the statement timeout and answered 503, while a payment posted at the same time succeeds promptly", async () => {
    const due = await givenSettledObligation(database, { status: "due", amount: 80_000n, lenders: [10_000], type: "principal_repayment" });
    // Another session holds mortgage_positions exclusively (as a migration or a VACUUM FULL would):
    // the lender half of every search waits for it, for as long as nothing stops it. A payment does
    // not touch the table (a lock on one the writers share would stall them whatever the readers do).
    const blocker = postgres(database.url, { max: 1, onnotice: () => {} });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const lockTaken = new Promise<void>((resolve) => (locked = resolve));
    const holding = blocker.begin(async (tx) => {
      await tx`lock table mortgage_positions in access exclusive mode`;
      locked();
      await held;
    });
    try {
      await lockTaken;
      const started = Date.now();
      const searches = Array.from({ length: 6 }, () => search("Lender 1", VICTOR).then((answer) => ({ answer, ms: Date.now() - started })));
      await new Promise((r) => setTimeout(r, 100));

      const paidAt = Date.now();
      const payment = await httpCall(http.url, "POST", `/api/obligations/${due.obligationId}/payments`, { as: SAM, body: { reference: `STALL-${due.obligationId}`, amount: "80000" } });
      const paymentMs = Date.now() - paidAt;
      expect(payment.status).toBe(201);
      expect(payment.json).toMatchObject({ status: "settled", outstanding: "0" });
      // Before any search could have ended: the six wait for two readers' connections, each for the timeout.
      expect(paymentMs).toBeLessThan(TIMEOUT_MS);

      const answered = await Promise.all(searches);
      for (const { answer, ms } of answered) {
        expect(answer.status).toBe(503);
        expect(answer.json).toMatchObject({ code: "READ_TIMEOUT", error: expect.stringMatching(/READER_STATEMENT_TIMEOUT_MS/) });
        expect(ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
      }
      // Two connections, six searches: they took three rounds of the timeout, not one.
      expect(Math.max(...answered.map((a) => a.ms))).toBeGreaterThanOrEqual(3 * TIMEOUT_MS - 150);

      const [cash] = await database.db.execute<{ n: bigint }>(sql`
        select count(*) as n from cash_journal_entries where obligation_id = ${due.obligationId}::uuid and entry_type = 'CASH_RECEIVED'`);
      expect(cash!.n).toBe(1n);
    } finally {
      release();
      await holding;
      await blocker.end();
    }
  }, 60_000);

  it("throttles one user's searches past the limit (429, Retry-After, answered about a second late), and not another user's", async () => {
    const answers = [];
    const took: number[] = [];
    for (let i = 0; i <= SEARCHES_PER_MINUTE; i++) {
      const started = performance.now();
      answers.push(await search("nothing-like-this", TOM));
      took.push(performance.now() - started);
    }
    // A refusal waits REFUSAL_DELAY_MS before it is sent: a client looping without honouring Retry-After slows down.
    answers.forEach((a, i) => a.status === 429 && expect(took[i]).toBeGreaterThanOrEqual(REFUSAL_DELAY_MS - 50));
    // TOM searched once already above.
    const throttled = answers.filter((a) => a.status === 429);
    expect(throttled.length).toBeGreaterThanOrEqual(1);
    expect(throttled[0]!.json).toMatchObject({ code: "SEARCH_THROTTLED", error: expect.stringMatching(/too many searches/) });
    expect(Number(throttled[0]!.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(answers.slice(0, SEARCHES_PER_MINUTE - 1).every((a) => a.status === 200)).toBe(true);

    const page = await httpCall(http.url, "GET", "/ops?q=nothing-like-this", { as: TOM });
    expect(page.status).toBe(200);
    expect(page.text).toMatch(/too many searches/);
    expect((await search("nothing-like-this", VERA)).status).toBe(200);
  });
});
