// Hostile input, start-up side: invalid configuration values and unreachable backing services. The
// process exits non-zero at once with one line naming the variable (or the URL, and how to start
// the service), without a stack trace and without echoing secrets.
import { afterAll, describe, expect, it } from "vitest";
import { TEST_REDIS_URL, databaseUrl } from "../helpers/env.js";
import { ChildGroup, sleep, type Exit } from "./children.js";
import { recordFaults } from "./faultCounts.js";
import { ephemeralPort } from "./redisServers.js";

const children = new ChildGroup();
afterAll(() => children.killAll());

/** Valid values, except that Postgres is unreachable: a value wrongly accepted still ends the process, but with the wrong message. */
let valid: Record<string, string> = {};

interface Case {
  name: string;
  command: "worker" | "server";
  env: Record<string, string>;
  /** What the one line must say. */
  says: Array<string | RegExp>;
  /** What it must never say (secrets). */
  never?: string[];
}

async function run(c: Case): Promise<{ exit: Exit; output: string }> {
  const child = children.cli(c.name, [c.command], { ...valid, ...c.env });
  const exit = await Promise.race([child.exited, sleep(40_000).then(() => child.kill("SIGKILL"))]);
  return { exit, output: child.output() };
}

describe("hostile configuration at start-up", () => {
  it("exits non-zero naming the variable for every invalid value, and names the URL for unreachable services", async () => {
    const closed = await ephemeralPort(); // nothing listens there once the probe server is gone
    const unreachableDatabase = new URL(databaseUrl("dispersal_faults_config"));
    unreachableDatabase.port = String(closed);
    valid = { DATABASE_URL: unreachableDatabase.toString(), REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: "{faults-config}", LOG_LEVEL: "warn" };
    const cases: Case[] = [
      { name: "PORT not a number", command: "server", env: { PORT: "abc" }, says: ["PORT"] },
      { name: "PORT out of range", command: "server", env: { PORT: "70000" }, says: ["PORT"] },
      { name: "DATABASE_URL for MySQL", command: "worker", env: { DATABASE_URL: "mysql://root@127.0.0.1:3306/dispersal" }, says: ["DATABASE_URL"] },
      { name: "REDIS_URL nonsense", command: "worker", env: { REDIS_URL: "nonsense" }, says: ["REDIS_URL"] },
      { name: "WORKER_CONCURRENCY 0", command: "worker", env: { WORKER_CONCURRENCY: "0" }, says: ["WORKER_CONCURRENCY"] },
      { name: "WORKER_CONCURRENCY words", command: "worker", env: { WORKER_CONCURRENCY: "many" }, says: ["WORKER_CONCURRENCY"] },
      { name: "OPS_USERS without role or secret", command: "server", env: { OPS_USERS: "alice" }, says: ["OPS_USERS"] },
      {
        name: "OPS_USERS with an unknown role",
        command: "server",
        env: { OPS_USERS: "alice:operator:alice-secret-value-1,mallory:root:mallory-secret-value-2" },
        says: ["OPS_USERS"],
        never: ["alice-secret-value-1", "mallory-secret-value-2"],
      },
      { name: "OPS_USERS secret too short", command: "server", env: { OPS_USERS: "bob:operator:tiny-pw" }, says: ["OPS_USERS"], never: ["tiny-pw"] },
      { name: "QUEUE_PREFIX with spaces", command: "worker", env: { QUEUE_PREFIX: "my prefix" }, says: ["QUEUE_PREFIX"] },
      { name: "QUEUE_PREFIX with a glob and a colon", command: "worker", env: { QUEUE_PREFIX: "{a}:*" }, says: ["QUEUE_PREFIX"] },
      { name: "HEALING_BACKOFF_MS negative", command: "worker", env: { HEALING_BACKOFF_MS: "-1" }, says: ["HEALING_BACKOFF_MS"] },
      { name: "DATABASE_POOL_SIZE infinite", command: "worker", env: { DATABASE_POOL_SIZE: "1e400" }, says: ["DATABASE_POOL_SIZE"] },
      { name: "LOG_LEVEL unknown", command: "worker", env: { LOG_LEVEL: "loud" }, says: ["LOG_LEVEL"] },
      { name: "REDIS_CLUSTER_NODES without ports", command: "worker", env: { REDIS_CLUSTER_NODES: "127.0.0.1,127.0.0.2" }, says: ["REDIS_CLUSTER_NODES"] },
      {
        name: "Redis unreachable",
        command: "worker",
        env: { REDIS_URL: `redis://:redis-secret-pw@127.0.0.1:${closed}` },
        says: [`redis://:***@127.0.0.1:${closed}`, "docker compose up -d"],
        never: ["redis-secret-pw"],
      },
      {
        name: "Redis Cluster unreachable",
        command: "worker",
        env: { REDIS_CLUSTER_NODES: `127.0.0.1:${closed}` },
        says: [`127.0.0.1:${closed}`, "docker compose up -d"],
      },
      {
        name: "Postgres unreachable",
        command: "worker",
        env: { DATABASE_URL: `postgres://postgres:pg-secret-pw@127.0.0.1:${closed}/dispersal_faults` },
        says: [`postgres://postgres:***@127.0.0.1:${closed}/dispersal_faults`, "docker compose up -d"],
        never: ["pg-secret-pw"],
      },
    ];

    const results: Array<{ name: string; code: number | null; says: boolean; leaks: string[]; stack: boolean; lines: number }> = [];
    for (let i = 0; i < cases.length; i += 6) {
      const batch = cases.slice(i, i + 6);
      const outcomes = await Promise.all(batch.map(run));
      batch.forEach((c, j) => {
        const { exit, output } = outcomes[j]!;
        results.push({
          name: c.name,
          code: exit.code,
          says: c.says.every((s) => (typeof s === "string" ? output.includes(s) : s.test(output))),
          leaks: (c.never ?? []).filter((secret) => output.includes(secret)),
          stack: /\n\s+at .+:\d+:\d+/.test(output),
          lines: output.trim().split("\n").length,
        });
        if (!results.at(-1)!.says) process.stderr.write(`[faults] ${c.name}: ${output}\n`);
      });
    }
    const rejected = results.filter((r) => r.code !== null && r.code !== 0 && r.says && r.leaks.length === 0 && !r.stack).length;
    recordFaults(import.meta.url, "invalid configuration and unreachable services at start-up", { hostileRejected: rejected });
    expect(results).toEqual(cases.map((c) => ({ name: c.name, code: 1, says: true, leaks: [], stack: false, lines: 1 })));
  }, 180_000);
});
