// Where settlement listeners say how they are: every listening process writes its state into one
// Redis hash under the queue prefix every few seconds, so the server (which usually does not
// listen itself) can report each listener on /metrics and /readyz.
import type { Queues } from "./queues.js";

export interface ListenerHeartbeat {
  /** host:pid of the listening process. */
  process: string;
  up: boolean;
  state: string;
  /** When the process wrote it (ms since the epoch). */
  at: number;
}

/** A heartbeat older than this belongs to a process that is gone or cannot reach Redis. */
export const HEARTBEAT_FRESH_MS = 30_000;
/** Entries of processes gone this long are removed by the next reader. */
const HEARTBEAT_FORGET_MS = 3600_000;

function hashKey(queues: Queues): string {
  return `${queues.prefix}:settlement-listeners`;
}

export async function publishHeartbeat(queues: Queues, heartbeat: ListenerHeartbeat): Promise<void> {
  await queues.connection.hset(hashKey(queues), heartbeat.process, JSON.stringify(heartbeat));
}

export async function removeHeartbeat(queues: Queues, process: string): Promise<void> {
  await queues.connection.hdel(hashKey(queues), process);
}

/** The fresh heartbeats, by process; forgets the long-stale ones. */
export async function readHeartbeats(queues: Queues, now = Date.now()): Promise<ListenerHeartbeat[]> {
  const all = await queues.connection.hgetall(hashKey(queues));
  const fresh: ListenerHeartbeat[] = [];
  const forgotten: string[] = [];
  for (const [process, raw] of Object.entries(all)) {
    const heartbeat = parse(raw);
    if (!heartbeat || now - heartbeat.at > HEARTBEAT_FORGET_MS) forgotten.push(process);
    else if (now - heartbeat.at <= HEARTBEAT_FRESH_MS) fresh.push({ ...heartbeat, process });
  }
  if (forgotten.length > 0) await queues.connection.hdel(hashKey(queues), ...forgotten);
  return fresh.sort((a, b) => a.process.localeCompare(b.process));
}

function parse(raw: string): ListenerHeartbeat | undefined {
  try {
    const value = JSON.parse(raw) as Partial<ListenerHeartbeat>;
    if (typeof value.up !== "boolean" || typeof value.at !== "number" || typeof value.state !== "string") return undefined;
    return value as ListenerHeartbeat;
  } catch {
    return undefined;
  }
}
