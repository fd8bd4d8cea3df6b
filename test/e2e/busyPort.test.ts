// A process that cannot serve exits at once, naming the cause (DESIGN.md §5 "Failing loudly"): a
// port already in use must not leave `start` alive holding its workers, nor print a stack.
import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnCli } from "../helpers/processes.js";
import { testDb } from "../helpers/testDb.js";
import { testQueues } from "../helpers/testQueues.js";

const database = await testDb();
const { prefix, redisUrl } = testQueues();

let holder: Server;
let port: number;

beforeAll(async () => {
  holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
  port = (holder.address() as { port: number }).port;
});
afterAll(() => new Promise<void>((resolve) => holder.close(() => resolve())));

describe.each(["start", "server"])("dispersal %s on a port already in use", (command) => {
  it("exits non-zero within a few seconds with one line naming the port", async () => {
    const proc = spawnCli([command], { DATABASE_URL: database.url, REDIS_URL: redisUrl, QUEUE_PREFIX: prefix, PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "silent" });
    const exited = await Promise.race([proc.exited, new Promise<"alive">((r) => setTimeout(() => r("alive"), 10_000))]);
    expect(exited, `still running after 10 s:\n${proc.output()}`).not.toBe("alive");
    expect(exited).not.toBe(0);
    const lines = proc.output().trim().split("\n");
    expect(lines).toEqual([`dispersal: PORT ${port} is already in use on 127.0.0.1: stop what holds it or set PORT to a free port`]);
  });
});
