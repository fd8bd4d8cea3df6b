// Prometheus metrics on their own registry (several apps may live in one process, e.g. in tests).
// Workers usually run in other processes, so job outcomes are read from BullMQ's Redis event
// streams (QueueEvents: every process's jobs), and states are read at scrape time from Redis
// (queue depths) and Postgres (healing rows, audit counts): no number depends on which process
// served the scrape.
import { QueueEvents } from "bullmq";
import { sql } from "drizzle-orm";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { z } from "zod";
import type { PipelineContext } from "../jobs/context.js";
import { isRefusal } from "../jobs/jobFailures.js";
import { schedulesPresent } from "../queues/schedulers.js";
import { withinDeadline } from "../deadline.js";
import { listenerStates } from "./health.js";
import { registerRiskMetrics } from "./riskMetrics.js";

export interface OperationsMetrics {
  registry: Registry;
  close(): Promise<void>;
}

const SCRAPE_DEADLINE_MS = 2000;
const CLOSE_DEADLINE_MS = 2000;
const JOB_STATES = ["wait", "active", "delayed", "prioritized", "waiting-children", "failed", "completed"] as const;
const HEALING_STATUSES = ["retrying", "escalated", "requeued", "resolved"] as const;
const AUDITED = {
  escalated: "dispersal.self_healing_escalated",
  requeued: "dispersal.self_healing_requeued",
  resolved: "dispersal.self_healing_resolved",
} as const;

/** What the scan job returns (jobs/scan.ts); read from the event stream, so checked like any input. */
const scanResult = z.object({ found: z.number(), durationMs: z.number(), escalatedByBackstop: z.number() });

