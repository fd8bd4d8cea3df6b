// The errors a person meets at the command line (DESIGN.md §5 "Failing loudly"): one line that names
// what failed (the URL, the argument, the variable and what it accepts), a non-zero exit, no stack
// unless LOG_LEVEL=debug; and a warning at start when OPS_USERS is empty.
import { describe, expect, it } from "vitest";
import { userInfo } from "node:os";
import { ConfigError, loadConfig } from "../../src/config.js";
import { spawnCli, waitFor } from "../helpers/processes.js";
import { freePort } from "../helpers/redisServer.js";
import { testDb } from "../helpers/testDb.js";
import { testQueues } from "../helpers/testQueues.js";

const database = await testDb();
const { prefix, redisUrl } = testQueues();
const env = { DATABASE_URL: database.url, REDIS_URL: redisUrl, QUEUE_PREFIX: prefix, LOG_LEVEL: "silent" };
const AN_ID = "00000000-0000-4000-8000-000000000001";
/** `pay` acts only as the service account its OS user is mapped to: checked before Postgres is reached. */
const PAYER = { OPS_USERS: "feed:service:feed-service-secret", OPS_CLI_USERS: `${userInfo().username}:feed` };

async function run(args: string[], extra: Record<string, string> = {}): Promise<{ code: number | null; lines: string[] }> {
  const proc = spawnCli(args, { ...env, ...extra });
  const code = await proc.exited;
  return { code, lines: proc.output().trim().split("\n") };
}

/** Exits non-zero with exactly one line, which matches `pattern`. */
async function expectOneLine(args: string[], extra: Record<string, string>, pattern: RegExp): Promise<void> {
  const { code, lines } = await run(args, extra);
  expect(code, lines.join("\n")).not.toBe(0);
  expect(lines, `dispersal ${args.join(" ")}`).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
}

describe("a backing service that is unreachable", () => {
  it("makes a CLI command say which URL failed, in one line, and exit non-zero", async () => {
    const closed = await freePort();
    await expectOneLine(["escalations"], { REDIS_URL: `redis://127.0.0.1:${closed}` }, new RegExp(`Cannot reach Redis at redis://127\\.0\\.0\\.1:${closed}`));
    const nowhere = `postgres://postgres@127.0.0.1:${closed}/nowhere`;
    await expectOneLine(["escalations"], { DATABASE_URL: nowhere }, new RegExp(`Cannot reach Postgres at ${nowhere.replaceAll(".", "\\.")}`));
    await expectOneLine(["pay", AN_ID, "--reference", "r-1", "--amount", "100"], { DATABASE_URL: nowhere, ...PAYER }, new RegExp(`Cannot reach Postgres at ${nowhere.replaceAll(".", "\\.")}`));
    // Asked for, the stack is there.
    const debug = await run(["pay", AN_ID, "--reference", "r-1", "--amount", "100"], { DATABASE_URL: nowhere, LOG_LEVEL: "debug", ...PAYER });
    expect(debug.code).not.toBe(0);
    expect(debug.lines.join("\n")).toMatch(/Cannot reach Postgres[\s\S]*\n\s+at /);
  });
});

describe("bad input", () => {
  it("to pay and escalations prints one line and exits non-zero", async () => {
    await expectOneLine(["pay", "not-an-id", "--reference", "r-1", "--amount", "100"], {}, /obligationId must be a UUID/);
    await expectOneLine(["pay", AN_ID, "--reference", "r-1", "--amount", "12.50"], {}, /--amount must be/);
    await expectOneLine(["pay", AN_ID, "--amount", "100"], {}, /--reference/);
    await expectOneLine(["escalations", "--limit", "many"], {}, /--limit .*must be a positive integer/);
    await expectOneLine(["escalations", "--status", "stuck"], {}, /--status must be escalated, requeued, retrying or resolved/);
  });
});

describe("configuration errors", () => {
  it("stop start-up on RECONCILIATION_CRON=bad naming the variable and what it accepts", async () => {
    for (const cron of ["bad", "99 99 * * *"]) {
      await expectOneLine(["worker"], { RECONCILIATION_CRON: cron }, /RECONCILIATION_CRON must be a cron expression of 5 fields.*"0 7 \* \* \*"/);
    }
  });

  it("name the variable and the accepted values, every one", () => {
    const bad: Record<string, { value: string; accepts: RegExp }> = {
      DATABASE_URL: { value: "mysql://x", accepts: /postgres:\/\// },
      DATABASE_POOL_SIZE: { value: "0", accepts: /positive whole number/ },
      REDIS_URL: { value: "localhost", accepts: /redis:\/\// },
      REDIS_COMMAND_TIMEOUT_MS: { value: "soon", accepts: /positive whole number/ },
      QUEUE_PREFIX: { value: "a b", accepts: /letters, digits/ },
      PORT: { value: "99999", accepts: /0 to 65535/ },
      OPS_USERS: { value: "alice", accepts: /name:role:secret/ },
      OPS_CLI_USERS: { value: "alice", accepts: /osuser:name/ },
      WORKER_CONCURRENCY: { value: "-3", accepts: /positive whole number/ },
      HEALING_SCAN_EVERY_MS: { value: "1.5", accepts: /positive whole number/ },
      SETTLEMENT_LISTENER: { value: "false", accepts: /on or off/ },
      RECONCILIATION_CRON: { value: "daily", accepts: /cron expression/ },
      RECONCILIATION_FULL_CRON: { value: "weekly", accepts: /cron expression/ },
      OTEL_EXPORTER_OTLP_ENDPOINT: { value: "ftp://x", accepts: /http\(s\) URL/ },
      REQUEUE_APPROVALS: { value: "3", accepts: /1 or 2/ },
      TRUST_PROXY: { value: "true", accepts: /number of hops/ },
      LOG_LEVEL: { value: "loud", accepts: /one of fatal, error, warn, info, debug, trace, silent/ },
    };
    for (const [variable, { value, accepts }] of Object.entries(bad)) {
      let thrown: unknown;
      try {
        loadConfig({ [variable]: value });
      } catch (error) {
        thrown = error;
      }
      expect(thrown, variable).toBeInstanceOf(ConfigError);
      expect((thrown as ConfigError).variable).toBe(variable);
      expect((thrown as ConfigError).message, variable).toMatch(new RegExp(`^Invalid configuration: ${variable} `));
      expect((thrown as ConfigError).message, variable).toMatch(accepts);
    }
  });
});

describe("start-up without OPS_USERS", () => {
  it("warns that every protected route will refuse", async () => {
    const port = await freePort();
    const proc = spawnCli(["server"], { ...env, PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "warn" });
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok, { timeoutMs: 30_000, what: "server up" });
    expect(await proc.stop()).toBe(0);
    expect(proc.output()).toMatch(/"msg":"OPS_USERS is empty: every route but \/healthz and \/readyz answers 401/);
  });
});
