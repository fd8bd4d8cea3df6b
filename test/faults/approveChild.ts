// A second operator approving pending requeues (REQUEUE_APPROVALS=2), in a process of its own so that
// the crash test can kill it at an approval failpoint (DISPERSAL_FAILPOINTS): the same call the ops
// API and page make (approveRequeue of src/jobs/requeue.ts), configured by the environment like the CLI.
//   node --import tsx test/faults/approveChild.ts <approver> <obligation id>…
import { loadConfig } from "../../src/config.js";
import { connectDatabase } from "../../src/db/client.js";
import { approveRequeue } from "../../src/jobs/requeue.js";
import { log } from "../../src/log.js";
import { createRedisConnection } from "../../src/queues/connection.js";
import { openQueues } from "../../src/queues/queues.js";

const [approver, ...obligationIds] = process.argv.slice(2);
if (!approver || obligationIds.length === 0) throw new Error("usage: approveChild.ts <approver> <obligation id>…");
const config = loadConfig();
log.level = config.LOG_LEVEL;
const database = connectDatabase(config.DATABASE_URL, { max: 2, applicationName: "dispersal-approve-child" });
const connection = createRedisConnection(config, "dispersal-approve-child");
const queues = openQueues(connection, config.QUEUE_PREFIX);
try {
  for (const obligationId of obligationIds) {
    const result = await approveRequeue({ database, readers: database, queues, settings: config, log }, obligationId, approver, "api");
    process.stdout.write(`${JSON.stringify(result)}\n`);
  }
} finally {
  await queues.close();
  connection.disconnect();
  await database.close();
}
