// A bare worker process for the lifecycle model: the workers of src/jobs/worker.ts and nothing else
// (no schedules, so no scan of its own), configured by the environment like the CLI. The model
// arms a failpoint in it (DISPERSAL_FAILPOINTS) to kill it mid-job.
import { loadConfig } from "../../src/config.js";
import { connectDatabase } from "../../src/db/client.js";
import { startWorkers } from "../../src/jobs/worker.js";
import { log } from "../../src/log.js";
import { createRedisConnection } from "../../src/queues/connection.js";
import { openQueues } from "../../src/queues/queues.js";

const config = loadConfig();
log.level = config.LOG_LEVEL;
const database = connectDatabase(config.DATABASE_URL, { max: 4, applicationName: "dispersal-model-child" });
const connection = createRedisConnection(config, "dispersal-model-child");
connection.on("error", () => {});
const queues = openQueues(connection, config.QUEUE_PREFIX);
const workers = startWorkers({ database, readers: database, queues, settings: config, log });
process.stdout.write("ready\n");
process.once("SIGTERM", () => {
  void workers.close().then(async () => {
    await queues.close();
    connection.disconnect();
    await database.close();
    process.exit(0);
  });
});
