import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import { spawnCli } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";
import { testQueues } from "../helpers/testQueues.js";

const database = await testDb();
const { prefix, redisUrl } = testQueues();

function configError(opsUsers: string): ConfigError {
  try {
    loadConfig({ OPS_USERS: opsUsers });
  } catch (error) {
    return error as ConfigError;
  }
  throw new Error(`OPS_USERS=${opsUsers} was accepted`);
}

describe("OPS_USERS: one person, one entry", () => {
  it("refuses two entries that share a secret, naming both entries but not the secret", () => {
    const error = configError("olga:operator:shared-secret-123,omar:operator:shared-secret-123");
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.variable).toBe("OPS_USERS");
    expect(error.message).toMatch(/"olga" and "omar" share a secret/);
    expect(error.message).not.toContain("shared-secret-123");
  });

  it("refuses a secret shared across roles too", () => {
    expect(configError("olga:operator:shared-secret-123,feed:service:shared-secret-123").message).toMatch(/share a secret/);
  });

  it("refuses two names that differ only in case, and the same name twice", () => {
    const error = configError("Olga:operator:first-secret-123,olga:operator:second-secret-45");
    expect(error.variable).toBe("OPS_USERS");
    expect(error.message).toMatch(/"Olga" and "olga"/);
    expect(configError("olga:viewer:first-secret-123,olga:operator:second-secret-45").message).toMatch(/"olga" and "olga"/);
  });

  it("accepts distinct names with distinct secrets", () => {
    const config = loadConfig({ OPS_USERS: "olga:operator:first-secret-123,omar:operator:second-secret-45,feed:service:third-secret-678" });
    expect(config.OPS_USERS.map((u) => u.name)).toEqual(["olga", "omar", "feed"]);
  });

  it("stops a server at start-up with OPS_USERS named", async () => {
    const proc = spawnCli(["server"], { DATABASE_URL: database.url, REDIS_URL: redisUrl, QUEUE_PREFIX: prefix, PORT: "0", LOG_LEVEL: "silent", OPS_USERS: "olga:operator:shared-secret-123,OLGA:operator:other-secret-456" });
    const started = new Promise<"still running">((resolve) => setTimeout(() => resolve("still running"), 15_000).unref());
    expect(await Promise.race([proc.exited, started])).toBe(1);
    expect(proc.output()).toMatch(/OPS_USERS/);
    expect(proc.output()).not.toMatch(/shared-secret-123|other-secret-456/);
  });
});
