// helmet's hardening headers on every answer, and a Content-Security-Policy that the /ops page, an
// obligation's story and Bull Board all render under in Chromium without a single violation.
import { launchChromium } from "../helpers/browser.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync } from "node:fs";
import type { Browser, Page } from "playwright-core";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { scanAndWait } from "../../src/jobs/scanAndWait.js";
import { givenSettledObligation } from "../helpers/factories.js";
import { httpCall } from "../helpers/http.js";
import { testPipeline } from "../helpers/pipeline.js";
import { testDb } from "../helpers/testDb.js";

const ARTIFACTS = "test-artifacts";
const OPERATOR = { username: "olga", password: "olga-operator-secret" };
const database = await testDb();
const pipeline = testPipeline(database, { OPS_USERS: `${OPERATOR.username}:operator:${OPERATOR.password}` });
const { ctx, config } = pipeline;
let http: HttpServer;
let browser: Browser;
let escalatedId: string;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const workers = pipeline.startWorkers();
  escalatedId = (await givenSettledObligation(database, { lenders: [0], amount: 98_765n })).obligationId;
  expect(await scanAndWait(ctx, { timeoutMs: 20_000 })).toMatchObject({ escalated: 1 });
  await workers.close();
  http = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await http?.close();
});

/** Every CSP violation the page reports, by event and by console message. */
async function watchViolations(page: Page): Promise<() => Promise<string[]>> {
  const fromConsole: string[] = [];
  page.on("console", (message) => {
    if (/Content Security Policy/i.test(message.text())) fromConsole.push(message.text());
  });
  await page.addInitScript(() => {
    const seen: string[] = ((window as unknown as { __cspViolations: string[] }).__cspViolations = []);
    document.addEventListener("securitypolicyviolation", (e) => seen.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  return async () => [...fromConsole, ...(await page.evaluate(() => (window as unknown as { __cspViolations: string[] }).__cspViolations))];
}

describe("security headers", () => {
  it("come from helmet on every answer, with the pages' policy outside Bull Board", async () => {
    const auth = { name: OPERATOR.username, secret: OPERATOR.password };
    for (const path of ["/ops", `/ops/obligations/${escalatedId}`, "/api/escalations", "/healthz", "/admin/queues"]) {
      const answer = await httpCall(http.url, "GET", path, { as: auth });
      const h = (name: string) => answer.headers.get(name);
      expect({ path, status: answer.status }).toEqual({ path, status: 200 });
      expect({ path, nosniff: h("x-content-type-options"), frame: h("x-frame-options"), referrer: h("referrer-policy"), coop: h("cross-origin-opener-policy"), corp: h("cross-origin-resource-policy"), powered: h("x-powered-by") }).toEqual({
        path,
        nosniff: "nosniff",
        frame: "DENY",
        referrer: "same-origin",
        coop: "same-origin",
        corp: "same-origin",
        powered: null,
      });
      expect(h("strict-transport-security")).toMatch(/max-age=\d+/);
      const csp = h("content-security-policy") ?? "";
      expect(csp).toMatch(/frame-ancestors 'none'/);
      expect(csp).toMatch(/object-src 'none'/);
      expect(csp).not.toMatch(/script-src[^;]*'unsafe-inline'/);
      expect(csp).toMatch(path.startsWith("/admin/queues") ? /base-uri 'self'/ : /base-uri 'none'/);
    }
  });

  it("let /ops, the story and Bull Board render in Chromium without a CSP violation", async () => {
    const context = await browser.newContext({ httpCredentials: OPERATOR, viewport: { width: 1360, height: 900 } });
    const page = await context.newPage();
    const violations = await watchViolations(page);

    await page.goto(`${http.url}/ops`);
    await page.locator(`section[aria-labelledby="open"] tr[data-obligation="${escalatedId}"]`).first().waitFor();
    await page.screenshot({ path: `${ARTIFACTS}/csp-ops.png`, fullPage: true });
    expect(await violations()).toEqual([]);

    await page.goto(`${http.url}/ops/obligations/${escalatedId}`);
    await page.getByText(escalatedId).first().waitFor();
    await page.screenshot({ path: `${ARTIFACTS}/csp-story.png`, fullPage: true });
    expect(await violations()).toEqual([]);

    await page.goto(`${http.url}/admin/queues`);
    await page.locator("main").getByText(ctx.queues.retrigger.name).first().waitFor({ timeout: 15_000 });
    await page.locator("main").getByText(ctx.queues.retrigger.name).first().click();
    await page.waitForURL(/\/admin\/queues\/queue\//, { timeout: 15_000 });
    await page.waitForLoadState("networkidle");
    await page.screenshot({ path: `${ARTIFACTS}/csp-bull-board.png`, fullPage: true });
    expect(await violations()).toEqual([]);
    await context.close();
  });
});
