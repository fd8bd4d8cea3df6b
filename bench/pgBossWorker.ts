// A worker process running the same retrigger work on pg-boss (Postgres as the queue), for the
// side-by-side comparison: the same dispersal transaction per job, per-job retries (retryLimit 3,
// retryBackoff) left to pg-boss. Env: DATABASE_URL, PGBOSS_CONCURRENCY, DATABASE_POOL_SIZE.
//
// pg-boss's own work() polls at most every 0.5 s per worker and fails a whole fetched batch
// together; fetch()/complete()/fail() loops, one per unit of concurrency, give it its best
// throughput while keeping one job = one retryable unit.
import PgBoss from "pg-boss";
import { connectDatabase, isOutage } from "../src/db/client.js";
import { disperseBatch } from "../src/db/dispersalBatch.js";
import { recordFailedAttempt } from "../src/db/healing.js";
import { DomainError } from "../src/domain/errors.js";
import { parseRetriggerData } from "../src/jobs/retrigger.js";
import { PGBOSS_QUEUE, PGBOSS_SCHEMA } from "./pgBossQueue.js";

const url = process.env.DATABASE_URL!;
const concurrency = Number(process.env.PGBOSS_CONCURRENCY ?? 16);
const database = connectDatabase(url, { max: Number(process.env.DATABASE_POOL_SIZE ?? 10), applicationName: "bench-pgboss-worker" });
const boss = new PgBoss({
  connectionString: url,
  schema: PGBOSS_SCHEMA,
  max: concurrency,
  supervise: false,
  schedule: false,
  migrate: false,
  application_name: "bench-pgboss",
});
boss.on("error", (error) => process.stderr.write(`pg-boss error: ${error.message}\n`));
await boss.start();

let stopping = false;
const idle = () => new Promise((resolve) => setTimeout(resolve, 50));

async function processOne(job: PgBoss.Job<unknown>): Promise<void> {
  let obligationId: string;
  try {
    obligationId = parseRetriggerData(job.data).obligationId;
  } catch {
    await boss.cancel(PGBOSS_QUEUE, job.id); // malformed: no retry
    return;
  }
  try {
    // The production dispersal transaction, as the BullMQ workers commit it (a batch of one).
    await database.db.transaction(async (tx) => {
      const outcome = (await disperseBatch(tx, [{ obligationId, attempt: 1, jobId: job.id }])).get(obligationId)!;
      if (outcome.kind === "failed") throw outcome.error;
    });
    await boss.complete(PGBOSS_QUEUE, job.id);
  } catch (error) {
    const message = (error as Error).message;
    if (error instanceof DomainError && !error.retryable) {
      await boss.cancel(PGBOSS_QUEUE, job.id);
      return;
    }
    if (!isOutage(error)) await recordFailedAttempt(database.db, obligationId, 1, message, job.id).catch(() => {});
    await boss.fail(PGBOSS_QUEUE, job.id, { message });
  }
}

async function loop(): Promise<void> {
  while (!stopping) {
    const [job] = await boss.fetch<unknown>(PGBOSS_QUEUE, { batchSize: 1 });
    if (!job) {
      await idle();
      continue;
    }
    await processOne(job);
  }
}

const loops = Array.from({ length: concurrency }, () => loop().catch((error: Error) => process.stderr.write(`loop: ${error.message}\n`)));
process.stdout.write("pg-boss worker ready\n");

const stop = async () => {
  if (stopping) return;
  stopping = true;
  await Promise.all(loops);
  await boss.stop({ graceful: true, close: true, wait: true, timeout: 10_000 });
  await database.close();
  process.exit(0);
};
process.once("SIGTERM", () => void stop());
process.once("SIGINT", () => void stop());
