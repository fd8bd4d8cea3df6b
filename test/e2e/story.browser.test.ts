import { launchChromium } from "../helpers/browser.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync } from "node:fs";
import { sql } from "drizzle-orm";
import type { Browser } from "playwright-core";
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
const SERVICE = { username: "sam", password: "sam-service-secret" };
const REASON = "lender positions loaded late by the servicing system";
const SECOND_REASON = "positions of the second mortgage are fixed now";

const database = await testDb();
const pipeline = testPipeline(database, {
  OPS_USERS: [OLGA, OSCAR]
    .map((u) => `${u.username}:operator:${u.password}`)
    .concat(`${VIEWER.username}:viewer:${VIEWER.password}`, `${SERVICE.username}:service:${SERVICE.password}`)
    .join(","),
  REQUEUE_APPROVALS: "2",
});
const { ctx, config } = pipeline;

let http: HttpServer;
let browser: Browser;
let escalation: GivenObligationResult;
let paid: GivenObligationResult;
let second: GivenObligationResult;
let returned: GivenObligationResult;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  pipeline.startWorkers();
  escalation = await givenSettledObligation(database, { lenders: [0], amount: 667_695n });
  paid = await givenSettledObligation(database, { lenders: [6000, 4000], amount: 250_000n });
  second = await givenSettledObligation(database, { lenders: [0, 0], amount: 12_345n });
  await database.db.execute(sql`update lenders set name = 'Northwind Credit Union' where id = ${paid.lenderIds[0]!}::uuid`);
  expect(await scanAndWait(ctx, { timeoutMs: 20_000 })).toMatchObject({ found: 3, dispersed: 1, escalated: 2 });
  http = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
  // Four eyes: olga asks for a requeue with a reason; it waits for a second operator.
  const asked = await post(`/api/escalations/${escalation.obligationId}/requeue`, OLGA, { reason: REASON });
  expect(asked).toMatchObject({ status: 202, json: { status: "pending_approval" } });
  browser = await launchChromium();
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

    await expect(page.locator('#money-at-risk [data-risk="suspense"] .value').textContent()).resolves.toBe("$6,800.40");
    await expect(page.locator('#money-at-risk [data-risk="open"] .value').textContent()).resolves.toBe("2");
    await expect(page.locator('#money-at-risk [data-bucket="under-1d"]').textContent()).resolves.toBe("2");
    // The shortfall is its own category (nothing paid out of returned cash here).
    await expect(page.locator('#money-at-risk [data-risk="shortfall"] .value').textContent()).resolves.toBe("$0.00");
    await expect(page.locator('#money-at-risk [data-risk="shortfall-obligations"] .value').textContent()).resolves.toBe("0");
    // Whole ids: two rows never show the same 8-character prefix.
    const shown = await page.locator('section[aria-labelledby="open"] a.story-link').allTextContents();
    expect(shown.sort()).toEqual([escalation.obligationId, second.obligationId].sort());
    await page.screenshot({ path: `${ARTIFACTS}/ops-money-at-risk.png`, fullPage: true });

    const row = page.locator(`section[aria-labelledby="open"] tr[data-obligation="${escalation.obligationId}"]`);
    await Promise.all([page.waitForURL(`${http.url}/ops/obligations/${escalation.obligationId}`), row.locator("a.story-link").click()]);

    await expect(page.locator('[data-field="amount"]').textContent()).resolves.toBe("$6,676.95");
    await expect(page.locator('[data-field="suspense"]').textContent()).resolves.toBe("$6,676.95");
    await expect(page.locator('[data-field="net-cash"]').textContent()).resolves.toBe("$6,676.95");
    await expect(page.locator('[data-field="allocated"]').textContent()).resolves.toBe("$0.00");
    await expect(page.locator("#obligation-id").textContent()).resolves.toBe(escalation.obligationId);
    // The cause beside the symptom: the one position has no units.
    await expect(page.locator(`tr[data-position="${escalation.lenderIds[0]}"]`).innerText()).resolves.toMatch(/Lender 1[\s\S]*\t0\t/);
    await expect(page.locator('section[aria-labelledby="positions"] .flash.error').innerText()).resolves.toMatch(/no active positions/);
    await expect(page.locator('tr[data-cash="received"]').innerText()).resolves.toMatch(/received[\s\S]*\$6,676\.95/);
    await expect(page.locator('#rounds ~ section tr[data-round="1"] [data-field="outcome"]').innerText()).resolves.toMatch(/^escalated/);
    // Four eyes, read-only: olga's pending request and reason, no buttons for a viewer.
    await expect(page.locator('#requeue [data-requeue="pending"]').getAttribute("data-requested-by")).resolves.toBe("olga");
    await expect(page.locator('#requeue [data-field="pending-reason"]').textContent()).resolves.toBe(REASON);
    await expect(page.locator("#requeue button").count()).resolves.toBe(0);
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
    // The one who asked cannot approve: the page says so, and offers only to withdraw.
    const asker = await browser.newContext({ httpCredentials: OLGA, viewport: { width: 1360, height: 900 } });
    const olgaPage = await asker.newPage();
    await olgaPage.goto(`${http.url}/ops/obligations/${escalation.obligationId}#requeue`);
    await expect(olgaPage.locator("#requeue").innerText()).resolves.toMatch(/Your request: another operator approves it/);
    await expect(olgaPage.locator('#requeue form[action="/ops/requeue/approve"]').count()).resolves.toBe(0);
    await asker.close();
    // A second operator approves it from the story page.
    const approver = await browser.newContext({ httpCredentials: OSCAR, viewport: { width: 1360, height: 900 } });
    const oscarPage = await approver.newPage();
    await oscarPage.goto(`${http.url}/ops/obligations/${escalation.obligationId}`);
    await expect(oscarPage.locator('#requeue form[action="/ops/requeue/approve"] button').innerText()).resolves.toBe("Approve the requeue of $6,676.95");
    await oscarPage.locator("#requeue").screenshot({ path: `${ARTIFACTS}/obligation-story-approve.png` });
    await Promise.all([oscarPage.waitForURL(`${http.url}/ops`), oscarPage.click('#requeue form[action="/ops/requeue/approve"] button')]);
    await expect(oscarPage.locator(".flash").innerText()).resolves.toMatch(/Approved olga's requeue/);
    await approver.close();
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
    await expect(page.locator('[data-field="suspense"]').textContent()).resolves.toBe("$0.00");
    await expect(page.locator('[data-field="healing"]').innerText()).resolves.toMatch(/resolved/);
    await expect(page.locator('tr[data-round="1"] [data-field="outcome"]').innerText()).resolves.toMatch(/^escalated/);
    await expect(page.locator('tr[data-round="2"]').innerText()).resolves.toMatch(new RegExp(`olga[\\s\\S]*${REASON}[\\s\\S]*oscar[\\s\\S]*resolved`));
    await expect(page.locator('#requeue [data-requeue="not-escalated"]').innerText()).resolves.toMatch(/Healing is resolved/);
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
    await expect(page.locator(`tr[data-lender="${paid.lenderIds[0]}"]`).innerText()).resolves.toMatch(/Northwind Credit Union[\s\S]*6000 \/ 10000[\s\S]*\$1,500\.00[\s\S]*pending/);
    await expect(page.locator(`tr[data-position="${paid.lenderIds[0]}"]`).innerText()).resolves.toMatch(/Northwind Credit Union[\s\S]*6000[\s\S]*60\.00%/);
    await expect(page.locator('[data-field="total-units"]').textContent()).resolves.toBe("10000");
    await context.close();
  });

  it("requeues an escalation from its story page's form: the reason, the amount, then the pending request", async () => {
    await database.db.execute(sql`update mortgage_positions set units = 5000 where mortgage_id = ${second.mortgageId}::uuid`);
    const context = await browser.newContext({ httpCredentials: OLGA, viewport: { width: 1360, height: 900 } });
    const page = await context.newPage();
    await page.goto(`${http.url}/ops/obligations/${second.obligationId}`);
    const form = page.locator("#requeue-form");
    await expect(form.locator('[data-field="requeue-amount"]').textContent()).resolves.toBe("$123.45");
    await expect(page.locator('#requeue [data-field="four-eyes"]').innerText()).resolves.toMatch(/second operator approves/);
    await expect(form.locator('input[name="reason"]').getAttribute("required")).resolves.toBe("");
    await form.locator('input[name="reason"]').fill(SECOND_REASON);
    await page.locator("#requeue").screenshot({ path: `${ARTIFACTS}/obligation-story-requeue-form.png` });
    await Promise.all([page.waitForURL(`${http.url}/ops`), form.locator('button[name="only"]').click()]);
    await expect(page.locator(".flash").innerText()).resolves.toMatch(/Requested 1 requeue: waiting for another operator's approval/);
    await page.goto(`${http.url}/ops/obligations/${second.obligationId}`);
    await expect(page.locator('#requeue [data-requeue="pending"]').getAttribute("data-requested-by")).resolves.toBe("olga");
    await expect(page.locator('#requeue [data-field="pending-reason"]').textContent()).resolves.toBe(SECOND_REASON);
    await expect(page.locator('#timeline li[data-action="dispersal.self_healing_requeue_requested"]').innerText()).resolves.toMatch(new RegExp(`by olga — ${SECOND_REASON}`));
    await context.close();
  });

  it("shows cash received and returned and the allocations they caused, by number and status", async () => {
    returned = await givenSettledObligation(database, { status: "due", cashReceived: [], lenders: [7000, 3000], amount: 100_000n });
    const pay = (reference: string, amount: string) => post(`/api/obligations/${returned.obligationId}/payments`, SERVICE, { reference, amount });
    const dispersedAllocations = async (n: number) => {
      const [row] = await database.db.execute<{ n: number }>(sql`
        select coalesce(max(allocation), 0)::int as n from dispersal_entries e join obligations o on o.id = e.obligation_id
         where o.id = ${returned.obligationId}::uuid and o.dispersed`);
      return row!.n === n;
    };
    expect(await pay("PAY-A", "60000")).toMatchObject({ status: 201 });
    expect(await pay("PAY-B", "40000")).toMatchObject({ status: 201 });
    await waitFor(async () => (await scanAndWait(ctx, { timeoutMs: 20_000 }), dispersedAllocations(1)), { timeoutMs: 20_000, what: "allocation 1" });
    expect(await post(`/api/obligations/${returned.obligationId}/payments/PAY-B/return`, SERVICE, { reason: "cheque bounced at the borrower's bank" })).toMatchObject({ status: 201 });
    expect(await pay("PAY-C", "40000")).toMatchObject({ status: 201 });
    await waitFor(async () => (await scanAndWait(ctx, { timeoutMs: 20_000 }), dispersedAllocations(2)), { timeoutMs: 20_000, what: "allocation 2" });

    const context = await browser.newContext({ httpCredentials: VIEWER, viewport: { width: 1360, height: 900 } });
    const page = await context.newPage();
    await page.goto(`${http.url}/ops/obligations/${returned.obligationId}`);
    const cash = await page.locator("tr[data-cash]").evaluateAll((rows) => rows.map((r) => (r as HTMLElement).innerText.split("\t").slice(0, 3).join(" ")));
    expect(cash).toEqual(["received PAY-A $600.00", "received PAY-B $400.00", "returned PAY-B −$400.00", "received PAY-C $400.00"]);
    await expect(page.locator('[data-field="net-received"]').textContent()).resolves.toBe("$1,000.00");
    const entries = await page.locator("tbody[data-allocation] tr[data-lender]").evaluateAll((rows) =>
      rows.map((r) => [r.closest("tbody")!.getAttribute("data-allocation"), r.getAttribute("data-lender"), r.getAttribute("data-status")]),
    );
    const [big, small] = returned.lenderIds;
    expect(entries).toEqual([
      ["1", big, "reversed"],
      ["1", small, "reversed"],
      ["2", big, "pending"],
      ["2", small, "pending"],
    ]);
    await expect(page.locator(`tbody[data-allocation="2"] tr[data-lender="${big}"]`).innerText()).resolves.toMatch(/\$700\.00/);
    await expect(page.locator('[data-field="dispersal-total"]').textContent()).resolves.toBe("$1,000.00");
    await expect(page.locator('[data-field="allocated"]').textContent()).resolves.toBe("$1,000.00");
    await page.screenshot({ path: `${ARTIFACTS}/obligation-story-allocations.png`, fullPage: true });
    await context.close();
  });

  it("formats every amount in CURRENCY, on the pages and in the CSV", async () => {
    const inEuros = await startHttpServer({ ...ctx, settings: { ...ctx.settings, CURRENCY: "EUR" } }, { ...config, CURRENCY: "EUR", PORT: 0, HOST: "127.0.0.1" });
    try {
      const context = await browser.newContext({ httpCredentials: VIEWER, viewport: { width: 1360, height: 900 } });
      const page = await context.newPage();
      await page.goto(`${inEuros.url}/ops`);
      await expect(page.locator('#money-at-risk [data-risk="suspense"] .value').textContent()).resolves.toBe("€123.45");
      await page.goto(`${inEuros.url}/ops/obligations/${second.obligationId}`);
      await expect(page.locator('[data-field="amount"]').textContent()).resolves.toBe("€123.45");
      await expect(page.locator('tr[data-cash="received"] td.num').textContent()).resolves.toBe("€123.45");
      await page.screenshot({ path: `${ARTIFACTS}/obligation-story-eur.png`, fullPage: true });
      await context.close();
      const csv = await fetch(`${inEuros.url}/api/escalations.csv`, { headers: { authorization: `Basic ${Buffer.from(`${VIEWER.username}:${VIEWER.password}`).toString("base64")}` } });
      expect(await csv.text()).toContain(`${second.obligationId},M-${second.mortgageId},regular_interest,12345,€123.45,12345,€123.45,`);
      // The JSON API keeps raw cents.
      const json = await fetch(`${inEuros.url}/api/obligations/${second.obligationId}`, { headers: { authorization: `Basic ${Buffer.from(`${VIEWER.username}:${VIEWER.password}`).toString("base64")}` } });
      expect(await json.json()).toMatchObject({ obligation: { amount: "12345" }, suspenseBalance: "12345" });
    } finally {
      await inEuros.close();
    }
  });
});
