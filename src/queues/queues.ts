// The three BullMQ queues of the service, opened on one Redis connection under one prefix; and the
// retrigger queue once more on a bounded connection, for the jobs an operator's request waits on.
import { Queue } from "bullmq";
import { queueTelemetry } from "../telemetry.js";
import { createBoundedConnection, type RedisConnection } from "./connection.js";
import { QUEUE, type RetriggerJobData } from "./names.js";

/** The retrigger queue on a bounded connection (queues/connection.ts): for the jobs a request waits on. */
export interface RequestQueues {
  connection: RedisConnection;
  retrigger: Queue<RetriggerJobData>;
  /** Every command's bound, and the request's bound on all of them together (REDIS_COMMAND_TIMEOUT_MS). */
  commandTimeoutMs: number;
}

export interface Queues {
  prefix: string;
  connection: RedisConnection;
  healing: Queue;
  retrigger: Queue<RetriggerJobData>;
  reconciliation: Queue;
  all: Queue[];
  forRequests: RequestQueues;
  close(): Promise<void>;
}

/** The default of REDIS_COMMAND_TIMEOUT_MS (config.ts), for callers without a config. */
const DEFAULT_COMMAND_TIMEOUT_MS = 5_000;

export function openQueues(connection: RedisConnection, prefix: string, options: { commandTimeoutMs?: number } = {}): Queues {
  const queueOptions = { connection, prefix, ...queueTelemetry() };
  const healing = new Queue(QUEUE.healing, queueOptions);
  const retrigger = new Queue<RetriggerJobData>(QUEUE.retrigger, queueOptions);
  const reconciliation = new Queue(QUEUE.reconciliation, queueOptions);
  const all = [healing, retrigger, reconciliation] as Queue[];
  for (const queue of all) queue.on("error", () => {}); // connection errors surface through the ioredis client and /readyz
  // Opened now, not at the first request: BullMQ waits for a new connection to be ready before its
  // first command, and a command waiting for that would be sent when Redis is back.
  const commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  const boundedConnection = createBoundedConnection(connection, commandTimeoutMs, "dispersal-requests");
  boundedConnection.on("error", () => {}); // the shared connection reports the same outage
  const boundedRetrigger = new Queue<RetriggerJobData>(QUEUE.retrigger, { ...queueOptions, connection: boundedConnection });
  boundedRetrigger.on("error", () => {});
  return {
    prefix,
    connection,
    healing,
    retrigger,
    reconciliation,
    all,
    forRequests: { connection: boundedConnection, retrigger: boundedRetrigger, commandTimeoutMs },
    close: async () => {
      await Promise.all([...all, boundedRetrigger].map((q) => q.close()));
      boundedConnection.disconnect();
    },
  };
}
