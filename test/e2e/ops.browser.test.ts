import { launchChromium } from "../helpers/browser.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync } from "node:fs";
import { sql } from "drizzle-orm";
import type { Browser } from "playwright-core";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { runReconciliation } from "../../src/db/reconciliation.js";
import { scanAndWait } from "../../src/jobs/scanAndWait.js";
import { givenSettledObligation, type GivenObligationResult } from "../helpers/factories.js";
import { testPipeline } from "../helpers/pipeline.js";
import { waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";

const ARTIFACTS = "test-artifacts";
const OPERATOR = { username: "olga", password: "olga-operator-secret" };
const SECOND_OPERATOR = { username: "oscar", password: "oscar-operator-secret" };

const database = await testDb();
const pipeline = testPipeline(database, {
  OPS_USERS: `${OPERATOR.username}:operator:${OPERATOR.password},${SECOND_OPERATOR.username}:operator:${SECOND_OPERATOR.password},victor:viewer:victor-viewer-secret`,
});
const { ctx, config } = pipeline;

let http: HttpServer;
let browser: Browser;
let escalation: GivenObligationResult;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  pipeline.startWorkers();
  escalation = await givenSettledObligation(database, { lenders: [0], amount: 1_234_567n });
  await givenSettledObligation(database, { lenders: [6000, 4000], amount: 50_000n });
  const summary = await scanAndWait(ctx, { timeoutMs: 20_000 });
  expect(summary).toMatchObject({ found: 2, dispersed: 1, escalated: 1 });
  await runReconciliation(database.db, { scanIntervalMs: config.HEALING_SCAN_EVERY_MS });
  http = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await http?.close();
});

