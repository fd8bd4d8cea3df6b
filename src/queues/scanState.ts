// What the healing scan keeps in Redis between ticks: its keyset cursor (where a tick that hit the
// backlog cap stopped; present only while orphans are left to offer) and a lock, so that two scans
// never page at once (each would see the same room and together overshoot the cap).
import { randomBytes } from "node:crypto";
import { QUEUE } from "./names.js";
import type { Queues } from "./queues.js";

const LOCK_TTL_MS = 60_000;

// The queue prefix's hash tag keeps these keys on the queue's Redis Cluster slot.
const cursorKey = (queues: Queues) => `${queues.prefix}:${QUEUE.healing}:scan-cursor`;
const lockKey = (queues: Queues) => `${queues.prefix}:${QUEUE.healing}:scan-lock`;

/** The last obligation id a capped tick offered; null when the last tick went all the way round. */
export async function readScanCursor(queues: Queues): Promise<string | null> {
  return queues.connection.get(cursorKey(queues));
}

export async function writeScanCursor(queues: Queues, obligationId: string | null): Promise<void> {
  if (obligationId === null) await queues.connection.del(cursorKey(queues));
  else await queues.connection.set(cursorKey(queues), obligationId);
}

export interface ScanLock {
  /** Keeps the lock while a long tick pages on. */
  extend(): Promise<void>;
  release(): Promise<void>;
}

const EXTEND = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) end return 0`;
const RELEASE = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) end return 0`;

/**
 * Waits for the scan lock (a scan in another process finishes within a tick: its room is bounded by
 * the cap). A lock whose holder died expires after a minute; after waiting that long we go on
 * without it rather than stop healing: two scans at once overshoot the cap a little, nothing worse.
 */
export async function acquireScanLock(queues: Queues, waitMs = LOCK_TTL_MS + 5_000): Promise<ScanLock> {
  const key = lockKey(queues);
  const token = randomBytes(8).toString("hex");
  const deadline = Date.now() + waitMs;
  let held = false;
  for (let pause = 10; ; pause = Math.min(pause * 2, 200)) {
    held = (await queues.connection.set(key, token, "PX", LOCK_TTL_MS, "NX")) === "OK";
    if (held || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, pause));
  }
  return {
    extend: async () => {
      if (held) await queues.connection.eval(EXTEND, 1, key, token, String(LOCK_TTL_MS));
    },
    release: async () => {
      if (held) await queues.connection.eval(RELEASE, 1, key, token);
    },
  };
}
