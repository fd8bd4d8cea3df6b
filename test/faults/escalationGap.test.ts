// Fault 2: a worker dies between a job's final failure and its escalation. Made deterministic without
// any hook in the service: the test holds an uncommitted journal row under each unfixable
// obligation's SUSPENSE_ESCALATED idempotency key, so every escalation transaction blocks on the
// unique index after the job has landed in the failed set; then the workers are SIGKILLed and the
// test's row rolled back. Nothing was escalated; the scan's backstop escalates each exactly once.
import { sql } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import { scanForOrphans } from "../../src/jobs/scan.js";
import { waitFor, type Child } from "./children.js";
import { expectNothingLostOrDoubled, measureEndState } from "./endState.js";
import { recordFaults } from "./faultCounts.js";
import { note, Scenario } from "./scenario.js";

const scenario = await Scenario.open();
afterAll(() => scenario.close());

const idList = (ids: string[]) => sql`(select (jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb))::uuid)`;

async function escalationRows(ids: string[]) {
  return scenario.database.db.execute<{ id: string; status: string | null; attempt_count: number | null; parked: bigint; audits: bigint; actor: string | null }>(sql`
    select o.id::text, h.status, h.attempt_count,
           (select count(*) from cash_journal_entries j where j.obligation_id = o.id and j.entry_type = 'SUSPENSE_ESCALATED') as parked,
           (select count(*) from audit_log a where a.resource_id = o.id::text and a.action = 'dispersal.self_healing_escalated') as audits,
           (select max(a.actor) from audit_log a where a.resource_id = o.id::text and a.action = 'dispersal.self_healing_escalated') as actor
      from obligations o left join dispersal_healing_attempts h on h.obligation_id = o.id
     where o.id in ${idList(ids)} order by o.id`);
}

