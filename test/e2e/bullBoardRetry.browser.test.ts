// Bull Board's Retry of a failed retrigger job in Chromium: it opens its confirmation (the story
// page's requeue form: the obligation, its amount, a required reason) and only that form requeues.
import { launchChromium } from "../helpers/browser.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync } from "node:fs";
import { sql } from "drizzle-orm";
import type { Browser } from "playwright-core";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { scanAndWait } from "../../src/jobs/scanAndWait.js";
import { givenSettledObligation, type GivenObligationResult } from "../helpers/factories.js";
import { httpCall } from "../helpers/http.js";
import { testPipeline } from "../helpers/pipeline.js";
import { testDb } from "../helpers/testDb.js";

const ARTIFACTS = "test-artifacts";
const OLGA = { username: "olga", password: "olga-operator-secret" };
const REASON = "the servicing system loaded the positions now";

const database = await testDb();
const pipeline = testPipeline(database, { OPS_USERS: `${OLGA.username}:operator:${OLGA.password}` });
const { ctx, config } = pipeline;

let http: HttpServer;
let browser: Browser;
let escalation: GivenObligationResult;

async function healing(obligationId: string) {
  const [row] = await database.db.execute<{ status: string; requeue_count: number }>(sql`
    select status, requeue_count from dispersal_healing_attempts where obligation_id = ${obligationId}::uuid`);
  return row;
}

async function requeueAudits(obligationId: string) {
  return database.db.execute<{ actor: string; metadata: Record<string, unknown> }>(sql`
    select actor, metadata from audit_log where resource_id = ${obligationId} and action = 'dispersal.self_healing_requeued' order by created_at`);
}

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  pipeline.startWorkers();
  escalation = await givenSettledObligation(database, { lenders: [0], amount: 431_207n });
  expect(await scanAndWait(ctx, { timeoutMs: 20_000 })).toMatchObject({ found: 1, escalated: 1 });
  http = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await http?.close();
});

describe("Bull Board's retry of a retrigger job", () => {
  it("refuses a PUT without a reason, naming the confirmation, and changes nothing", async () => {
    const [failed] = await ctx.queues.retrigger.getJobs(["failed"]);
    const as = { name: OLGA.username, secret: OLGA.password };
    const answer = await httpCall(http.url, "PUT", `/admin/queues/api/queues/${ctx.queues.retrigger.name}/${encodeURIComponent(failed!.id!)}/retry`, { as });
    expect(answer.status).toBe(400);
    expect(answer.json).toMatchObject({ error: expect.stringMatching(/needs a reason/), confirmUrl: `/admin/queues/retry/${ctx.queues.retrigger.name}/${encodeURIComponent(failed!.id!)}` });
    expect(await healing(escalation.obligationId)).toMatchObject({ status: "escalated", requeue_count: 0 });
    expect(await failed!.getState()).toBe("failed");
  });

  it("opens the confirmation from the Retry button: the obligation, its amount, a reason; the form requeues", async () => {
    const [failed] = await ctx.queues.retrigger.getJobs(["failed"]);
    const context = await browser.newContext({ httpCredentials: OLGA, viewport: { width: 1360, height: 900 } });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.message));
    page.on("console", (message) => (message.type() === "error" ? errors.push(message.text()) : undefined));
    await page.goto(`${http.url}/admin/queues/queue/${ctx.queues.retrigger.name}?status=failed`);
    // The job card's Retry: the refresh icon among the card's tooltip buttons.
    const retry = page.locator("[data-base-ui-tooltip-trigger] button:has(svg.lucide-refresh-cw)").first();
    await retry.waitFor({ timeout: 15_000 });
    await page.screenshot({ path: `${ARTIFACTS}/bull-board-failed-retrigger.png`, fullPage: true });
    await retry.click();
    // Bull Board's own "are you sure" comes first (on by default in its settings); then our confirmation.
    await Promise.all([
      page.waitForURL(`${http.url}/ops/obligations/${escalation.obligationId}?retry=${encodeURIComponent(failed!.id!)}#requeue`, { timeout: 15_000 }),
      page.getByRole("button", { name: "Confirm" }).click(),
    ]);
    expect(await healing(escalation.obligationId)).toMatchObject({ status: "escalated", requeue_count: 0 });
    await expect(page.locator('[data-field="bull-board-retry"]').innerText()).resolves.toMatch(new RegExp(`Retry of job ${failed!.id}[\\s\\S]*give the reason`));
    await expect(page.locator("#obligation-id").textContent()).resolves.toBe(escalation.obligationId);
    await expect(page.locator('#requeue-form [data-field="requeue-amount"]').textContent()).resolves.toBe("$4,312.07");
    await page.locator('#requeue-form input[name="reason"]').fill(REASON);
    await page.locator("#requeue").screenshot({ path: `${ARTIFACTS}/bull-board-retry-confirmation.png` });
    await Promise.all([page.waitForURL(`${http.url}/ops`), page.locator('#requeue-form button[name="only"]').click()]);
    await expect(page.locator(".flash").innerText()).resolves.toMatch(/Requeued 1 escalation/);
    expect((await healing(escalation.obligationId))!.requeue_count).toBe(1);
    expect(await requeueAudits(escalation.obligationId)).toMatchObject([{ actor: "olga", metadata: { reason: REASON, channel: "ops-page" } }]);
    expect(errors.filter((e) => /Content Security Policy/i.test(e))).toEqual([]);
    await context.close();
  });
});
