// Hostile input, queue side: malformed, oversized and hostile payloads added straight into
// dispersal-retrigger. Each one fails at once, without retry and without escalation; nothing is
// written; the worker processes stay up; and real orphans healed alongside are not disturbed.
import { randomUUID } from "node:crypto";
import { sql } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import { scanForOrphans } from "../../src/jobs/scan.js";
import { JOB, QUEUE } from "../../src/queues/names.js";
import { isRefusal } from "../../src/jobs/jobFailures.js";
import { waitFor, whyExited, type Child } from "./children.js";
import { expectNothingLostOrDoubled, measureEndState } from "./endState.js";
import { recordFaults } from "./faultCounts.js";
import { note, Scenario } from "./scenario.js";

const scenario = await Scenario.open();
afterAll(() => scenario.close());

function nested(depth: number): unknown {
  let value: unknown = { obligationId: "deep" };
  for (let i = 0; i < depth; i++) value = { obligationId: value };
  return value;
}

/** Payloads that must all be refused. `decoy` is a real, settled, undispersed obligation: none of them may disperse it. */
function hostilePayloads(decoy: string, notSettled: string): Array<[string, unknown]> {
  return [
    ["no obligationId", {}],
    ["obligationId null", { obligationId: null }],
    ["obligationId not a uuid", { obligationId: "not-a-uuid" }],
    ["uuid followed by SQL", { obligationId: `${decoy}'; delete from obligations; --` }],
    ["SQL tautology", { obligationId: "' OR '1'='1" }],
    ["stacked SQL", { obligationId: "1; drop table cash_journal_entries" }],
    ["uuid with a NUL byte", { obligationId: `${decoy}\u0000` }],
    ["1 MB string", { obligationId: "7".repeat(1024 * 1024) }],
    ["nested object", { obligationId: { id: decoy } }],
    ["operator object", { obligationId: { $ne: null } }],
    ["nested 500 levels deep", nested(500)],
    ["array of ids", { obligationId: [decoy, decoy] }],
    ["data is an array", [decoy]],
    ["data is null", null],
    ["data is a number", 42],
    ["data is the bare uuid string", decoy],
    ["obligationId a number", { obligationId: 12345 }],
    ["obligationId a boolean", { obligationId: true }],
    ["__proto__ carrying the obligationId", JSON.parse(`{"__proto__": {"obligationId": "${decoy}"}}`)],
    ["constructor.prototype carrying the obligationId", { constructor: { prototype: { obligationId: decoy } } }],
    ["__proto__ pollution beside a bad id", JSON.parse(`{"__proto__": {"polluted": true, "isAdmin": true}, "obligationId": "x"}`)],
    ["requestedBy of 100 kB", { obligationId: decoy, requestedBy: "r".repeat(100_000) }],
    ["requestedBy an object", { obligationId: decoy, requestedBy: { toString: "mallory" } }],
    ["unknown obligation", { obligationId: randomUUID() }],
    ["obligation not settled", { obligationId: notSettled }],
  ];
}

async function addHostile(batch: string, payloads: Array<[string, unknown]>): Promise<string[]> {
  const ids: string[] = [];
  for (const [i, [, data]] of payloads.entries()) {
    const job = await scenario.ctx.queues.retrigger.add(JOB.retrigger, data as never, {
      jobId: `hostile-${batch}-${i}`,
      attempts: 3,
      backoff: { type: "exponential", delay: 200 },
    });
    ids.push(job.id!);
  }
  return ids;
}

