// Bull Board in Chromium with Redis going away under a running `server` (issue 20 item 4): the board
// and its API never hang. Killed Redis (connection refused): the page is a 503 naming the redacted
// Redis URL at once, its API a 503 with a JSON reason, a board already open says so in its toast, and
// /ops warns in its header. Frozen Redis (SIGSTOP: connected, silent): the API answers 503 within
// REDIS_COMMAND_TIMEOUT_MS. Redis back: the page that said "unavailable" reloads itself into the
// board, without a restart. The Redis is the test's own, killed and restarted by pid.
import { mkdirSync } from "node:fs";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QUEUE } from "../../src/queues/names.js";
import { launchChromium } from "../helpers/browser.js";
import { httpCall, type Credentials } from "../helpers/http.js";
import { spawnCli, waitFor, type CliProcess } from "../helpers/processes.js";
import { freePort, privateRedis } from "../helpers/redisServer.js";
import { testDb } from "../helpers/testDb.js";

const ARTIFACTS = "test-artifacts";
const OLGA = { username: "olga", password: "olga-operator-secret" };
const VICTOR = { username: "victor", password: "victor-viewer-secret" };
const olga: Credentials = { name: OLGA.username, secret: OLGA.password };
const victor: Credentials = { name: VICTOR.username, secret: VICTOR.password };
const COMMAND_TIMEOUT_MS = 1500;
/** "Within a couple of seconds" on a shared two-core machine. */
const PROMPT_MS = 2000;

const database = await testDb();
const redis = await privateRedis();

let server: CliProcess;
let base: string;
let browser: Browser;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const port = await freePort();
  server = spawnCli(["server"], {
    DATABASE_URL: database.url,
    REDIS_URL: redis.url,
    QUEUE_PREFIX: "{board-redis-down}",
    HOST: "127.0.0.1",
    PORT: String(port),
    OPS_USERS: `${OLGA.username}:operator:${OLGA.password},${VICTOR.username}:viewer:${VICTOR.password}`,
    REDIS_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS),
    LOG_LEVEL: "warn",
  });
  base = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${base}/readyz`).catch(() => undefined))?.status === 200, { timeoutMs: 30_000, what: "server ready" });
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await work();
  return { value, ms: performance.now() - started };
}

const unreachable = (port: number) => `Redis at redis://127.0.0.1:${port} is unreachable: queue views are unavailable; the ledger pages still work`;

describe("Bull Board while Redis is away", () => {
  it("answers 503 naming Redis at once (page, API, an open board's toast, /ops's header), within the command timeout when Redis hangs, and works again once Redis is back", async () => {
    const context = await browser.newContext({ httpCredentials: OLGA, viewport: { width: 1360, height: 900 } });
    const open = await context.newPage();
    await open.goto(`${base}/admin/queues`);
    await open.getByText(QUEUE.retrigger).first().waitFor({ timeout: 15_000 });
    const ops = await httpCall(base, "GET", "/ops", { as: olga });
    expect(ops.text).not.toContain("Redis is unreachable");

    // Killed: every connection refused, the client reconnecting.
    await redis.kill();
    await waitFor(async () => (await httpCall(base, "GET", "/readyz")).status === 503, { timeoutMs: 10_000, what: "/readyz 503" });

    for (const who of [olga, victor]) {
      const api = await timed(() => httpCall(base, "GET", "/admin/queues/api/queues?page=1", { as: who }));
      expect(api.value.status, api.value.text).toBe(503);
      expect(api.value.json).toEqual({ error: unreachable(redis.port), message: expect.stringContaining("/ops"), dependency: "redis" });
      expect(api.value.headers.get("retry-after")).toBe("5");
      expect(api.ms).toBeLessThan(PROMPT_MS);
      const stats = await timed(() => httpCall(base, "GET", "/admin/queues/api/redis/stats", { as: who }));
      expect(stats.value.status).toBe(503);
      expect(stats.ms).toBeLessThan(PROMPT_MS);
    }
    // The retry routes read Redis too: refused the same way, before they act.
    const retryAll = await timed(() => httpCall(base, "PUT", `/admin/queues/api/queues/${QUEUE.retrigger}/retry/failed`, { as: olga }));
    expect(retryAll.value.status, retryAll.value.text).toBe(503);
    expect(retryAll.ms).toBeLessThan(PROMPT_MS);

    // The board already open says why its views stopped, in its own toast.
    await open.getByText(unreachable(redis.port)).first().waitFor({ timeout: 15_000 });
    await open.screenshot({ path: `${ARTIFACTS}/bull-board-redis-down-open.png` });

    const page = await context.newPage();
    const loaded = await timed(() => page.goto(`${base}/admin/queues`));
    expect(loaded.value?.status()).toBe(503);
    expect(loaded.ms).toBeLessThan(PROMPT_MS);
    await expect(page.locator("#redis-unreachable").textContent()).resolves.toBe(`${unreachable(redis.port)}.`);
    await expect(page.getByRole("link", { name: "ops page" }).getAttribute("href")).resolves.toBe("/ops");
    await page.screenshot({ path: `${ARTIFACTS}/bull-board-redis-down.png` });
    const queuePage = await timed(() => page.goto(`${base}/admin/queues/queue/${QUEUE.retrigger}`));
    expect(queuePage.value?.status()).toBe(503);
    expect(queuePage.ms).toBeLessThan(PROMPT_MS);

    const opsPage = await context.newPage();
    await opsPage.goto(`${base}/ops`);
    await expect(opsPage.locator("header .outage").textContent()).resolves.toMatch(/Redis is unreachable/);
    await opsPage.screenshot({ path: `${ARTIFACTS}/ops-redis-down.png` });

    // Back: the page that said "unavailable" reloads itself into the board.
    await page.goto(`${base}/admin/queues`);
    await redis.restart();
    await page.getByText(QUEUE.retrigger).first().waitFor({ timeout: 20_000 });
    expect((await httpCall(base, "GET", "/admin/queues/api/queues?page=1", { as: victor })).status).toBe(200);
    await opsPage.reload();
    await expect(opsPage.locator("header .outage").count()).resolves.toBe(0);

    // Frozen: connected, every command accepted and never answered. Bounded by the command timeout.
    redis.freeze();
    try {
      const hung = await timed(() => httpCall(base, "GET", "/admin/queues/api/queues?page=1", { as: olga }));
      expect(hung.value.status, hung.value.text).toBe(503);
      expect(hung.value.json).toMatchObject({ error: unreachable(redis.port), dependency: "redis" });
      expect(hung.ms).toBeLessThan(COMMAND_TIMEOUT_MS + PROMPT_MS);
      const hungRetry = await timed(() => httpCall(base, "PUT", `/admin/queues/api/queues/${QUEUE.retrigger}/retry/failed`, { as: olga }));
      expect(hungRetry.value.status, hungRetry.value.text).toBe(503);
      expect(hungRetry.value.json).toMatchObject({ dependency: "redis" });
      expect(hungRetry.ms).toBeLessThan(COMMAND_TIMEOUT_MS + PROMPT_MS);
    } finally {
      redis.thaw();
    }
    await waitFor(async () => (await httpCall(base, "GET", "/admin/queues/api/queues?page=1", { as: olga })).status === 200, { timeoutMs: 15_000, what: "the board's API after the thaw" });
    await context.close();
  }, 120_000);
});
