import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync } from "node:fs";
import { sql } from "drizzle-orm";
import { chromium, type Browser } from "playwright-core";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { scanAndWait } from "../../src/jobs/scanAndWait.js";
import { givenSettledObligation, type GivenObligationResult } from "../helpers/factories.js";
import { testPipeline } from "../helpers/pipeline.js";
import { waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";

const ARTIFACTS = "test-artifacts";
const VIEWER = { username: "fiona", password: "fiona-finance-secret" };
const OLGA = { username: "olga", password: "olga-operator-secret" };
const OSCAR = { username: "oscar", password: "oscar-operator-secret" };
const REASON = "lender positions loaded late by the servicing system";

const database = await testDb();
const pipeline = testPipeline(database, {
  OPS_USERS: [OLGA, OSCAR].map((u) => `${u.username}:operator:${u.password}`).concat(`${VIEWER.username}:viewer:${VIEWER.password}`).join(","),
  REQUEUE_APPROVALS: "2",
});
const { ctx, config } = pipeline;

let http: HttpServer;
let browser: Browser;
let escalation: GivenObligationResult;
let paid: GivenObligationResult;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  pipeline.startWorkers();
  escalation = await givenSettledObligation(database, { lenders: [0], amount: 667_695n });
  paid = await givenSettledObligation(database, { lenders: [6000, 4000], amount: 250_000n });
  await database.db.execute(sql`update lenders set name = 'Northwind Credit Union' where id = ${paid.lenderIds[0]!}::uuid`);
  expect(await scanAndWait(ctx, { timeoutMs: 20_000 })).toMatchObject({ found: 2, dispersed: 1, escalated: 1 });
  http = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
  // Four eyes: olga asks for a requeue with a reason; it waits for a second operator.
  const asked = await post(`/api/escalations/${escalation.obligationId}/requeue`, OLGA, { reason: REASON });
  expect(asked).toMatchObject({ status: 202, json: { status: "pending_approval" } });
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

async function post(path: string, as: { username: string; password: string }, body: unknown = {}) {
  const response = await fetch(`${http.url}${path}`, {
    method: "POST",
    headers: { authorization: `Basic ${Buffer.from(`${as.username}:${as.password}`).toString("base64")}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: await response.json() };
}

afterAll(async () => {
  await browser?.close();
  await http?.close();
});

describe("an obligation's story in a browser", () => {
  it("opens an escalation's story from /ops and shows its postings and timeline", async () => {
    const context = await browser.newContext({ httpCredentials: VIEWER, viewport: { width: 1360, height: 900 } });
    const page = await context.newPage();
    await page.goto(`${http.url}/ops`);

    await expect(page.locator('#money-at-risk [data-risk="suspense"] .value').textContent()).resolves.toBe("6,676.95");
    await expect(page.locator('#money-at-risk [data-risk="open"] .value').textContent()).resolves.toBe("1");
    await expect(page.locator('#money-at-risk [data-bucket="under-1d"]').textContent()).resolves.toBe("1");
    await page.screenshot({ path: `${ARTIFACTS}/ops-money-at-risk.png`, fullPage: true });

    const row = page.locator(`section[aria-labelledby="open"] tr[data-obligation="${escalation.obligationId}"]`);
    await Promise.all([page.waitForURL(`${http.url}/ops/obligations/${escalation.obligationId}`), row.locator("a.story-link").click()]);

    await expect(page.locator('[data-field="amount"]').textContent()).resolves.toBe("6,676.95");
    await expect(page.locator('[data-field="suspense"]').textContent()).resolves.toBe("6,676.95");
    await expect(page.locator('[data-field="job"]').innerText()).resolves.toMatch(/failed[\s\S]*3 of 3 attempts/);
    await expect(page.locator('tr[data-entry-type="SUSPENSE_ESCALATED"]').innerText()).resolves.toMatch(/SUSPENSE[\s\S]*BORROWER_RECEIVABLE/);

    const escalated = page.locator('#timeline li[data-action="dispersal.self_healing_escalated"]');
    await expect(escalated.innerText()).resolves.toMatch(/by dispersal-healing — .*no active positions/i);
    const requested = page.locator('#timeline li[data-action="dispersal.self_healing_requeue_requested"]');
    await expect(requested.innerText()).resolves.toMatch(new RegExp(`by olga — ${REASON}`));
    const actions = await page.locator("#timeline li").evaluateAll((items) => items.map((li) => li.getAttribute("data-action")));
    expect(actions.indexOf("obligation.settled")).toBeLessThan(actions.indexOf("dispersal.self_healing_escalated"));
    // Ids are selectable in one click (user-select: all), to copy them.
    await expect(page.locator("code.copy").first().evaluate((el) => getComputedStyle(el).userSelect)).resolves.toBe("all");
    await page.screenshot({ path: `${ARTIFACTS}/obligation-story.png`, fullPage: true });
    await context.close();
  });

  it("shows who asked, who approved and why, once a second operator's approval has resolved it", async () => {
    await database.db.execute(sql`update mortgage_positions set units = 10000 where mortgage_id = ${escalation.mortgageId}::uuid`);
    expect(await post(`/api/escalations/${escalation.obligationId}/requeue/approve`, OSCAR)).toMatchObject({ status: 202 });
    const context = await browser.newContext({ httpCredentials: VIEWER, viewport: { width: 1360, height: 900 } });
    const page = await context.newPage();
    await waitFor(
      async () => {
        await page.goto(`${http.url}/ops/obligations/${escalation.obligationId}`);
        return (await page.locator('#timeline li[data-action="dispersal.self_healing_resolved"]').count()) === 1;
      },
      { timeoutMs: 20_000, what: "the story to show the resolution", everyMs: 300 },
    );
    await expect(page.locator('#timeline li[data-action="dispersal.self_healing_requeue_requested"]').innerText()).resolves.toMatch(new RegExp(`by olga — ${REASON}`));
    await expect(page.locator('#timeline li[data-action="dispersal.self_healing_requeue_approved"]').innerText()).resolves.toMatch(new RegExp(`by oscar — ${REASON}`));
    await expect(page.locator('[data-field="suspense"]').textContent()).resolves.toBe("0.00");
    await expect(page.locator('[data-field="healing"]').innerText()).resolves.toMatch(/resolved/);
    await expect(page.locator('tr[data-entry-type="REVERSAL"]').count()).resolves.toBe(1);
    await page.screenshot({ path: `${ARTIFACTS}/obligation-story-resolved.png`, fullPage: true });
    await context.close();
  });

  it("finds an obligation by lender name from /ops and opens the story of who was paid", async () => {
    const context = await browser.newContext({ httpCredentials: VIEWER, viewport: { width: 1360, height: 900 } });
    const page = await context.newPage();
    await page.goto(`${http.url}/ops`);
    await page.fill('input[name="q"]', "northwind");
    await Promise.all([page.waitForURL(/\/ops\?q=northwind/), page.click('form.search button[type="submit"]')]);
    const result = page.locator(`#search-results tr[data-obligation="${paid.obligationId}"]`);
    await expect(result.innerText()).resolves.toMatch(/lender Northwind Credit Union/);
    await page.screenshot({ path: `${ARTIFACTS}/ops-search.png`, fullPage: true });
    await Promise.all([page.waitForURL(`${http.url}/ops/obligations/${paid.obligationId}`), result.locator("a.story-link").click()]);
    await expect(page.locator(`tr[data-lender="${paid.lenderIds[0]}"]`).innerText()).resolves.toMatch(/Northwind Credit Union[\s\S]*6000 \/ 10000[\s\S]*1,500\.00/);
    await context.close();
  });
});
