// testQueues(): a unique queue prefix for one test file, and the removal of its keys afterwards.
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll } from "vitest";
import { TEST_REDIS_URL } from "./env.js";

export async function deleteKeysWithPrefix(redisUrl: string, prefix: string): Promise<void> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}

export function testQueues(): { prefix: string; redisUrl: string } {
  const prefix = `{t${randomBytes(5).toString("hex")}}`;
  afterAll(() => deleteKeysWithPrefix(TEST_REDIS_URL, prefix));
  return { prefix, redisUrl: TEST_REDIS_URL };
}
