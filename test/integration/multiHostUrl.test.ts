// A DATABASE_URL naming a failover pair (`host1:port1,host2:port2/db?target_session_attrs=read-write`):
// migrations create and migrate the database through it, the pool connects past a host that is
// down, a read-only server counts as an outage (not as the obligation's fault), and every build of
// the driver reads read-write as libpq does (a hot standby is not read-write). The formation with a
// real standby and a real failover is the fault suite's (test/faults/postgresFailover.test.ts).
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { connectDatabase, isOutage } from "../../src/db/client.js";
import { migrateDatabase, splitDatabaseUrl } from "../../src/db/migrate.js";
import { ephemeralPort } from "../faults/redisServers.js";
import { TEST_ADMIN_URL } from "../helpers/env.js";

const require = createRequire(import.meta.url);
const name = `dispersal_multihost_${Math.random().toString(36).slice(2, 10)}`;
const shared = new URL(TEST_ADMIN_URL);
const down = await ephemeralPort(); // nothing listens there
const url = `postgres://${shared.username}@127.0.0.1:${down},${shared.host}/${name}?target_session_attrs=read-write`;

afterAll(async () => {
  const admin = postgres(TEST_ADMIN_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`drop database if exists "${name}" with (force)`);
  await admin.end();
});

describe("a multi-host DATABASE_URL", () => {
  it("names its database and its admin database like a one-host URL", () => {
    expect(splitDatabaseUrl("postgres://u:p@a:1,b:2/db?target_session_attrs=read-write")).toEqual({
      name: "db",
      adminUrl: "postgres://u:p@a:1,b:2/postgres?target_session_attrs=read-write",
    });
    expect(splitDatabaseUrl("postgresql://u@h:5432/d%20b")).toEqual({ name: "d b", adminUrl: "postgresql://u@h:5432/postgres" });
    expect(splitDatabaseUrl("postgres://u@a:1,b:2").name).toBe("");
  });

  it("is migrated through, the first host being down, and the pool writes on the host that is up", async () => {
    await migrateDatabase(url);
    const database = connectDatabase(url, { max: 2 });
    try {
      const [row] = await database.sql<{ port: number; tables: bigint }[]>`
        select inet_server_port() as port, (select count(*) from pg_tables where tablename = 'cash_journal_entries') as tables`;
      expect(row).toEqual({ port: Number(shared.port || 5432), tables: 1n });
    } finally {
      await database.close();
    }
  });

  it("treats a write refused by a read-only server (25006) as an outage: the job waits, no attempt is used", async () => {
    const database = connectDatabase(TEST_ADMIN_URL, { max: 1 });
    try {
      const error = await database.sql
        .begin(async (tx) => {
          await tx`set transaction read only`;
          await tx`create table read_only_probe (id int)`;
        })
        .catch((e: unknown) => e);
      expect((error as { code?: string }).code).toBe("25006");
      expect(isOutage(error)).toBe(true);
    } finally {
      await database.close();
    }
  });
});

describe("the postgres.js driver Node loads", () => {
  it("takes a hot standby for not read-write in every build (patches/, libpq's meaning)", () => {
    const folder = join(dirname(require.resolve("postgres")), "..", ".."); // …/postgres/cjs/src/index.js
    const builds = ["src", "cjs/src", "cf/src", "deno/src"].map((b) => join(folder, b, "connection.js")).filter((f) => existsSync(f));
    expect(builds.length).toBeGreaterThanOrEqual(2);
    for (const file of builds) {
      const text = readFileSync(file, "utf8");
      expect(text, file).toMatch(/x === 'read-write' && \(xs\.default_transaction_read_only === 'on' \|\| xs\.in_hot_standby === 'on'\)/);
    }
  });
});
