// The CLI's insider gaps (issue 21 item 8): the four-eyes policy is Postgres's, so a CLI whose own
// REQUEUE_APPROVALS says 1 still waits for approval; and the CLI acts only as the operator (or
// service account) its OS user is mapped to in OPS_CLI_USERS, recording both names.
import { describe, expect, it } from "vitest";
import { userInfo } from "node:os";
import { sql } from "drizzle-orm";
import { givenMortgage, givenSettledObligation } from "../helpers/factories.js";
import { givenEscalations } from "../helpers/healingRows.js";
import { spawnCli } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";
import { testQueues } from "../helpers/testQueues.js";

const OS_USER = userInfo().username;
const database = await testDb();
const { prefix, redisUrl } = testQueues();
const env = {
  DATABASE_URL: database.url,
  REDIS_URL: redisUrl,
  QUEUE_PREFIX: prefix,
  LOG_LEVEL: "silent",
  OPS_USERS: "carol:operator:carol-operator-secret,dave:operator:dave-operator-secret,feed:service:feed-service-secret",
  OPS_CLI_USERS: `${OS_USER}:carol,${OS_USER}:feed,someone-else:dave`,
};
const REASON = ["--reason", "positions restored by the servicer"];

async function run(args: string[], extraEnv: Record<string, string> = {}): Promise<{ code: number | null; out: string }> {
  const proc = spawnCli(args, { ...env, ...extraEnv });
  const code = await proc.exited;
  return { code, out: proc.output() };
}

async function healingStatus(obligationId: string): Promise<string> {
  const [row] = await database.db.execute<{ status: string }>(sql`select status from dispersal_healing_attempts where obligation_id = ${obligationId}::uuid`);
  return row!.status;
}

async function requestsOf(obligationId: string) {
  return database.db.execute<{ requested_by: string; status: string; channel: string }>(sql`
    select requested_by, status, channel from requeue_requests where obligation_id = ${obligationId}::uuid`);
}

async function auditOf(action: string, resourceId: string) {
  return database.db.execute<{ actor: string; metadata: Record<string, unknown> }>(sql`
    select actor, metadata from audit_log where action = ${action} and resource_id = ${resourceId} order by created_at`);
}

async function oneEscalation(): Promise<string> {
  const { mortgageId } = await givenMortgage(database, { lenders: [0] });
  const [id] = await givenEscalations(database, { mortgageId, count: 1 });
  return id!;
}

describe("the CLI's actor", () => {
  it("refuses requeue --actor mallory, a name the OS user is not mapped to, and changes nothing", async () => {
    const id = await oneEscalation();
    const refused = await run(["requeue", id, "--actor", "mallory", ...REASON]);
    expect(refused.code).toBe(1);
    expect(refused.out).toMatch(/^dispersal: --actor mallory is not an operator OS user .+ may act as .*OPS_CLI_USERS.*nothing was changed\n$/);
    // dave is an operator, but of another OS user.
    expect((await run(["requeue", id, "--actor", "dave", ...REASON])).code).toBe(1);
    // An OS user mapped to nobody may not act as anyone, not even without --actor.
    const unmapped = await run(["requeue", id, ...REASON], { OPS_CLI_USERS: "" });
    expect(unmapped.code).toBe(1);
    expect(unmapped.out).toMatch(/^dispersal: OS user .+ may not act as an operator/);
    expect(await healingStatus(id)).toBe("escalated");
    expect(await requestsOf(id)).toEqual([]);
  });

  it("requeues as the mapped operator (no --actor needed) and audits both the operator and the OS user", async () => {
    const id = await oneEscalation();
    const { code, out } = await run(["requeue", id, ...REASON]);
    expect(code, out).toBe(0);
    expect(JSON.parse(out)).toEqual([expect.objectContaining({ obligationId: id, status: "requeued", requeued: true })]);
    expect(await auditOf("dispersal.self_healing_requeued", id)).toEqual([
      expect.objectContaining({ actor: "carol", metadata: expect.objectContaining({ channel: "cli", osUser: OS_USER }) }),
    ]);
  });

  it("pays only as the mapped service account: --actor mallory is refused, the payment is audited with both names", async () => {
    const o = await givenSettledObligation(database, { status: "due", amount: 25_000n, lenders: [10_000], type: "principal_repayment" });
    const refused = await run(["pay", o.obligationId, "--reference", "CLI-ACTOR-1", "--amount", "25000", "--actor", "mallory"]);
    expect(refused.code).toBe(1);
    expect(refused.out).toMatch(/^dispersal: --actor mallory is not a service OS user/);
    // carol is mapped to this OS user, but as an operator: she posts no payments.
    expect((await run(["pay", o.obligationId, "--reference", "CLI-ACTOR-1", "--amount", "25000", "--actor", "carol"])).code).toBe(1);
    const [none] = await database.db.execute<{ n: number }>(sql`select count(*)::int as n from cash_journal_entries where obligation_id = ${o.obligationId}::uuid and entry_type = 'CASH_RECEIVED'`);
    expect(none!.n).toBe(0);

    const paid = await run(["pay", o.obligationId, "--reference", "CLI-ACTOR-1", "--amount", "25000"]);
    expect(paid.code, paid.out).toBe(0);
    const [posting] = await database.db.execute<{ actor: string; channel: string }>(sql`
      select actor, channel from cash_journal_entries where obligation_id = ${o.obligationId}::uuid and entry_type = 'CASH_RECEIVED'`);
    expect(posting).toEqual({ actor: "feed", channel: "cli" });
    expect(await auditOf("payments.cash_received", o.obligationId)).toEqual([
      expect.objectContaining({ actor: "feed", metadata: expect.objectContaining({ channel: "cli", osUser: OS_USER }) }),
    ]);
  });
});

