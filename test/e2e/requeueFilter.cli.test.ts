// `dispersal requeue --mortgage M [--error E] --expect N --reason …` (issue 21 item 2): acts only when
// the filter matches exactly N escalations; otherwise one line on stderr, a non-zero exit, nothing changed.
import { describe, expect, it } from "vitest";
import { userInfo } from "node:os";
import { sql } from "drizzle-orm";
import { givenMortgage } from "../helpers/factories.js";
import { givenEscalations } from "../helpers/healingRows.js";
import { spawnCli } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";
import { testQueues } from "../helpers/testQueues.js";

const database = await testDb();
const { prefix, redisUrl } = testQueues();
const env = {
  DATABASE_URL: database.url,
  REDIS_URL: redisUrl,
  QUEUE_PREFIX: prefix,
  HEALING_BACKOFF_MS: "20",
  LOG_LEVEL: "silent",
  OPS_USERS: "carol:operator:carol-operator-secret",
  OPS_CLI_USERS: `${userInfo().username}:carol`,
};

async function run(args: string[], extraEnv: Record<string, string> = {}): Promise<{ code: number | null; out: string }> {
  const proc = spawnCli(args, { ...env, ...extraEnv });
  const code = await proc.exited;
  return { code, out: proc.output() };
}

async function statusesOf(ids: readonly string[]): Promise<Record<string, number>> {
  const rows = await database.db.execute<{ status: string; n: number }>(sql`
    select status, count(*)::int as n from dispersal_healing_attempts where obligation_id = any(${`{${ids.join(",")}}`}::uuid[]) group by status`);
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

describe("dispersal requeue by filter", () => {
  it("refuses a count mismatch with one line and a non-zero exit, then requeues exactly the matches", async () => {
    const { mortgageId } = await givenMortgage(database, { lenders: [0] });
    const matching = await givenEscalations(database, { mortgageId, count: 4, error: `no active positions: mortgage ${mortgageId} has no lender with units > 0` });
    const other = await givenEscalations(database, { mortgageId, count: 2, error: "deadlock detected" });
    const byFilter = ["requeue", "--mortgage", mortgageId.toUpperCase(), "--error", "no active positions: mortgage <id> has no lender with units > <n>", "--actor", "carol", "--reason", "positions restored by the servicer"];

    const mismatch = await run([...byFilter, "--expect", "3"]);
    expect(mismatch.code).toBe(1);
    expect(mismatch.out).toBe("dispersal: the filter matches 4 escalations, not the 3 expected: nothing was requeued; check the selection again\n");
    expect(await statusesOf([...matching, ...other])).toEqual({ escalated: 6 });

    const withoutExpect = await run(byFilter);
    expect(withoutExpect.code).toBe(1);
    expect(withoutExpect.out).toMatch(/^dispersal: --expect <n> is required with a filter/);

    const dryRun = await run([...byFilter, "--dry-run"]);
    expect(dryRun.code).toBe(0);
    expect(JSON.parse(dryRun.out)).toMatchObject({ dryRun: true, matched: 4 });
    expect(await statusesOf(matching)).toEqual({ escalated: 4 });

    const { code, out } = await run([...byFilter, "--expect", "4"]);
    expect(code).toBe(0);
    const results = JSON.parse(out) as Array<{ obligationId: string; requeued: boolean }>;
    expect(results.map((r) => [r.obligationId, r.requeued])).toEqual(matching.map((id) => [id, true]));
    expect(await statusesOf(matching)).toEqual({ requeued: 4 });
    expect(await statusesOf(other)).toEqual({ escalated: 2 });
    const audits = await database.db.execute<{ actor: string; metadata: Record<string, unknown> }>(sql`
      select actor, metadata from audit_log where action = 'dispersal.self_healing_requeued' and resource_id = any(${`{${matching.join(",")}}`}::text[])`);
    expect(audits).toHaveLength(4);
    expect(audits[0]).toMatchObject({ actor: "carol", metadata: { channel: "cli", osUser: expect.any(String), selection: { expectedCount: 4, filter: { mortgageId } } } });
  });

  it("refuses ids and a filter together; under four eyes a filter asks for each match and waits", async () => {
    const { mortgageId } = await givenMortgage(database, { lenders: [0] });
    const [id] = await givenEscalations(database, { mortgageId, count: 1 });
    const both = await run(["requeue", id!, "--mortgage", mortgageId, "--expect", "1", "--actor", "carol", "--reason", "positions restored by the servicer"]);
    expect(both).toMatchObject({ code: 1, out: "dispersal: give obligation ids or a filter (--mortgage, --error, --escalated-before), not both\n" });
    await database.db.execute(sql`insert into ops_policy (singleton, requeue_approvals, set_by) values (true, 2, 'test')`);
    try {
      const fourEyes = await run(["requeue", "--mortgage", mortgageId, "--expect", "1", "--actor", "carol", "--reason", "positions restored by the servicer"], { REQUEUE_APPROVALS: "1" });
      expect(fourEyes.code, fourEyes.out).toBe(0);
      expect(JSON.parse(fourEyes.out)).toEqual([expect.objectContaining({ obligationId: id, status: "pending_approval", requeued: false })]);
      expect(await statusesOf([id!])).toEqual({ escalated: 1 });
      const [request] = await database.db.execute<{ requested_by: string; status: string }>(sql`select requested_by, status from requeue_requests where obligation_id = ${id!}::uuid`);
      expect(request).toEqual({ requested_by: "carol", status: "pending" });
    } finally {
      await database.db.execute(sql`delete from ops_policy`);
    }
  });
});
