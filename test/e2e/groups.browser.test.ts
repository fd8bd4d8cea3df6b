// The ops page's escalations by cause in Chromium (issue 21 items 1 and 2): one row per group that
// expands to its rows; "requeue all N" shows the dry run's count, asks for the reason, submits that
// count, shows its progress and result, and is refused with nothing changed when the group changed
// meanwhile; four eyes per obligation.
import { launchChromium } from "../helpers/browser.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync } from "node:fs";
import { sql } from "drizzle-orm";
import type { Browser } from "playwright-core";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { scanAndWait } from "../../src/jobs/scanAndWait.js";
import { givenMortgage, givenSettledObligation } from "../helpers/factories.js";
import { testPipeline } from "../helpers/pipeline.js";
import { waitFor } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";

const ARTIFACTS = "test-artifacts";
const OPERATOR = { username: "olga", password: "olga-operator-secret" };
const SECOND_OPERATOR = { username: "oscar", password: "oscar-operator-secret" };
const VIEWPORT = { width: 1360, height: 900 };

const database = await testDb();
const pipeline = testPipeline(database, {
  OPS_USERS: `${OPERATOR.username}:operator:${OPERATOR.password},${SECOND_OPERATOR.username}:operator:${SECOND_OPERATOR.password}`,
});
const { ctx, config } = pipeline;
const db = database.db;

let http: HttpServer;
let browser: Browser;

/** `count` obligations of a new mortgage whose positions are all zero, escalated by the real pipeline. */
async function escalatedGroup(count: number, amount: bigint): Promise<{ mortgageId: string; obligationIds: string[] }> {
  const { mortgageId } = await givenMortgage(database, { lenders: [0] });
  const obligationIds: string[] = [];
  for (let i = 0; i < count; i++) obligationIds.push((await givenSettledObligation(database, { mortgageId, amount })).obligationId);
  expect(await scanAndWait(ctx, { timeoutMs: 20_000 })).toMatchObject({ escalated: count });
  return { mortgageId, obligationIds };
}

async function statusesOf(ids: readonly string[]): Promise<string[]> {
  const rows = await db.execute<{ status: string }>(sql`
    select status from dispersal_healing_attempts where obligation_id = any(${`{${ids.join(",")}}`}::uuid[]) order by status`);
  return rows.map((r) => r.status);
}

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  pipeline.startWorkers();
  http = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await http?.close();
});