describe("fault: worker killed between the final failure and the escalation", () => {
  it("leaves the obligation unescalated; the scan's backstop escalates it exactly once, and only once however often it runs", async () => {
    const orphans = await scenario.seedOrphans({ fixable: 1000, unfixable: 6 });
    const unfixable = orphans.unfixable;

    // The blocker: an open transaction holding each escalation's idempotency key.
    const blocker = await scenario.database.sql.reserve();
    let blockerOpen = false;
    let kills = 0;
    try {
      await blocker`begin`;
      blockerOpen = true;
      const [{ pid: blockerPid }] = (await blocker`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
      // Accounts and row of its own, referencing no obligation or mortgage: a foreign key would take
      // a KEY SHARE lock that blocks the dispersal's FOR UPDATE instead of just the escalation.
      await blocker.unsafe(
        `with accounts as (
           insert into cash_accounts (family, subaccount)
           values ('TRUST_CASH', null), ('CONTROL', 'ACCRUAL')
           returning id, family)
         insert into cash_journal_entries (entry_type, effective_date, amount, debit_account_id, credit_account_id, idempotency_key, reason, actor)
         select 'SUSPENSE_ESCALATED', current_date, 1, d.id, c.id, 'suspense-escalation:' || ids.id, 'fault suite: holds the escalation open', 'fault-suite'
           from unnest($1::uuid[]) as ids(id)
           join accounts d on d.family = 'TRUST_CASH'
           join accounts c on c.family = 'CONTROL'`,
        [unfixable],
      );

      const workers: Child[] = [0, 1, 2].map((i) => scenario.spawnWorker(`worker-${i}`));
      const scan = await scanForOrphans(scenario.ctx, "fault-suite");
      expect(scan.found).toBeGreaterThan(0);

      // Every unfixable job used its 3 attempts and sits in the failed set, and the escalations are
      // blocked on the blocker's keys: the window between final failure and escalation, held open.
      // (Escalations are batched: several share one blocked transaction, so count the final
      // failures, and wait for escalation transactions blocked by the blocker.)
      await waitFor(
        async () => {
          const [row] = await scenario.database.db.execute<{ blocked: bigint }>(sql`
            select count(*) as blocked from pg_stat_activity
             where datname = ${scenario.databaseName} and application_name like 'dispersal%'
               and ${blockerPid}::int = any(pg_blocking_pids(pid))`);
          if (Number(row!.blocked) === 0) return false;
          const failedJobs = await scenario.ctx.queues.retrigger.getJobs(["failed"], 0, 1000);
          const final = failedJobs.filter((j) => unfixable.includes(j.data.obligationId) && j.attemptsMade === 3);
          return new Set(final.map((j) => j.data.obligationId)).size === unfixable.length;
        },
        { timeoutMs: 60_000, what: "every unfixable job failed for good, its escalation blocked", everyMs: 100 },
      );
      const failed = await scenario.ctx.queues.retrigger.getJobs(["failed"], 0, 1000);
      const finalFailures = failed.filter((j) => unfixable.includes(j.data.obligationId));
      note("final failures in the failed set, escalations blocked", { failed: failed.length, reason: finalFailures[0]?.failedReason });
      expect(finalFailures.map((j) => j.attemptsMade).sort()).toEqual(unfixable.map(() => 3));
      expect((await escalationRows(unfixable)).map((r) => ({ status: r.status, attempts: r.attempt_count }))).toEqual(
        unfixable.map(() => ({ status: "retrying", attempts: 3 })),
      );

      for (const worker of workers) {
        expect((await worker.kill("SIGKILL")).signal).toBe("SIGKILL");
        kills++;
      }
      note("workers killed with escalations in flight", { kills, progress: await scenario.progress() });
      // Their backends may still wait on the lock; end them so nothing of theirs can commit later.
      await scenario.database.db.execute(sql`
        select pg_terminate_backend(pid) from pg_stat_activity
         where datname = ${scenario.databaseName} and application_name like 'dispersal%'`);
      await waitFor(
        async () => {
          const [row] = await scenario.database.db.execute<{ n: bigint }>(sql`
            select count(*) as n from pg_stat_activity where datname = ${scenario.databaseName} and application_name like 'dispersal%'`);
          return row!.n === 0n;
        },
        { timeoutMs: 10_000, what: "the killed workers' backends to end" },
      );
    } finally {
      if (blockerOpen) await blocker`rollback`;
      blocker.release();
    }

    // The final failure happened, the escalation never committed.
    const gap = await escalationRows(unfixable);
    expect(gap.map((r) => ({ status: r.status, attempts: r.attempt_count, parked: r.parked, audits: r.audits }))).toEqual(
      unfixable.map(() => ({ status: "retrying", attempts: 3, parked: 0n, audits: 0n })),
    );

    const backstop = await scanForOrphans(scenario.ctx, "fault-suite");
    expect(backstop.escalatedByBackstop).toBe(unfixable.length);
    const once = await escalationRows(unfixable);
    expect(once.map((r) => ({ status: r.status, parked: r.parked, audits: r.audits, actor: r.actor }))).toEqual(
      unfixable.map(() => ({ status: "escalated", parked: 1n, audits: 1n, actor: "dispersal-healing-backstop" })),
    );

    const again = await scanForOrphans(scenario.ctx, "fault-suite");
    expect(again.escalatedByBackstop).toBe(0);
    expect((await escalationRows(unfixable)).map((r) => [r.parked, r.audits])).toEqual(unfixable.map(() => [1n, 1n]));

    // Workers back: the fixables the killed workers held are taken over and finished.
    for (const i of [0, 1, 2]) scenario.spawnWorker(`worker-${i}-respawn`);
    await scenario.settle();
    const end = await measureEndState(scenario.database, orphans);
    recordFaults(import.meta.url, "worker killed between final failure and escalation", { injected: kills, ...end });
    expectNothingLostOrDoubled(end, { dispersed: 1000, escalated: 6 });
    expect((await escalationRows(unfixable)).map((r) => [r.parked, r.audits])).toEqual(unfixable.map(() => [1n, 1n]));
  }, 180_000);
});