export function createMetrics(ctx: PipelineContext): OperationsMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "dispersal_" });
  const registers = [registry];
  registerProcessInfo(registry, ctx.queues.prefix);
  const queueNames = ctx.queues.all.map((q) => q.name);

  const sourceUp = new Gauge({
    name: "dispersal_scrape_source_up",
    help: "1 when the source answered during the last scrape (redis: queue depths, postgres: healing counts)",
    labelNames: ["source"],
    registers,
  });

  const jobsCompleted = new Counter({ name: "dispersal_jobs_completed_total", help: "Jobs completed, by queue, in every worker process (seen since this server started)", labelNames: ["queue"], registers });
  const jobsFailed = new Counter({ name: "dispersal_jobs_failed_total", help: "Jobs failed for good (attempts used up or unrecoverable), by queue, in every worker process (seen since this server started)", labelNames: ["queue"], registers });
  const jobsUnrecoverable = new Counter({
    name: "dispersal_jobs_unrecoverable_total",
    help: "Jobs failed at once without retry or escalation (malformed job data, unknown or unsettled obligation), by queue and reason",
    labelNames: ["queue", "reason"],
    registers,
  });
  const scanDuration = new Histogram({
    name: "dispersal_healing_scan_duration_seconds",
    help: "Duration of healing scans run by the dispersal-healing queue",
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers,
  });
  const orphansFound = new Counter({ name: "dispersal_healing_orphans_found_total", help: "Orphaned obligations found by healing scans", registers });
  const backstopEscalations = new Counter({ name: "dispersal_healing_backstop_escalations_total", help: "Escalations made by the scan's backstop (the failed-event handler never committed)", registers });
  for (const queue of queueNames) {
    jobsCompleted.inc({ queue }, 0);
    jobsFailed.inc({ queue }, 0);
  }
  jobsUnrecoverable.inc({ queue: ctx.queues.retrigger.name, reason: "malformed_job_data" }, 0);
  // Jobs for an escalation nobody requeued (added or edited by hand, stale): refused, never dispersed.
  jobsUnrecoverable.inc({ queue: ctx.queues.retrigger.name, reason: "escalated_without_requeue" }, 0);

  const queueDepths = onePerScrape(() => readQueueDepths(ctx));
  new Gauge({
    name: "dispersal_queue_jobs",
    help: "Jobs in each queue by state, read at scrape time",
    labelNames: ["queue", "state"],
    registers,
    async collect() {
      const counts = await queueDepths();
      sourceUp.set({ source: "redis" }, counts ? 1 : 0);
      if (!counts) return;
      this.reset();
      for (const [queue, byState] of counts) {
        for (const state of JOB_STATES) this.set({ queue, state }, byState[state] ?? 0);
      }
    },
  });

  // With dispersal_retrigger_backlog (the backlog now): "is the cap reached" is backlog >= cap.
  new Gauge({
    name: "dispersal_retrigger_backlog_cap",
    help: "HEALING_MAX_BACKLOG: the retrigger jobs (waiting, delayed, prioritised, active) the scan fills the backlog up to",
    registers,
  }).set(ctx.settings.HEALING_MAX_BACKLOG);

  const healingStats = onePerScrape(() => readHealingStats(ctx));
  new Gauge({
    name: "dispersal_healing_obligations",
    help: "Obligations by healing status (dispersal_healing_attempts), read at scrape time",
    labelNames: ["status"],
    registers,
    async collect() {
      const stats = await healingStats();
      sourceUp.set({ source: "postgres" }, stats ? 1 : 0);
      if (!stats) return;
      for (const status of HEALING_STATUSES) this.set({ status }, stats.byStatus[status] ?? 0);
    },
  });
  new Gauge({
    name: "dispersal_escalations_open",
    help: "Escalated obligations waiting for an operator (their settled cash is in SUSPENSE)",
    registers,
    async collect() {
      const stats = await healingStats();
      if (stats) this.set(stats.byStatus.escalated ?? 0);
    },
  });
  const auditCounter = (name: string, help: string, action: string) =>
    new Counter({
      name,
      help,
      registers,
      async collect() {
        const stats = await healingStats();
        if (!stats) return;
        this.reset();
        this.inc(stats.byAction[action] ?? 0);
      },
    });
  auditCounter("dispersal_escalations_total", "Escalations to SUSPENSE ever made (audit_log)", AUDITED.escalated);
  auditCounter("dispersal_requeues_total", "Manual requeues of escalations ever made (audit_log)", AUDITED.requeued);
  auditCounter("dispersal_escalations_resolved_total", "Escalated obligations finally dispersed (audit_log)", AUDITED.resolved);

  // Schedules (queues/schedulers.ts keeps them present): 0 while one is missing, read from Redis at scrape time.
  new Gauge({
    name: "dispersal_schedule_present",
    help: "1 when the schedule exists in Redis, 0 while it is missing (every process puts it back within SCHEDULE_CHECK_EVERY_MS)",
    labelNames: ["scheduler"],
    registers,
    async collect() {
      if (ctx.queues.connection.status !== "ready") return;
      try {
        const present = await withinDeadline(schedulesPresent(ctx.queues), SCRAPE_DEADLINE_MS, "schedules");
        for (const [scheduler, isPresent] of Object.entries(present)) this.set({ scheduler }, isPresent ? 1 : 0);
      } catch (error) {
        ctx.log.warn({ error: (error as Error).message }, "metrics: schedules unavailable");
      }
    },
  });

  // The settlement listeners (the fast path): this process's and those reporting through Redis.
  new Gauge({
    name: "dispersal_settlement_listener_up",
    help: "1 while a process's settlement listener is LISTENing, 0 while it reconnects; one series per process that reported in the last 30 s",
    labelNames: ["process"],
    registers,
    async collect() {
      const upByProcess = new Map<string, boolean>();
      for (const l of await listenerStates(ctx)) upByProcess.set(l.process, (upByProcess.get(l.process) ?? true) && l.up);
      this.reset();
      for (const [process, up] of upByProcess) this.set({ process }, up ? 1 : 0);
    },
  });
  registerRiskMetrics(registry, ctx, queueDepths, { scrapeDeadlineMs: SCRAPE_DEADLINE_MS, onePerScrape });

  // Start at "now" rather than "$": events written between here and the first XREAD are kept.
  const lastEventId = `${Date.now()}-0`;
  const listeners = ctx.queues.all.map((queue) => {
    const events = new QueueEvents(queue.name, { connection: ctx.queues.connection, prefix: ctx.queues.prefix, lastEventId });
    events.on("error", (error: Error) => ctx.log.warn({ queue: queue.name, error: error.message }, "queue events listener error"));
    events.on("completed", ({ returnvalue }) => {
      jobsCompleted.inc({ queue: queue.name });
      if (queue !== ctx.queues.healing) return;
      const scan = scanResult.safeParse(returnvalue);
      if (!scan.success) return;
      scanDuration.observe(scan.data.durationMs / 1000);
      orphansFound.inc(scan.data.found);
      backstopEscalations.inc(scan.data.escalatedByBackstop);
    });
    events.on("failed", ({ failedReason }) => {
      jobsFailed.inc({ queue: queue.name });
      if (typeof failedReason === "string" && isRefusal(failedReason)) {
        jobsUnrecoverable.inc({ queue: queue.name, reason: unrecoverableReason(failedReason) });
      }
    });
    return events;
  });

  return {
    registry,
    close: async () => {
      await Promise.all(listeners.map((events) => closeListener(ctx, events)));
    },
  };
}

