// §3 Queue ceiling: what BullMQ itself costs on this Redis — the same job options as a retrigger
// job (attempts, backoff, deduplication, removeOnComplete), a no-op processor, enqueue to done.
import { randomUUID } from "node:crypto";
import { Queue, Worker } from "bullmq";
import { createRedisConnection } from "../src/queues/connection.js";
import { JOB, QUEUE, retriggerJobOptions } from "../src/queues/names.js";
import { benchQueuePrefix, REDIS_URL } from "./benchResources.js";
import { figure, withMachineLoad, type Figure } from "./measure.js";

export interface QueueCeilingResult {
  jobs: number;
  concurrency: number;
  /** addBulk of every job, in pages of 1,000 like the scan. */
  enqueueSeconds: Figure;
  /** Enqueue start to the last job completed. */
  seconds: Figure;
  perSecond: Figure;
  machineBusy: Figure;
}

export async function runQueueCeiling(options: { jobs: number; runs: number; concurrency: number; say(line: string): void }): Promise<QueueCeilingResult> {
  const enqueue: number[] = [];
  const total: number[] = [];
  const busy: number[] = [];
  for (let run = 0; run < options.runs; run++) {
    const prefix = benchQueuePrefix(`noop-${run}`);
    const connection = createRedisConnection({ REDIS_URL }, "dispersal-bench-noop");
    const queue = new Queue(QUEUE.retrigger, { connection, prefix });
    let completed = 0;
    let allDone: () => void = () => {};
    const done = new Promise<void>((resolve) => (allDone = resolve));
    const worker = new Worker(QUEUE.retrigger, async () => undefined, { connection, prefix, concurrency: options.concurrency });
    worker.on("completed", () => {
      if (++completed === options.jobs) allDone();
    });
    try {
      await worker.waitUntilReady();
      const ids = Array.from({ length: options.jobs }, () => randomUUID());
      const { value, busy: machineBusy } = await withMachineLoad(async () => {
        const started = performance.now();
        for (let i = 0; i < ids.length; i += 1000) {
          await queue.addBulk(
            ids.slice(i, i + 1000).map((obligationId) => ({
              name: JOB.retrigger,
              data: { obligationId },
              opts: retriggerJobOptions(obligationId, { attempts: 3, backoffMs: 60_000 }),
            })),
          );
        }
        const enqueued = performance.now() - started;
        await done;
        return { enqueued, total: performance.now() - started };
      });
      enqueue.push(value.enqueued / 1000);
      total.push(value.total / 1000);
      busy.push(machineBusy);
      options.say(`  no-op run ${run + 1}: ${options.jobs} jobs in ${value.total.toFixed(0)} ms (enqueue ${value.enqueued.toFixed(0)} ms)`);
    } finally {
      await worker.close();
      await queue.obliterate({ force: true }).catch(() => {});
      await queue.close();
      connection.disconnect();
    }
  }
  return {
    jobs: options.jobs,
    concurrency: options.concurrency,
    enqueueSeconds: figure(enqueue, "s", 3),
    seconds: figure(total, "s", 3),
    perSecond: figure(total.map((s) => options.jobs / s), "jobs/s", 0),
    machineBusy: figure(busy, "share", 2),
  };
}
