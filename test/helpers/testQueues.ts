// testQueues(): a unique queue prefix for one test file, and the removal of its keys afterwards.
import { randomBytes } from "node:crypto";
import { afterAll } from "vitest";
import { TEST_REDIS_URL } from "./env.js";
import { deleteKeysWithPrefix } from "./redisKeys.js";

export function testQueues(): { prefix: string; redisUrl: string } {
  const prefix = `{t${randomBytes(5).toString("hex")}}`;
  afterAll(() => deleteKeysWithPrefix(TEST_REDIS_URL, prefix));
  return { prefix, redisUrl: TEST_REDIS_URL };
}
