import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { registerWorkerMetrics } from "../../src/dashboard/workerMetrics.js";
import type { Workers } from "../../src/jobs/worker.js";
import { testPipeline } from "../helpers/pipeline.js";
import { testDb } from "../helpers/testDb.js";

const SCRAPER = { name: "prometheus", secret: "scrape-secret-0001" };
const DASHBOARD = JSON.parse(readFileSync("deploy/grafana/dispersal.json", "utf8"));
const ALERTS = readFileSync("deploy/prometheus/alerts.yml", "utf8");
const RUNBOOKS = readFileSync("docs/operations.md", "utf8");
/**
 * Metrics the alert rules use that other work exports. None left: every metric the rules name is
 * exported now; promtool's tests cover the rules with synthetic series. A name added here is
 * skipped until its metric is exported, then the test checks it too.
 */
const EXPECTED_FROM_OTHER_BRANCHES = new Set<string>([]);

const database = await testDb();
const pipeline = testPipeline(database, { OPS_USERS: `${SCRAPER.name}:viewer:${SCRAPER.secret}` });
let http: HttpServer;
let workers: Workers;
let exported: Set<string>;

function metricNames(expression: string): string[] {
  return [...expression.matchAll(/\bdispersal_[a-z0-9_]+\b/g)].map((m) => m[0]);
}

