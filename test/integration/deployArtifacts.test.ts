import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
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
let exported: Set<string>;

function metricNames(expression: string): string[] {
  return [...expression.matchAll(/\bdispersal_[a-z0-9_]+\b/g)].map((m) => m[0]);
}

beforeAll(async () => {
  http = await startHttpServer(pipeline.ctx, { ...pipeline.config, PORT: 0, HOST: "127.0.0.1" });
  const response = await fetch(`${http.url}/metrics`, { headers: { authorization: `Basic ${Buffer.from(`${SCRAPER.name}:${SCRAPER.secret}`).toString("base64")}` } });
  expect(response.status).toBe(200);
  const text = await response.text();
  // Declared metrics (# TYPE: a labelled gauge may have no sample before its first collection) and
  // sample names as Prometheus stores them (histograms as _bucket/_sum/_count).
  exported = new Set(text.split("\n").flatMap((line) => /^(?:# TYPE )?([a-zA-Z_:][\w:]*)[{\s]/.exec(line)?.[1] ?? []));
});

afterAll(async () => {
  await http?.close();
});

describe("deploy/grafana/dispersal.json", () => {
  it("is a dashboard Grafana can load: unique panel ids, a grid position each, a Prometheus datasource variable", () => {
    expect(DASHBOARD).toMatchObject({ uid: "dispersal-healing", title: expect.any(String), schemaVersion: expect.any(Number) });
    expect(DASHBOARD.templating.list).toEqual([expect.objectContaining({ name: "datasource", type: "datasource", query: "prometheus" })]);
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

  it("shows the money-at-risk and orphan metrics", () => {
    const all = DASHBOARD.panels.flatMap((p: any) => (p.targets ?? []).flatMap((t: any) => metricNames(t.expr)));
    for (const name of ["dispersal_suspense_cents", "dispersal_escalations_open", "dispersal_oldest_orphan_age_seconds", "dispersal_orphan_deadline_seconds", "dispersal_orphans", "dispersal_retrigger_backlog"]) {
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
