// The three BullMQ queues of the service, opened on one Redis connection under one prefix.
import { Queue } from "bullmq";
import { queueTelemetry } from "../telemetry.js";
import type { RedisConnection } from "./connection.js";
import { QUEUE, type RetriggerJobData } from "./names.js";

export interface Queues {
  prefix: string;
  connection: RedisConnection;
  healing: Queue;
  retrigger: Queue<RetriggerJobData>;
  reconciliation: Queue;
  all: Queue[];
  close(): Promise<void>;
}

export function openQueues(connection: RedisConnection, prefix: string): Queues {
  const options = { connection, prefix, ...queueTelemetry() };
  const healing = new Queue(QUEUE.healing, options);
  const retrigger = new Queue<RetriggerJobData>(QUEUE.retrigger, options);
  const reconciliation = new Queue(QUEUE.reconciliation, options);
  const all = [healing, retrigger, reconciliation] as Queue[];
  for (const queue of all) queue.on("error", () => {}); // connection errors surface through the ioredis client and /readyz
  return {
    prefix,
    connection,
    healing,
    retrigger,
    reconciliation,
    all,
    close: async () => {
      await Promise.all(all.map((q) => q.close()));
    },
  };
}
