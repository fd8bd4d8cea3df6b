// testDb(): a fresh database for one test file, cloned from the migrated template; dropped afterwards.
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { afterAll } from "vitest";
import { connectDatabase, type Database } from "../../src/db/client.js";
import { TEST_ADMIN_URL, databaseUrl } from "./env.js";
import { templateName } from "./globalSetup.js";

export interface TestDatabase extends Database {
  name: string;
}

export async function createTestDatabase(): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `dispersal_test_${randomBytes(6).toString("hex")}`;
  const admin = postgres(TEST_ADMIN_URL, { max: 1, onnotice: () => {} });
  for (let attempt = 0; ; attempt++) {
    try {
      await admin.unsafe(`create database "${name}" template "${templateName()}"`);
      break;
    } catch (error) {
      // Two files cloning the same template at the same instant can collide; try again shortly.
      if (attempt >= 20 || (error as { code?: string }).code !== "55006") throw error;
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
    }
  }
  return {
    name,
    url: databaseUrl(name),
    drop: async () => {
      await admin.unsafe(`drop database if exists "${name}" with (force)`);
      await admin.end();
    },
  };
}

/** Call at the top of a test file: the database lives for the file and is dropped after it. */
export async function testDb(options: { max?: number } = {}): Promise<TestDatabase> {
  const created = await createTestDatabase();
  const database = connectDatabase(created.url, { max: options.max ?? 5, applicationName: "dispersal-test" });
  afterAll(async () => {
    await database.close();
    await created.drop();
  });
  return { ...database, name: created.name };
}