describe("the ops page in a browser", () => {
  it("shows an escalation, requeues it after the fix, shows it resolved, and links into Bull Board", async () => {
    const context = await browser.newContext({ httpCredentials: OPERATOR, viewport: { width: 1360, height: 900 } });
    const page = await context.newPage();

    await page.goto(`${http.url}/ops`);
    const row = page.locator(`section[aria-labelledby="open"] tr[data-obligation="${escalation.obligationId}"]`);
    await row.waitFor();
    await expect(row.textContent()).resolves.toContain("12,345.67");
    await expect(row.textContent()).resolves.toContain(`M-${escalation.mortgageId.slice(0, 8)}`);
    await expect(row.textContent()).resolves.toMatch(/no active positions/);
    await expect(page.locator("#open .count").textContent()).resolves.toBe("1");
    await expect(page.locator('section[aria-labelledby="reconciliation"]').textContent()).resolves.toMatch(/Escalations whose SUSPENSE/);
    await page.screenshot({ path: `${ARTIFACTS}/ops-escalated.png`, fullPage: true });

    // The cause fixed the way an operator would: a lender now holds the units.
    await database.db.execute(sql`update mortgage_positions set units = 10000 where mortgage_id = ${escalation.mortgageId}::uuid`);
    await page.fill('input[name="reason"]', "lender positions restored");
    await Promise.all([page.waitForURL(`${http.url}/ops`), row.locator('button[name="only"]').click()]);
    await expect(page.locator(".flash").textContent()).resolves.toMatch(/Requeued 1 escalation/);
    await page.screenshot({ path: `${ARTIFACTS}/ops-requeued.png`, fullPage: true });

    const resolvedRow = page.locator(`section[aria-labelledby="resolved"] tr[data-obligation="${escalation.obligationId}"]`);
    await waitFor(
      async () => {
        await page.reload();
        return (await resolvedRow.count()) === 1;
      },
      { timeoutMs: 15_000, what: "the escalation to show as resolved", everyMs: 300 },
    );
    await expect(page.locator("#open .count").textContent()).resolves.toBe("0");
    await expect(page.locator(".flash").count()).resolves.toBe(0); // the flash is shown once
    await page.screenshot({ path: `${ARTIFACTS}/ops-resolved.png`, fullPage: true });
    const [healing] = await database.db.execute<{ status: string }>(sql`
      select status from dispersal_healing_attempts where obligation_id = ${escalation.obligationId}::uuid`);
    expect(healing?.status).toBe("resolved");

    await page.click('a:text("Bull Board")');
    const retriggerCard = page.locator("main").getByText(ctx.queues.retrigger.name);
    await retriggerCard.first().waitFor({ timeout: 15_000 });
    await expect(page.locator("main").innerText()).resolves.toMatch(/dispersal-healing[\s\S]*dispersal-reconciliation/);
    await page.screenshot({ path: `${ARTIFACTS}/bull-board.png`, fullPage: true });
    await context.close();
  });

  it("with REQUEUE_APPROVALS=2: one operator asks with a reason, another approves, and it resolves in the asker's name", async () => {
    const fourEyes = { ...ctx, settings: { ...ctx.settings, REQUEUE_APPROVALS: 2 as const } };
    const server = await startHttpServer(fourEyes, { ...config, REQUEUE_APPROVALS: 2, PORT: 0, HOST: "127.0.0.1" });
    const asker = await browser.newContext({ httpCredentials: OPERATOR, viewport: { width: 1360, height: 900 } });
    const approver = await browser.newContext({ httpCredentials: SECOND_OPERATOR, viewport: { width: 1360, height: 900 } });
    try {
      const second = await givenSettledObligation(database, { lenders: [0], amount: 667_695n });
      expect(await scanAndWait(ctx, { timeoutMs: 20_000 })).toMatchObject({ escalated: 1 });

      const page = await asker.newPage();
      await page.goto(`${server.url}/ops`);
      const row = page.locator(`section[aria-labelledby="open"] tr[data-obligation="${second.obligationId}"]`);
      await row.waitFor();
      await page.fill('input[name="reason"]', "positions corrected by the servicing desk");
      await Promise.all([page.waitForURL(`${server.url}/ops`), row.locator('button[name="only"]').click()]);
      await expect(page.locator(".flash").textContent()).resolves.toMatch(/waiting for another operator's approval/);
      const pendingForAsker = page.locator(`tr[data-pending="${second.obligationId}"]`);
      await expect(pendingForAsker.textContent()).resolves.toMatch(/olga[\s\S]*positions corrected by the servicing desk/);
      await expect(pendingForAsker.locator('button:text("Approve")').count()).resolves.toBe(0); // not your own
      await page.screenshot({ path: `${ARTIFACTS}/ops-pending-approval.png`, fullPage: true });

      await database.db.execute(sql`update mortgage_positions set units = 10000 where mortgage_id = ${second.mortgageId}::uuid`);
      const other = await approver.newPage();
      await other.goto(`${server.url}/ops`);
      const pending = other.locator(`tr[data-pending="${second.obligationId}"]`);
      await expect(pending.textContent()).resolves.toMatch(/olga/);
      await Promise.all([other.waitForURL(`${server.url}/ops`), pending.locator('button:text("Approve")').click()]);
      await expect(other.locator(".flash").textContent()).resolves.toMatch(/Approved olga's requeue/);

      const resolvedRow = other.locator(`section[aria-labelledby="resolved"] tr[data-obligation="${second.obligationId}"]`);
      await waitFor(
        async () => {
          await other.reload();
          return (await resolvedRow.count()) === 1;
        },
        { timeoutMs: 15_000, what: "the approved requeue to show as resolved", everyMs: 300 },
      );
      await other.screenshot({ path: `${ARTIFACTS}/ops-approved-resolved.png`, fullPage: true });

      const story = await database.db.execute<{ action: string; actor: string; reason: string | null }>(sql`
        select action, actor, metadata->>'reason' as reason from audit_log
         where resource_id = ${second.obligationId} and action <> 'dispersal.self_healing_escalated' order by created_at, action`);
      expect(story).toEqual([
        { action: "dispersal.self_healing_requeue_requested", actor: "olga", reason: "positions corrected by the servicing desk" },
        // approved and requeued share one transaction (one created_at)
        { action: "dispersal.self_healing_requeue_approved", actor: "oscar", reason: "positions corrected by the servicing desk" },
        { action: "dispersal.self_healing_requeued", actor: "olga", reason: "positions corrected by the servicing desk" },
        { action: "dispersal.self_healing_resolved", actor: "olga", reason: null },
      ]);
      const [reversal] = await database.db.execute<{ actor: string }>(sql`select actor from cash_journal_entries where entry_type = 'REVERSAL' and obligation_id = ${second.obligationId}::uuid`);
      expect(reversal?.actor).toBe("olga");
    } finally {
      await asker.close();
      await approver.close();
      await server.close();
    }
  });

  it("shows viewers the page without any button", async () => {
    const context = await browser.newContext({ httpCredentials: { username: "victor", password: "victor-viewer-secret" } });
    const page = await context.newPage();
    await page.goto(`${http.url}/ops`);
    await expect(page.locator("header .badge").textContent()).resolves.toMatch(/victor · viewer \(read-only\)/);
    await expect(page.locator(`form[method="post"]`).count()).resolves.toBe(0); // only the search form
    await context.close();
  });
});
