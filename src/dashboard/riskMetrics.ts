// The money-at-risk gauges of /metrics, read at scrape time from Postgres (db/moneyAtRisk.ts) and
// from the queue depths the scrape already read: what the alerts in deploy/prometheus/alerts.yml
// and the Grafana dashboard are built on. Names are used there: change them together.
import { Gauge, type Registry } from "prom-client";
import { ORPHAN_STATES, readLatestReconciliationDefects, readMoneyAtRisk, readOrphanSummary } from "../db/moneyAtRisk.js";
import { orphanDeadlineMs } from "../domain/orphanDeadline.js";
import type { PipelineContext } from "../jobs/context.js";
import { withinDeadline } from "../deadline.js";

/** The retrigger states that hold work still to do (the backlog the cap bounds). */
export const BACKLOG_STATES = ["wait", "delayed", "prioritized", "active"] as const;

export type QueueDepths = Map<string, Record<string, number>>;

export function registerRiskMetrics(
  registry: Registry,
  ctx: PipelineContext,
  queueDepths: () => Promise<QueueDepths | undefined>,
  options: { scrapeDeadlineMs: number; onePerScrape: <T>(read: () => Promise<T>) => () => Promise<T> },
): void {
  const registers = [registry];
  const guarded = <T>(what: string, read: () => Promise<T>) =>
    options.onePerScrape(async (): Promise<T | undefined> => {
      try {
        return await withinDeadline(read(), options.scrapeDeadlineMs, what);
      } catch (error) {
        ctx.log.warn({ error: (error as Error).message }, `metrics: ${what} unavailable`);
        return undefined;
      }
    });
  const risk = guarded("money at risk", () => readMoneyAtRisk(ctx.database.db));
  const orphans = guarded("orphan summary", () => readOrphanSummary(ctx.database.db));
  // null: no run has finished yet (undefined means Postgres did not answer).
  const reconciliation = guarded("latest reconciliation", async () => (await readLatestReconciliationDefects(ctx.database.db)) ?? null);

  new Gauge({
    name: "dispersal_suspense_cents",
    help: "Total balance of every SUSPENSE account in cents (settled cash parked by escalations), read at scrape time",
    registers,
    async collect() {
      const value = await risk();
      if (value) this.set(Number(value.suspenseCents));
    },
  });
  new Gauge({
    name: "dispersal_shortfall_cents",
    help: "Cents paid out to lenders (entries marked paid) beyond their obligation's net settled cash after a payment was returned, summed over every obligation, read at scrape time",
    registers,
    async collect() {
      const value = await risk();
      if (value) this.set(Number(value.shortfallCents));
    },
  });
  new Gauge({
    name: "dispersal_shortfall_obligations",
    help: "Obligations whose paid entries exceed their net settled cash (a shortfall), read at scrape time",
    registers,
    async collect() {
      const value = await risk();
      if (value) this.set(value.shortfallObligations);
    },
  });
  new Gauge({
    name: "dispersal_escalation_oldest_age_seconds",
    help: "Age of the oldest open escalation (from escalated_at); 0 when none is open",
    registers,
    async collect() {
      const value = await risk();
      if (value) this.set(value.oldestAgeSeconds);
    },
  });
  new Gauge({
    name: "dispersal_oldest_orphan_age_seconds",
    help: "Age (from settled_at) of the oldest settled obligation neither dispersed nor escalated; 0 when none",
    registers,
    async collect() {
      const value = await orphans();
      if (value) this.set(value.oldestAgeSeconds);
    },
  });
  new Gauge({
    name: "dispersal_orphans",
    help: "Settled obligations not dispersed, by healing state: new (no attempt yet), retrying, requeued, escalated",
    labelNames: ["state"],
    registers,
    async collect() {
      const value = await orphans();
      if (!value) return;
      for (const state of ORPHAN_STATES) this.set({ state }, value.byState[state]);
    },
  });
  const deadlineSeconds = orphanDeadlineMs({
    scanEveryMs: ctx.settings.HEALING_SCAN_EVERY_MS,
    backoffMs: ctx.settings.HEALING_BACKOFF_MS,
    attempts: ctx.settings.HEALING_ATTEMPTS,
  }) / 1000;
  new Gauge({
    name: "dispersal_orphan_deadline_seconds",
    help: "Age past which an orphan is stuck: scan interval + the round's backoff + margin (this process's settings)",
    registers,
    collect() {
      this.set(deadlineSeconds);
    },
  });
  new Gauge({
    name: "dispersal_retrigger_backlog",
    help: "Retrigger jobs in Redis still to run: waiting + delayed + prioritized + active",
    registers,
    async collect() {
      const depths = await queueDepths();
      const retrigger = depths?.get(ctx.queues.retrigger.name);
      if (retrigger) this.set(BACKLOG_STATES.reduce((sum, state) => sum + (retrigger[state] ?? 0), 0));
    },
  });
  new Gauge({
    name: "dispersal_reconciliation_defects",
    help: "Defects found by the latest finished reconciliation run (0 before the first run)",
    registers,
    async collect() {
      const latest = await reconciliation();
      if (latest !== undefined) this.set(latest?.defectCount ?? 0);
    },
  });
  new Gauge({
    name: "dispersal_reconciliation_failed",
    help: "1 when the latest reconciliation run failed (its checks did not all run), else 0",
    registers,
    async collect() {
      const latest = await reconciliation();
      if (latest !== undefined) this.set(latest?.status === "failed" ? 1 : 0);
    },
  });
}