/** Every job failed once (no retry, no backoff), as unrecoverable; returns how many did. */
async function expectRefusedAtOnce(ids: string[], labels: string[]): Promise<number> {
  const { retrigger } = scenario.ctx.queues;
  await scenario.explainFailure(
    waitFor(async () => (await Promise.all(ids.map(async (id) => (await retrigger.getJob(id))?.getState()))).every((s) => s === "failed"), {
      timeoutMs: 30_000,
      what: "every hostile job failed",
      everyMs: 100,
    }),
  );
  const jobs = await Promise.all(ids.map((id) => retrigger.getJob(id)));
  const outcome = jobs.map((job, i) => ({
    payload: labels[i],
    attemptsStarted: job!.attemptsStarted,
    unrecoverable: isRefusal(job!.failedReason),
    fast: job!.finishedOn! - job!.timestamp < 10_000,
  }));
  expect(outcome).toEqual(labels.map((payload) => ({ payload, attemptsStarted: 1, unrecoverable: true, fast: true })));
  return outcome.length;
}

async function rowCounts(): Promise<Record<string, bigint>> {
  const [row] = await scenario.database.db.execute<Record<string, bigint>>(sql`
    select (select count(*) from dispersal_entries) as entries, (select count(*) from servicing_fee_entries) as fees,
           (select count(*) from cash_journal_entries) as journal, (select count(*) from cash_accounts) as accounts,
           (select count(*) from dispersal_healing_attempts) as healing, (select count(*) from audit_log) as audit,
           (select count(*) from obligations) as obligations, (select count(*) from obligations where dispersed) as dispersed`);
  return row!;
}

describe("hostile retrigger job payloads", () => {
  it("fails each at once without retry, writes nothing, keeps the workers alive, and disturbs no real dispersal", async () => {
    const { healing, retrigger } = scenario.ctx.queues;
    const workers: Child[] = [0, 1, 2].map((i) => scenario.spawnWorker(`worker-${i}`));
    // The schedule's first scan runs as the workers start; after it, nothing but our jobs moves.
    await waitFor(async () => (await healing.getJobCountByTypes("completed")) >= 1, { timeoutMs: 60_000, what: "the scheduled start-up scan" });
    expect(retrigger.name).toBe(QUEUE.retrigger);

    const decoys = await scenario.seedOrphans({ fixable: 3, unfixable: 0 });
    const decoy = decoys.fixable[0]!;
    const [notSettled] = await scenario.database.db.execute<{ id: string }>(sql`
      insert into obligations (mortgage_id, type, amount, status, due_date)
      select mortgage_id, 'principal_repayment', 5000, 'due', current_date from obligations where id = ${decoy}::uuid
      returning id::text`);
    const payloads = hostilePayloads(decoy, notSettled!.id);
    const labels = payloads.map(([label]) => label);
    // The decoys were inserted settled: the settlement listeners disperse them at once. Count after that.
    await waitFor(async () => (await rowCounts()).dispersed === 3n, { timeoutMs: 30_000, what: "the decoys dispersed by the fast path" });
    await scenario.waitQuiescent();

    const before = await rowCounts();
    const first = await addHostile("a", payloads);
    let rejected = await expectRefusedAtOnce(first, labels);
    expect(await rowCounts()).toEqual(before);
    expect(workers.map((w) => w.alive()), whyExited(workers)).toEqual([true, true, true]);
    note("hostile payloads refused, nothing written", { rejected });

    // Again, while 1,000 real orphans (and the decoys) are healed by the same workers.
    const orphans = await scenario.seedOrphans({ fixable: 960, unfixable: 40 });
    orphans.fixable.push(...decoys.fixable);
    await scanForOrphans(scenario.ctx, "fault-suite");
    await scenario.waitForProgress(0.2);
    rejected += await expectRefusedAtOnce(await addHostile("b", payloads), labels);

    await scenario.settle();
    const end = await measureEndState(scenario.database, orphans);
    const [strays] = await scenario.database.db.execute<{ n: bigint }>(sql`
      select count(*) as n from dispersal_healing_attempts where obligation_id = ${notSettled!.id}::uuid`);
    recordFaults(import.meta.url, "hostile retrigger payloads", { hostileRejected: rejected, ...end });
    expect(strays!.n).toBe(0n);
    expect(workers.map((w) => w.alive()), whyExited(workers)).toEqual([true, true, true]);
    expectNothingLostOrDoubled(end, { dispersed: 963, escalated: 40 });
  }, 180_000);
});