describe("the four-eyes policy in Postgres", () => {
  it("with the policy at 2 in Postgres, a CLI requeue with REQUEUE_APPROVALS=1 still waits for approval", async () => {
    await database.db.execute(sql`
      insert into ops_policy (singleton, requeue_approvals, set_by) values (true, 2, 'test')
      on conflict (singleton) do update set requeue_approvals = 2, set_by = 'test'`);
    const id = await oneEscalation();
    const { code, out } = await run(["requeue", id, "--actor", "carol", ...REASON], { REQUEUE_APPROVALS: "1" });
    expect(code, out).toBe(0);
    expect(JSON.parse(out)).toEqual([expect.objectContaining({ obligationId: id, status: "pending_approval", requeued: false })]);
    expect(await healingStatus(id)).toBe("escalated");
    expect(await requestsOf(id)).toEqual([{ requested_by: "carol", status: "pending", channel: "cli" }]);
    expect(await auditOf("dispersal.self_healing_requeued", id)).toEqual([]);
  });

  it("policy set writes the row and audits it in the OS user's name; policy show prints it; a service start keeps it", async () => {
    const set = await run(["policy", "set", "--requeue-approvals", "1"]);
    expect(set.code, set.out).toBe(0);
    expect(JSON.parse(set.out)).toMatchObject({ requeueApprovals: 1, setBy: OS_USER, previous: 2 });
    const [audit] = await database.db.execute<{ actor: string; metadata: Record<string, unknown> }>(sql`
      select actor, metadata from audit_log where action = 'ops.policy_set' order by created_at desc limit 1`);
    expect(audit).toEqual({ actor: OS_USER, metadata: expect.objectContaining({ requeueApprovals: 1, previous: 2, channel: "cli", osUser: OS_USER }) });

    // `migrate` (as start, server and worker do) writes REQUEUE_APPROVALS only into an empty table.
    expect((await run(["migrate"], { REQUEUE_APPROVALS: "2" })).code).toBe(0);
    const shown = await run(["policy", "show"], { REQUEUE_APPROVALS: "2" });
    expect(shown.code, shown.out).toBe(0);
    expect(JSON.parse(shown.out)).toMatchObject({ requeueApprovals: 1, setBy: OS_USER, source: "ops_policy" });

    const bad = await run(["policy", "set", "--requeue-approvals", "3"]);
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/--requeue-approvals.*must be 1 or 2/);
  });

  it("a database without a policy takes REQUEUE_APPROVALS from the first service process, audited", async () => {
    await database.db.execute(sql`delete from ops_policy`);
    const empty = await run(["policy", "show"], { REQUEUE_APPROVALS: "2" });
    expect(JSON.parse(empty.out)).toMatchObject({ requeueApprovals: 2, setBy: null, source: expect.stringMatching(/^REQUEUE_APPROVALS/) });
    expect((await run(["migrate"], { REQUEUE_APPROVALS: "2" })).code).toBe(0);
    expect((await run(["migrate"], { REQUEUE_APPROVALS: "1" })).code).toBe(0);
    const [row] = await database.db.execute<{ requeue_approvals: number; set_by: string }>(sql`select requeue_approvals, set_by from ops_policy`);
    expect(row).toEqual({ requeue_approvals: 2, set_by: "REQUEUE_APPROVALS" });
    const initialised = await database.db.execute<{ metadata: Record<string, unknown> }>(sql`select metadata from audit_log where action = 'ops.policy_initialised'`);
    expect(initialised.map((r) => r.metadata)).toEqual([{ requeueApprovals: 2, from: "REQUEUE_APPROVALS" }]);
  });
});
