// `dispersal simulate --duration N` runs its whole duration or says why it stopped (DESIGN.md §5
// "Failing loudly"): a data set with too few open obligations, or a server that does not answer,
// ends the run early with the reason on stderr and in the summary, and exit 4.
import { describe, expect, it } from "vitest";
import { givenSettledObligation } from "../helpers/factories.js";
import { spawnCli, waitFor } from "../helpers/processes.js";
import { freePort } from "../helpers/redisServer.js";
import { testDb } from "../helpers/testDb.js";
import { testQueues } from "../helpers/testQueues.js";

const database = await testDb();
const { prefix, redisUrl } = testQueues();
const SERVICE = "intake:service:intake-secret-1234";
const env = { DATABASE_URL: database.url, REDIS_URL: redisUrl, QUEUE_PREFIX: prefix, LOG_LEVEL: "silent", OPS_USERS: SERVICE, HEALING_BACKOFF_MS: "20" };

async function simulate(args: string[], extra: Record<string, string>) {
  const started = performance.now();
  const proc = spawnCli(["simulate", ...args], { ...env, ...extra });
  const code = await proc.exited;
  const out = proc.output();
  const start = out.indexOf("{\n");
  const summary = start >= 0 ? JSON.parse(out.slice(start, out.indexOf("\n}\n", start) + 2)) : undefined;
  return { code, out, summary, ms: performance.now() - started };
}

describe("dispersal simulate", () => {
  it("says it ran out of open obligations when they end before its duration", async () => {
    for (let i = 0; i < 4; i++) await givenSettledObligation(database, { lenders: [5000, 5000], status: "due" });
    const port = String(await freePort());
    const server = spawnCli(["start"], { ...env, PORT: port, HOST: "127.0.0.1" });
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.ok, { timeoutMs: 30_000, what: "the server" });
    const sim = await simulate(["--rate", "10", "--duration", "6", "--wait", "30"], { PORT: port, HOST: "127.0.0.1" });
    await server.stop("SIGTERM");
    expect(sim.code, sim.out).toBe(4);
    expect(sim.summary.payments.sent).toBeLessThan(60);
    expect(sim.summary.stoppedEarly).toMatchObject({ reason: expect.stringMatching(/^ran out of open obligations to pay: \d+ payments for 60 wanted/) });
    expect(sim.out).toMatch(/dispersal: simulate stopped after [\d.]+ of 6 s: ran out of open obligations/);
  }, 120_000);

  it("stops and says so when the server gives no answer", async () => {
    // Enough for 10 s at 2 a second: the silence, not the data set, ends this run.
    for (let i = 0; i < 20; i++) await givenSettledObligation(database, { lenders: [5000, 5000], status: "due" });
    const closed = await freePort();
    const sim = await simulate(["--rate", "2", "--duration", "60", "--wait", "1", "--url", `http://127.0.0.1:${closed}`], {});
    expect(sim.code, sim.out).toBe(4);
    expect(sim.ms).toBeLessThan(20_000);
    expect(sim.summary.stoppedEarly.reason).toMatch(new RegExp(`^the server at http://127\\.0\\.0\\.1:${closed} gave no answer for 5 s \\(ECONNREFUSED\\)`));
    expect(sim.out).toMatch(/dispersal: simulate stopped after [\d.]+ of 60 s: the server at/);
  }, 60_000);
});
