// Opens what a process needs from its config: Postgres (checked, migrated when asked, with the
// four-eyes policy's first row), Redis (checked), the queues, and the pipeline context.
import { directDatabaseUrl, loadConfig, type Config } from "./config.js";
import { connectDatabase, type Db } from "./db/client.js";
import { migrateDatabase, unreachable } from "./db/migrate.js";
import { initialiseRequeuePolicy } from "./db/requeueRequests.js";
import type { PipelineContext } from "./jobs/context.js";
import { log } from "./log.js";
import { assertRedisReachable, createRedisConnection } from "./queues/connection.js";
import { openQueues } from "./queues/queues.js";
import { startTracing } from "./telemetry.js";

export interface Runtime {
  config: Config;
  ctx: PipelineContext;
  close(): Promise<void>;
}

export async function openRuntime(options: { config?: Config; migrate?: boolean; name?: string } = {}): Promise<Runtime> {
  const config = options.config ?? loadConfig();
  log.level = config.LOG_LEVEL;
  await assertRedisReachable(config);
  if (options.migrate) await migrateDatabase(directDatabaseUrl(config));
  const database = connectDatabase(config.DATABASE_URL, {
    max: config.DATABASE_POOL_SIZE,
    applicationName: options.name ?? "dispersal-healing",
    idleInTransactionTimeoutMs: config.DATABASE_IDLE_TRANSACTION_TIMEOUT_MS,
    preparedStatements: config.DATABASE_PREPARED_STATEMENTS === "on",
  });
  // Search and the ops pages on a small pool of their own, on direct sessions (so a statement
  // timeout can ride on them, and behind PgBouncer they never take the writers' server slots).
  const readers = connectDatabase(directDatabaseUrl(config), {
    max: config.READER_POOL_SIZE,
    applicationName: `${options.name ?? "dispersal-healing"}-reader`,
    statementTimeoutMs: config.READER_STATEMENT_TIMEOUT_MS,
  });
  for (const [pool, url] of [[database, config.DATABASE_URL], [readers, directDatabaseUrl(config)]] as const) {
    try {
      await pool.sql`select 1`;
    } catch (error) {
      await Promise.all([database.close(), readers.close()]);
      throw unreachable(url, error);
    }
  }
  if (options.migrate) {
    try {
      await keepRequeuePolicy(database.db, config);
    } catch (error) {
      await database.close();
      throw error;
    }
  }
  // Before the queues: they take BullMQ's telemetry option when tracing is on.
  const tracing = startTracing({
    endpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT,
    role: options.name,
    serviceName: config.OTEL_SERVICE_NAME,
    resourceAttributes: config.OTEL_RESOURCE_ATTRIBUTES,
  });
  const connection = createRedisConnection(config, options.name);
  connection.on("error", (error) => log.warn({ error: error.message }, "redis connection error"));
  const queues = openQueues(connection, config.QUEUE_PREFIX, { commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS });
  const ctx: PipelineContext = { database, readers, queues, settings: config, log };
  return {
    config,
    ctx,
    close: async () => {
      await queues.close();
      connection.disconnect();
      await Promise.all([database.close(), readers.close()]);
      await tracing?.shutdown();
    },
  };
}

/**
 * A service process at start (and `dispersal migrate`): REQUEUE_APPROVALS becomes the four-eyes
 * policy only of a database that has none yet; otherwise Postgres's policy stands, and an
 * environment that says something else is told so, loudly, since it changes nothing.
 */
export async function keepRequeuePolicy(db: Db, config: Pick<Config, "REQUEUE_APPROVALS">): Promise<void> {
  const { policy, initialised } = await initialiseRequeuePolicy(db, config.REQUEUE_APPROVALS);
  if (initialised) log.info({ requeueApprovals: policy.requeueApprovals }, "four-eyes policy initialised from REQUEUE_APPROVALS");
  else if (policy.requeueApprovals !== config.REQUEUE_APPROVALS) {
    log.warn(
      { requeueApprovals: policy.requeueApprovals, setBy: policy.setBy, setAt: policy.setAt, REQUEUE_APPROVALS: config.REQUEUE_APPROVALS },
      "REQUEUE_APPROVALS is ignored: the four-eyes policy in Postgres stands (change it with `dispersal policy set --requeue-approvals <n>`)",
    );
  }
}