/**
 * One series per process, value 1, saying which deployment (queue prefix) it belongs to: the
 * Grafana dashboard's queue_prefix variable reads it and narrows its instance variable to them.
 */
export function registerProcessInfo(registry: Registry, queuePrefix: string): void {
  new Gauge({
    name: "dispersal_process_info",
    help: "1 for every dispersal-healing process; queue_prefix is its QUEUE_PREFIX",
    labelNames: ["queue_prefix"],
    registers: [registry],
  }).set({ queue_prefix: queuePrefix }, 1);
}

/**
 * A listener that never reached Redis waits forever for "ready" in close(): after a moment it is
 * closed by force, so a server shut down during a Redis outage still exits.
 */
async function closeListener(ctx: PipelineContext, events: QueueEvents): Promise<void> {
  try {
    await withinDeadline(events.close(), CLOSE_DEADLINE_MS, "closing queue events");
  } catch (error) {
    ctx.log.warn({ queue: events.name, error: (error as Error).message }, "queue events listener closed by force");
    await events.getBackend().close(true);
  }
}

/** "unrecoverable: OBLIGATION_NOT_FOUND: …" → obligation_not_found; the malformed-data message has no code. */
function unrecoverableReason(failedReason: string): string {
  const code = /^unrecoverable:\s*([A-Z][A-Z_]{2,40}):/.exec(failedReason)?.[1];
  if (code) return code.toLowerCase();
  return /malformed/i.test(failedReason) ? "malformed_job_data" : "other";
}

async function readQueueDepths(ctx: PipelineContext): Promise<Map<string, Record<string, number>> | undefined> {
  if (ctx.queues.connection.status !== "ready") return undefined;
  try {
    const counts = await withinDeadline(Promise.all(ctx.queues.all.map((q) => q.getJobCounts(...JOB_STATES))), SCRAPE_DEADLINE_MS, "queue depths");
    return new Map(ctx.queues.all.map((q, i) => [q.name, counts[i]!]));
  } catch (error) {
    ctx.log.warn({ error: (error as Error).message }, "metrics: queue depths unavailable");
    return undefined;
  }
}

interface HealingStats {
  byStatus: Record<string, number>;
  byAction: Record<string, number>;
}

async function readHealingStats(ctx: PipelineContext): Promise<HealingStats | undefined> {
  try {
    const rows = await withinDeadline(
      ctx.database.db.execute<{ kind: "status" | "action"; key: string; n: bigint }>(sql`
        select 'status' as kind, status as key, count(*) as n from dispersal_healing_attempts group by status
        union all
        select 'action', action, count(*) from audit_log
         where action in (${AUDITED.escalated}, ${AUDITED.requeued}, ${AUDITED.resolved}) group by action`),
      SCRAPE_DEADLINE_MS,
      "healing counts",
    );
    const stats: HealingStats = { byStatus: {}, byAction: {} };
    for (const row of rows) (row.kind === "status" ? stats.byStatus : stats.byAction)[row.key] = Number(row.n);
    return stats;
  } catch (error) {
    ctx.log.warn({ error: (error as Error).message }, "metrics: healing counts unavailable");
    return undefined;
  }
}

/** Several collectors read the same query: run it once per scrape, not once per metric. */
function onePerScrape<T>(read: () => Promise<T>): () => Promise<T> {
  let current: { at: number; value: Promise<T> } | undefined;
  return () => {
    if (!current || performance.now() - current.at > 1000) current = { at: performance.now(), value: read() };
    return current.value;
  };
}
