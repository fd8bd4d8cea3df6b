import { describe, expect, it } from "vitest";
import { userInfo } from "node:os";
import { sql } from "drizzle-orm";
import { givenSettledObligation } from "../helpers/factories.js";
import { spawnCli } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";
import { testQueues } from "../helpers/testQueues.js";

const database = await testDb();
const { prefix, redisUrl } = testQueues();
// The CLI acts as an operator its OS user is mapped to: here carol or dave (so --actor is needed).
const env = {
  DATABASE_URL: database.url,
  REDIS_URL: redisUrl,
  QUEUE_PREFIX: prefix,
  HEALING_BACKOFF_MS: "20",
  LOG_LEVEL: "silent",
  OPS_USERS: "carol:operator:carol-operator-secret,dave:operator:dave-operator-secret",
  OPS_CLI_USERS: `${userInfo().username}:carol,${userInfo().username}:dave`,
};

async function run(args: string[]): Promise<{ code: number | null; out: string }> {
  const proc = spawnCli(args, env);
  const code = await proc.exited;
  return { code, out: proc.output() };
}

describe("the dispersal CLI", () => {
  it("scan --wait works the orphans and prints what became of them", async () => {
    const fixable = await givenSettledObligation(database, { lenders: [6000, 4000] });
    const unfixable = await givenSettledObligation(database, { lenders: [0], amount: 4_200n });
    const { code, out } = await run(["scan", "--wait", "--timeout", "60"]);
    expect(code).toBe(0);
    expect(JSON.parse(out)).toMatchObject({ found: 2, enqueued: 2, dispersed: 1, escalated: 1, skipped: 0, unfinished: 0 });
    const [row] = await database.db.execute<{ n: bigint }>(sql`select count(*) as n from dispersal_entries where obligation_id = ${fixable.obligationId}::uuid`);
    expect(row!.n).toBe(2n);

    const listed = await run(["escalations"]);
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.out)).toMatchObject([{ obligationId: unfixable.obligationId, amount: "4200", suspenseBalance: "4200", attemptCount: 3 }]);
  });

  it("requeue refuses what is not escalated and names the reason, and requeues what is", async () => {
    const [escalated] = await database.db.execute<{ obligation_id: string }>(sql`select obligation_id from dispersal_healing_attempts where status = 'escalated'`);
    const notEscalated = await givenSettledObligation(database, { status: "due" });
    const withoutReason = await run(["requeue", escalated!.obligation_id, "--actor", "carol"]);
    expect(withoutReason.code).not.toBe(0);
    const blankReason = await run(["requeue", escalated!.obligation_id, "--actor", "carol", "--reason", "   "]);
    expect(blankReason.code).not.toBe(0);
    const withoutActor = await run(["requeue", escalated!.obligation_id, "--reason", "positions corrected"]);
    expect(withoutActor.code).not.toBe(0);
    const { code, out } = await run(["requeue", escalated!.obligation_id, notEscalated.obligationId, "--actor", "carol", "--reason", "positions corrected"]);
    expect(code).toBe(1);
    const results = JSON.parse(out);
    expect(results[0]).toMatchObject({ obligationId: escalated!.obligation_id, requeued: true, round: 2 });
    expect(results[1]).toMatchObject({ obligationId: notEscalated.obligationId, requeued: false, code: "NOT_ESCALATED" });
    const audits = await database.db.execute<{ actor: string; metadata: Record<string, unknown> }>(sql`select actor, metadata from audit_log where action = 'dispersal.self_healing_requeued'`);
    expect(audits).toHaveLength(1);
    expect(audits[0]).toMatchObject({ actor: "carol", metadata: { channel: "cli", reason: "positions corrected", osUser: expect.any(String) } });
  });

  it("requeue takes ids as Postgres holds them, in any case, and refuses a malformed one before changing anything", async () => {
    const foreign = await givenSettledObligation(database, { lenders: [0], amount: 3_100n, ids: { obligation: "30000000-0000-0000-0000-0000000000c1" } });
    expect((await run(["scan", "--wait", "--timeout", "60"])).code).toBe(0);
    const requeues = async () => (await database.db.execute<{ n: bigint }>(sql`select count(*) as n from audit_log where action = 'dispersal.self_healing_requeued'`))[0]!.n;
    const before = await requeues();

    const refused = await run(["requeue", "30000000-0000-0000-0000-0000000000C1", "30000000-0000-0000-0000-0000000000cg", "--actor", "dave", "--reason", "positions fixed"]);
    expect(refused.code).toBe(1);
    expect(refused.out).toMatch(/must be a UUID \(8-4-4-4-12 hexadecimal\)/);
    expect(await requeues()).toBe(before);

    const { code, out } = await run(["requeue", "30000000-0000-0000-0000-0000000000C1", "--actor", "dave", "--reason", "positions fixed"]);
    expect(code).toBe(0);
    expect(JSON.parse(out)).toEqual([expect.objectContaining({ obligationId: foreign.obligationId, requeued: true, round: 2 })]);
    expect(await requeues()).toBe(before + 1n);
  });

  it("reconcile stores a run and reports a clean ledger", async () => {
    const { code, out } = await run(["reconcile"]);
    expect(code).toBe(0);
    const first = JSON.parse(out);
    expect(first).toMatchObject({ status: "clean", defectCount: 0 });
    // Daily runs are incremental from the previous completed run; --full sweeps everything.
    const incremental = await run(["reconcile"]);
    expect(incremental.code).toBe(0);
    expect(JSON.parse(incremental.out)).toMatchObject({ status: "clean", scope: "incremental", fromMark: first.journalMark });
    const full = await run(["reconcile", "--full"]);
    expect(full.code).toBe(0);
    expect(JSON.parse(full.out)).toMatchObject({ status: "clean", scope: "full", fromMark: null, obligationsChecked: expect.any(Number) });
  });

  it("stops at start-up with the variable named when the configuration is bad", async () => {
    const proc = spawnCli(["worker"], { ...env, WORKER_CONCURRENCY: "0" });
    expect(await proc.exited).toBe(1);
    expect(proc.output()).toMatch(/WORKER_CONCURRENCY/);
  });
});