describe("escalations by cause on the ops page", () => {
  it("shows one row per group, expands it, dry-runs 'requeue all', then requeues the whole group with its count", async () => {
    const big = await escalatedGroup(3, 400_000n);
    const small = await escalatedGroup(1, 1_500n);
    const context = await browser.newContext({ httpCredentials: OPERATOR, viewport: VIEWPORT });
    const page = await context.newPage();
    await page.goto(`${http.url}/ops`);

    const groups = page.locator("#groups-table tbody.group");
    await expect(groups.count()).resolves.toBe(2);
    const first = groups.nth(0); // largest amount first
    await expect(first.getAttribute("data-group-mortgage")).resolves.toBe(big.mortgageId);
    const firstRow = await first.locator("tr").first().innerText();
    expect(firstRow).toContain(`M-${big.mortgageId}`);
    expect(firstRow).toContain("no active positions: mortgage <id> has no lender with units > <n>");
    expect(firstRow).toContain("12,000.00");
    expect(firstRow).toMatch(/\b3\b/);
    await expect(groups.nth(1).getAttribute("data-group-mortgage")).resolves.toBe(small.mortgageId);

    const members = first.locator("tr.members tr[data-obligation]");
    await expect(members.first().isVisible()).resolves.toBe(false);
    await first.locator("summary").click();
    await expect(members.count()).resolves.toBe(3);
    await expect(members.first().isVisible()).resolves.toBe(true);
    await page.screenshot({ path: `${ARTIFACTS}/ops-groups-expanded.png`, fullPage: true });

    await Promise.all([page.waitForURL(/\/ops\/groups\/requeue\?/), first.locator("a.requeue-group").click()]);
    await expect(page.locator("#dry-run").innerText()).resolves.toMatch(/Dry run: 3 escalations match on M-[\s\S]*12,000\.00 in all\. 3 would be requeued\. Nothing has changed yet\./);
    await expect(page.locator('input[name="expectedCount"]').inputValue()).resolves.toBe("3");
    await expect(page.locator("tr[data-obligation]").count()).resolves.toBe(3);
    await page.screenshot({ path: `${ARTIFACTS}/ops-group-dry-run.png`, fullPage: true });
    expect(await statusesOf(big.obligationIds)).toEqual(["escalated", "escalated", "escalated"]);

    // The cause fixed once for the whole group: a lender now holds the units.
    await db.execute(sql`update mortgage_positions set units = 10000 where mortgage_id = ${big.mortgageId}::uuid`);
    await page.fill('input[name="reason"]', "lender positions restored by the servicing desk");
    await page.click('#confirm-group-requeue button[type="submit"]');
    await expect(page.locator("#group-requeue-result").textContent()).resolves.toBe("Requeued 3 escalations for a new round.");
    await expect(page.locator("#group-requeue-progress p:last-child").textContent()).resolves.toBe("3 of 3 done.");
    await expect(page.locator("#group-requeue-progress p").count()).resolves.toBe(4); // 0, 1, 2 and 3 done, streamed as they went
    await expect(page.locator("#group-requeue-progress p:visible").count()).resolves.toBe(1);
    await page.screenshot({ path: `${ARTIFACTS}/ops-group-requeued.png`, fullPage: true });

    await waitFor(async () => (await statusesOf(big.obligationIds)).every((s) => s === "resolved"), { timeoutMs: 15_000, what: "the group's escalations to resolve" });
    await page.goto(`${http.url}/ops`);
    await expect(groups.count()).resolves.toBe(1);
    const audits = await db.execute<{ actor: string; channel: string; reason: string }>(sql`
      select actor, metadata->>'channel' as channel, metadata->>'reason' as reason from audit_log
       where action = 'dispersal.self_healing_requeued' and resource_id = any(${`{${big.obligationIds.join(",")}}`}::text[])`);
    expect(audits).toEqual(Array(3).fill({ actor: "olga", channel: "ops-page", reason: "lender positions restored by the servicing desk" }));
    await context.close();
  });

  it("refuses 'requeue all' with nothing changed when the group grew after the dry run", async () => {
    const group = await escalatedGroup(2, 2_000n);
    const context = await browser.newContext({ httpCredentials: OPERATOR, viewport: VIEWPORT });
    const page = await context.newPage();
    await page.goto(`${http.url}/ops`);
    await Promise.all([page.waitForURL(/\/ops\/groups\/requeue\?/), page.locator(`tbody.group[data-group-mortgage="${group.mortgageId}"] a.requeue-group`).click()]);
    await expect(page.locator("#dry-run [data-matched]").textContent()).resolves.toBe("2");

    const late = await givenSettledObligation(database, { mortgageId: group.mortgageId, amount: 2_000n });
    expect(await scanAndWait(ctx, { timeoutMs: 20_000 })).toMatchObject({ escalated: 1 });
    await page.fill('input[name="reason"]', "lender positions restored by the servicing desk");
    const [answer] = await Promise.all([page.waitForResponse((r) => r.url().endsWith("/ops/groups/requeue") && r.request().method() === "POST"), page.click('#confirm-group-requeue button[type="submit"]')]);
    expect(answer.status()).toBe(409);
    await page.waitForURL(`${http.url}/ops`);
    await expect(page.locator(".flash").textContent()).resolves.toMatch(/Nothing was requeued: the group now has 3 escalations, not the 2 you confirmed/);
    await page.screenshot({ path: `${ARTIFACTS}/ops-group-count-changed.png`, fullPage: true });
    expect(await statusesOf([...group.obligationIds, late.obligationId])).toEqual(["escalated", "escalated", "escalated"]);
    const [requests] = await db.execute<{ n: number }>(sql`
      select count(*)::int as n from requeue_requests where obligation_id = any(${`{${[...group.obligationIds, late.obligationId].join(",")}}`}::uuid[])`);
    expect(requests!.n).toBe(0);
    await context.close();
  });

  it("with REQUEUE_APPROVALS=2: 'requeue all' asks once per obligation and another operator approves each", async () => {
    const fourEyes = { ...ctx, settings: { ...ctx.settings, REQUEUE_APPROVALS: 2 as const } };
    const server = await startHttpServer(fourEyes, { ...config, REQUEUE_APPROVALS: 2, PORT: 0, HOST: "127.0.0.1" });
    const asker = await browser.newContext({ httpCredentials: OPERATOR, viewport: VIEWPORT });
    const approver = await browser.newContext({ httpCredentials: SECOND_OPERATOR, viewport: VIEWPORT });
    try {
      const group = await escalatedGroup(2, 900_000n);
      const page = await asker.newPage();
      await page.goto(`${server.url}/ops`);
      await Promise.all([page.waitForURL(/\/ops\/groups\/requeue\?/), page.locator(`tbody.group[data-group-mortgage="${group.mortgageId}"] a.requeue-group`).click()]);
      await expect(page.locator("#dry-run").innerText()).resolves.toMatch(/2 would wait for a second operator's approval/);
      await page.fill('input[name="reason"]', "lender positions restored by the servicing desk");
      await page.click('#confirm-group-requeue button[type="submit"]');
      await expect(page.locator("#group-requeue-result").textContent()).resolves.toBe("Requested 2 requeues: waiting for another operator's approval.");
      expect(await statusesOf(group.obligationIds)).toEqual(["escalated", "escalated"]);

      await db.execute(sql`update mortgage_positions set units = 10000 where mortgage_id = ${group.mortgageId}::uuid`);
      const other = await approver.newPage();
      for (const id of group.obligationIds) {
        await other.goto(`${server.url}/ops`);
        await Promise.all([other.waitForURL(`${server.url}/ops`), other.locator(`tr[data-pending="${id}"] button:text("Approve")`).click()]);
        await expect(other.locator(".flash").textContent()).resolves.toMatch(/Approved olga's requeue/);
      }
      await waitFor(async () => (await statusesOf(group.obligationIds)).every((s) => s === "resolved"), { timeoutMs: 15_000, what: "the approved requeues to resolve" });
      await other.screenshot({ path: `${ARTIFACTS}/ops-group-approved.png`, fullPage: true });
    } finally {
      await asker.close();
      await approver.close();
      await server.close();
    }
  });
});
