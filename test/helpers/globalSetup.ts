// Once per test run: a migrated template database that every test file clones (fast, isolated).
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { MIGRATIONS_FOLDER, migrateDatabase } from "../../src/db/migrate.js";
import { TEST_ADMIN_URL, databaseUrl } from "./env.js";

export function templateName(): string {
  const hash = createHash("sha256");
  for (const file of readdirSync(MIGRATIONS_FOLDER).filter((f) => f.endsWith(".sql")).sort()) {
    hash.update(file).update(readFileSync(join(MIGRATIONS_FOLDER, file)));
  }
  return `dispersal_test_template_${hash.digest("hex").slice(0, 12)}`;
}

export default async function setup(): Promise<void> {
  const name = templateName();
  const admin = postgres(TEST_ADMIN_URL, { max: 1, onnotice: () => {} });
  try {
    const [existing] = await admin`select datistemplate from pg_database where datname = ${name}`;
    if (existing?.datistemplate) return;
    if (existing) await admin.unsafe(`drop database "${name}" with (force)`);
    await migrateDatabase(databaseUrl(name));
    await admin.unsafe(`alter database "${name}" with is_template true allow_connections false`);
  } finally {
    await admin.end();
  }
  process.env.DISPERSAL_TEST_TEMPLATE = name;
}