beforeAll(async () => {
  http = await startHttpServer(pipeline.ctx, { ...pipeline.config, PORT: 0, HOST: "127.0.0.1" });
  // As `start` does: its workers' figures, which a `worker` serves on METRICS_PORT, join /metrics.
  workers = pipeline.startWorkers();
  registerWorkerMetrics(http.metricsRegistry, workers);
  const response = await fetch(`${http.url}/metrics`, { headers: { authorization: `Basic ${Buffer.from(`${SCRAPER.name}:${SCRAPER.secret}`).toString("base64")}` } });
  expect(response.status).toBe(200);
  const text = await response.text();
  // Declared metrics (# TYPE: a labelled gauge may have no sample before its first collection) and
  // sample names as Prometheus stores them (histograms as _bucket/_sum/_count).
  exported = new Set(text.split("\n").flatMap((line) => /^(?:# TYPE )?([a-zA-Z_:][\w:]*)[{\s]/.exec(line)?.[1] ?? []));
});

afterAll(async () => {
  await http?.close();
  await workers?.close();
});

describe("deploy/grafana/dispersal.json", () => {
  it("is a dashboard Grafana can load: unique panel ids, a grid position each, a Prometheus datasource variable", () => {
    expect(DASHBOARD).toMatchObject({ uid: "dispersal-healing", title: expect.any(String), schemaVersion: expect.any(Number) });
    expect(DASHBOARD.templating.list[0]).toEqual(expect.objectContaining({ name: "datasource", type: "datasource", query: "prometheus" }));
    const ids = DASHBOARD.panels.map((p: any) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of DASHBOARD.panels) {
      expect(panel.gridPos).toEqual({ x: expect.any(Number), y: expect.any(Number), w: expect.any(Number), h: expect.any(Number) });
      if (panel.type === "row") continue;
      expect(panel.datasource).toEqual({ type: "prometheus", uid: "${datasource}" });
      expect(panel.targets.length).toBeGreaterThan(0);
    }
  });

  it("queries only metrics the service exports", () => {
    const queries = DASHBOARD.panels.flatMap((p: any) => (p.targets ?? []).map((t: any) => ({ panel: p.title, expr: t.expr as string })));
    expect(queries.length).toBeGreaterThan(10);
    for (const { panel, expr } of queries) {
      const names = metricNames(expr);
      expect(names.length, `${panel}: ${expr} names no dispersal_ metric`).toBeGreaterThan(0);
      for (const name of names) expect(exported.has(name), `${panel}: ${name} is not on /metrics`).toBe(true);
    }
  });

  it("has instance and queue_prefix variables, and every query keeps to the chosen instances", () => {
    const variables = new Map(DASHBOARD.templating.list.map((v: any) => [v.name, v]));
    const queuePrefix: any = variables.get("queue_prefix");
    const instance: any = variables.get("instance");
    expect(queuePrefix?.query.query).toBe("label_values(dispersal_process_info, queue_prefix)");
    // The instance list is the chosen deployment's processes: that is how queries use the prefix.
    expect(instance?.query.query).toBe('label_values(dispersal_process_info{queue_prefix="$queue_prefix"}, instance)');
    expect(instance).toMatchObject({ multi: true, includeAll: true });
    expect(instance.allValue).toBeUndefined(); // "All" = the prefix's instances, not every instance
    expect(exported.has("dispersal_process_info")).toBe(true);
    for (const panel of DASHBOARD.panels.filter((p: any) => p.type !== "row")) {
      for (const { expr } of panel.targets) {
        const selectors = [...(expr as string).matchAll(/\bdispersal_[a-z0-9_]+(\{[^}]*\})?/g)];
        for (const [selector, labels] of selectors) expect(labels, `${panel.title}: ${selector}`).toContain('instance=~"$instance"');
      }
    }
  });

  it("shows money in currency units, durations in seconds, rates in ops/s, counts as numbers", () => {
    for (const panel of DASHBOARD.panels.filter((p: any) => p.type !== "row")) {
      const unit = panel.fieldConfig?.defaults?.unit;
      const exprs: string[] = panel.targets.map((t: any) => t.expr);
      const names = exprs.flatMap(metricNames);
      expect(unit, `${panel.title} has no unit`).toEqual(expect.any(String));
      expect(unit, panel.title).not.toBe("none");
      if (names.some((n) => n.endsWith("_cents"))) {
        expect(unit, panel.title).toMatch(/^currency[A-Z]{3}$/);
        for (const expr of exprs) expect(expr, `${panel.title}: cents shown in currency units`).toMatch(/\/ 100$/);
      } else if (names.every((n) => /_seconds(_bucket)?$/.test(n))) {
        expect(unit, panel.title).toBe("s");
      } else if (exprs.every((e) => e.includes("rate(") && !e.includes(" / "))) {
        expect(unit, panel.title).toBe("ops");
      }
    }
  });

  it("shows the money-at-risk and orphan metrics", () => {
    const all = DASHBOARD.panels.flatMap((p: any) => (p.targets ?? []).flatMap((t: any) => metricNames(t.expr)));
    for (const name of ["dispersal_suspense_cents", "dispersal_shortfall_cents", "dispersal_shortfall_obligations", "dispersal_escalations_open", "dispersal_oldest_orphan_age_seconds", "dispersal_orphan_deadline_seconds", "dispersal_orphans", "dispersal_retrigger_backlog"]) {
      expect(all).toContain(name);
    }
  });
});

describe("deploy/prometheus/alerts.yml", () => {
  it("names only metrics the service exports (or that other branches are adding)", () => {
    const names = new Set(metricNames(ALERTS));
    expect(names.size).toBeGreaterThan(8);
    for (const name of names) {
      if (EXPECTED_FROM_OTHER_BRANCHES.has(name)) {
        expect(exported.has(name), `${name} is exported now: remove it from EXPECTED_FROM_OTHER_BRANCHES`).toBe(false);
        continue;
      }
      expect(exported.has(name), `${name} is not on /metrics`).toBe(true);
    }
  });
});

describe("runbooks (docs/operations.md)", () => {
  const alerts = ALERTS.split(/^\s*- alert: /m).slice(1).map((block) => ({
    name: /^(\w+)/.exec(block)![1]!,
    runbookUrl: /^\s*runbook_url:\s*"([^"]*)"/m.exec(block)?.[1],
  }));
  /** The anchor GitHub and most Markdown renderers give a heading: lower case, spaces to dashes. */
  const sections = new Map(
    RUNBOOKS.split(/^## /m).slice(1).map((section) => {
      const [heading, ...body] = section.split("\n");
      return [heading!.trim().toLowerCase().replace(/[^a-z0-9 -]/g, "").replace(/ /g, "-"), body.join("\n")];
    }),
  );

  it("every alert links to its own runbook, which says what it means, how to find the cause, fix it and verify", () => {
    expect(alerts.length).toBeGreaterThan(8);
    for (const { name, runbookUrl } of alerts) {
      expect(runbookUrl, `${name} has no runbook_url`).toBe(`docs/operations.md#${name.toLowerCase()}`);
      const section = sections.get(name.toLowerCase());
      expect(section, `docs/operations.md has no "## ${name}"`).toBeDefined();
      for (const part of ["**Means.**", "**Find the cause.**", "**Fix.**", "**Verify.**"]) {
        expect(section, `${name}'s runbook lacks ${part}`).toContain(part);
      }
    }
  });
});
