import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/faults/**/*.test.ts"],
    globalSetup: ["test/helpers/globalSetup.ts", "test/faults/summary.ts"],
    setupFiles: ["test/helpers/setup.ts"],
    testTimeout: 300_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 1,
    fileParallelism: false,
    // postgres.js (3.4.9) returns the promise of a new connection's array-type query from a sync
    // handler: a connection terminated during that query (the Postgres faults) rejects with nobody
    // listening. Worker processes log it (cli.ts, unhandledRejection) and go on; so do the tests.
    onUnhandledError(error) {
      const query = (error as { query?: unknown }).query;
      if (typeof query === "string" && query.includes("from pg_catalog.pg_type a")) return false;
    },
  },
});
