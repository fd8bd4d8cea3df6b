// What is printed or answered without credentials never shows a secret (issue 21 item 8): passwords
// of connection URLs in every spelling, and /readyz without host names or pids.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostname } from "node:os";
import { ConfigError, loadConfig } from "../../src/config.js";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { startSettlementListener, type SettlementListener } from "../../src/jobs/settlementListener.js";
import { testPipeline } from "../helpers/pipeline.js";
import { spawnCli } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";
import { testQueues } from "../helpers/testQueues.js";

const database = await testDb();
const { prefix, redisUrl } = testQueues();
const pipeline = testPipeline(database, { OPS_USERS: "olga:operator:olga-operator-secret" });
let http: HttpServer;
let listener: SettlementListener;

beforeAll(async () => {
  listener = startSettlementListener(pipeline.ctx, { databaseUrl: database.url, reconnectMs: 100 });
  http = await startHttpServer(pipeline.ctx, { ...pipeline.config, PORT: 0, HOST: "127.0.0.1" });
});

afterAll(async () => {
  await http?.close();
  await listener?.stop();
});

async function runWorker(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const proc = spawnCli(["worker"], { DATABASE_URL: database.url, REDIS_URL: redisUrl, QUEUE_PREFIX: prefix, LOG_LEVEL: "info", ...env });
  const code = await proc.exited;
  return { code, output: proc.output() };
}

describe("passwords are never printed", () => {
  it.each([
    ["a Postgres URL with no user part", { DATABASE_URL: "postgres://:pg-secret-no-user@127.0.0.1:1/dispersal" }, /Cannot reach Postgres at postgres:\/\/:\*\*\*@127\.0\.0\.1:1/],
    ["a Postgres URL whose password holds an @", { DATABASE_URL: "postgres://app:pg-secret@with-at@127.0.0.1:1/dispersal" }, /postgres:\/\/app:\*\*\*@127\.0\.0\.1:1/],
    ["a Redis URL with no user part", { REDIS_URL: "redis://:redis-secret-no-user@127.0.0.1:1" }, /Cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1/],
    ["a Redis URL whose password holds an @", { REDIS_URL: "redis://:redis-secret@with-at@127.0.0.1:1" }, /redis:\/\/:\*\*\*@127\.0\.0\.1:1/],
  ])("when %s is unreachable", async (_what, env, says) => {
    const { code, output } = await runWorker(env);
    expect(code).toBe(1);
    expect(output).toMatch(says);
    expect(output).not.toMatch(/secret|with-at/);
  });

  it("in a configuration error", () => {
    for (const env of [{ DATABASE_URL: "mysql://:db-secret@host/db" }, { REDIS_URL: "memcached://:redis-secret@host" }, { DATABASE_URL: "mysql://app:db-secret@with-at@host/db" }]) {
      let error: unknown;
      try {
        loadConfig(env);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).not.toMatch(/secret|with-at/);
    }
  });
});

describe("/readyz", () => {
  it("lists the settlement listeners' states without host names or pids", async () => {
    const answer = await fetch(`${http.url}/readyz`);
    const text = await answer.text();
    expect(answer.status).toBe(200);
    expect(JSON.parse(text).settlementListeners).toContainEqual({ state: expect.any(String), up: expect.any(Boolean) });
    expect(text).not.toContain(hostname());
    expect(text).not.toMatch(new RegExp(`\\b${process.pid}\\b`));
    expect(text).not.toContain(listener.process);
  });
});
