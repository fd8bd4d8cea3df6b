import { describe, expect, it } from "vitest";
import { userInfo } from "node:os";
import { sql } from "drizzle-orm";
import { seedDemo } from "../../src/db/seed.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { spawnCli, waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";
import { testQueues } from "../helpers/testQueues.js";

const database = await testDb();
const { prefix, redisUrl } = testQueues();
const SERVICE = "feed:service:feed-service-secret";
// The CLI pays as the service account its OS user is mapped to.
const env = { DATABASE_URL: database.url, REDIS_URL: redisUrl, QUEUE_PREFIX: prefix, HEALING_BACKOFF_MS: "200", LOG_LEVEL: "warn", OPS_USERS: SERVICE, OPS_CLI_USERS: `${userInfo().username}:feed` };

async function run(args: string[], extra: Record<string, string> = {}): Promise<{ code: number | null; out: string }> {
  const proc = spawnCli(args, { ...env, ...extra });
  const code = await proc.exited;
  return { code, out: proc.output() };
}

describe("dispersal pay (the intake's CLI twin)", () => {
  it("receives a payment, answers a repeat the same, and refuses the same reference with another amount", async () => {
    const o = await givenSettledObligation(database, { status: "due", amount: 25_000n, lenders: [10_000], type: "principal_repayment" });
    const first = await run(["pay", o.obligationId, "--reference", "CLI-1", "--amount", "25000", "--actor", "feed"]);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.out)).toMatchObject({ paid: true, obligationId: o.obligationId, amount: "25000", outstanding: "0", status: "settled", replayed: false });

    const again = await run(["pay", o.obligationId, "--reference", "CLI-1", "--amount", "25000"]);
    expect(JSON.parse(again.out)).toMatchObject({ paid: true, journalEntryId: JSON.parse(first.out).journalEntryId, replayed: true });

    const conflict = await run(["pay", o.obligationId, "--reference", "CLI-1", "--amount", "100"]);
    expect(conflict.code).toBe(1);
    expect(JSON.parse(conflict.out)).toMatchObject({ paid: false, code: "PAYMENT_REFERENCE_CONFLICT" });

    const [row] = await database.db.execute<{ n: bigint; actor: string; channel: string }>(sql`
      select count(*) as n, min(actor) as actor, min(channel) as channel from cash_journal_entries
       where obligation_id = ${o.obligationId}::uuid and entry_type = 'CASH_RECEIVED'`);
    expect(row).toEqual({ n: 1n, actor: "feed", channel: "cli" });
  });

  it("refuses bad input before touching the database, naming the argument", async () => {
    const o = await givenSettledObligation(database, { status: "due", amount: 25_000n });
    const amount = await run(["pay", o.obligationId, "--reference", "CLI-2", "--amount", "12.50"]);
    expect(amount.code).toBe(1);
    expect(amount.out).toMatch(/--amount must be a positive integer number of cents/);
    const reference = await run(["pay", o.obligationId, "--reference", "x'; drop table obligations; --", "--amount", "100"]);
    expect(reference.code).toBe(1);
    expect(reference.out).toMatch(/--reference must be/);
    const id = await run(["pay", "nope", "--reference", "CLI-2", "--amount", "100"]);
    expect(id.code).toBe(1);
    expect(id.out).toMatch(/obligationId must be a UUID/);
    const unknown = await run(["pay", "00000000-0000-0000-0000-000000000000", "--reference", "CLI-2", "--amount", "100"]);
    expect(unknown.code).toBe(1);
    expect(JSON.parse(unknown.out)).toMatchObject({ paid: false, code: "OBLIGATION_NOT_FOUND" });
  });
});

describe("dispersal simulate", () => {
  it("pays a demo data set through the intake API and reports settle→dispersed latencies from the database", async () => {
    await seedDemo(database, { mortgages: 20 });
    const port = String(20_000 + Math.floor(Math.random() * 20_000));
    const server = spawnCli(["start"], { ...env, OPS_USERS: SERVICE, PORT: port });
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.ok, { timeoutMs: 30_000, what: "the server" });

    const sim = await run(["simulate", "--rate", "20", "--duration", "3", "--wait", "30"], { OPS_USERS: SERVICE, PORT: port });
    await server.stop("SIGTERM");
    expect(sim.code).toBe(0);
    const start = sim.out.indexOf("{\n"); // stdout's summary, among stderr's progress lines
    const summary = JSON.parse(sim.out.slice(start, sim.out.indexOf("\n}\n", start) + 2));
    expect(summary.payments.byStatus).toEqual({ "201": summary.payments.sent });
    expect(summary.obligations.fixableNotDispersed).toBe(0);
    expect(summary.obligations.dispersed).toBe(summary.obligations.settled - summary.obligations.notDispersed);
    expect(summary.settleToDispersedMs.count).toBe(summary.obligations.dispersed);
    expect(summary.settleToDispersedMs.p50).toBeGreaterThanOrEqual(0);
    expect(sim.out).toMatch(/simulate \d+\/3s {2}answers 201:\d+/);
  }, 120_000);
});
