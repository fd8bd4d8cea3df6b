// testPipeline(): a pipeline context on the file's own database and queue prefix, with fast timings.
import { afterAll } from "vitest";
import { loadConfig, type Config } from "../../src/config.js";
import { connectDatabase, type Database } from "../../src/db/client.js";
import type { PipelineContext } from "../../src/jobs/context.js";
import { startWorkers, type Workers } from "../../src/jobs/worker.js";
import { log } from "../../src/log.js";
import { createRedisConnection } from "../../src/queues/connection.js";
import { openQueues } from "../../src/queues/queues.js";
import { testQueues } from "./testQueues.js";

export interface TestPipeline {
  ctx: PipelineContext;
  config: Config;
  startWorkers(options?: { concurrency?: number }): Workers;
}

export function testPipeline(database: Database, overrides: Record<string, string> = {}): TestPipeline {
  const { prefix, redisUrl } = testQueues();
  const config = loadConfig({
    DATABASE_URL: database.url,
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: prefix,
    HEALING_BACKOFF_MS: "20",
    INFRA_RETRY_DELAY_MS: "100",
    WORKER_CONCURRENCY: "8",
    ...overrides,
  });
  const connection = createRedisConnection(config, "dispersal-test");
  const queues = openQueues(connection, prefix);
  // As the service opens it: a small pool of its own with the readers' statement timeout.
  const readers = connectDatabase(database.url, { max: config.READER_POOL_SIZE, applicationName: "dispersal-test-reader", statementTimeoutMs: config.READER_STATEMENT_TIMEOUT_MS });
  const ctx: PipelineContext = { database, readers, queues, settings: config, log };
  const started: Workers[] = [];
  afterAll(async () => {
    await Promise.all(started.map((w) => w.close()));
    await queues.close();
    connection.disconnect();
    await readers.close();
  });
  return {
    ctx,
    config,
    startWorkers: (options) => {
      const workers = startWorkers(ctx, options);
      started.push(workers);
      return workers;
    },
  };
}
