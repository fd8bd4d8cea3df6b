// The Postgres connection (postgres.js under Drizzle): pool settings, bigint parsing, and the one
// place that tells an outage (InfrastructureError) from a real database error.
import postgres from "postgres";
import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import type { ExtractTablesWithRelations } from "drizzle-orm";
import type { PgTransaction } from "drizzle-orm/pg-core";
import type { PostgresJsQueryResultHKT } from "drizzle-orm/postgres-js";
import * as schema from "./schema.js";
import { InfrastructureError } from "../domain/errors.js";
import { withSpan } from "../telemetry.js";
import { log } from "../log.js";
import { redactUrl } from "../redactUrl.js";

export type Schema = typeof schema;
export type Db = PostgresJsDatabase<Schema>;
export type Tx = PgTransaction<PostgresJsQueryResultHKT, Schema, ExtractTablesWithRelations<Schema>>;
/** Anything that runs queries: the pool or a transaction. Money work takes a Tx. */
export type Executor = Db | Tx;

export interface Database {
  db: Db;
  sql: postgres.Sql<{ bigint: bigint }>;
  url: string;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  max?: number;
  /** Application name shown in pg_stat_activity, so an operator can see who holds a connection. */
  applicationName?: string;
  /** idle_in_transaction_session_timeout of every session: a hung process's open transaction ends and its locks go. */
  idleInTransactionTimeoutMs?: number;
  /** statement_timeout of every session: the readers' pool, whose statements must never run long. */
  statementTimeoutMs?: number;
  /**
   * false behind a pooler in transaction mode (DATABASE_PREPARED_STATEMENTS=off): a statement
   * prepared on one server session would be executed on another, and the session settings above
   * are startup parameters PgBouncer refuses ("unsupported startup parameter"). (Default: true)
   */
  preparedStatements?: boolean;
}

export function connectDatabase(url: string, options: DatabaseOptions = {}): Database {
  const prepared = options.preparedStatements ?? true;
  const sql = postgres(url, {
    max: options.max ?? 10,
    types: { bigint: postgres.BigInt },
    connect_timeout: 10,
    idle_timeout: 60,
    max_lifetime: 60 * 30,
    onnotice: logNotice,
    prepare: prepared,
    connection: {
      // PgBouncer keeps application_name per client itself; it is the one setting that passes it.
      application_name: options.applicationName ?? "dispersal-healing",
      ...(prepared ? sessionSettings(options) : {}),
    },
  }) as unknown as postgres.Sql<{ bigint: bigint }>;
  const client = withTransactionsThatSurviveLostConnections(sql);
  const db = drizzle(prepared ? withPreparedStatements(client) : client, { schema });
  return { db, sql, url, close: () => sql.end({ timeout: 5 }) };
}

/** Settings of a session of our own; behind a transaction pooler they belong on the role (docs/scaling.md). */
function sessionSettings(options: DatabaseOptions): Record<string, string | number> {
  return {
    // Our statements touch a few rows each through indexes; when the planner misjudges a big
    // table (a million orphans, statistics not yet refreshed) its cost passes jit_above_cost and
    // Postgres spends ~350 ms compiling a statement that runs in 2 ms (seen in the flood benchmark:
    // healing fell from ~1,900/s to ~670/s). The daily reconciliation's scans do not need it either.
    jit: "off",
    ...(options.idleInTransactionTimeoutMs ? { idle_in_transaction_session_timeout: options.idleInTransactionTimeoutMs } : {}),
    ...(options.statementTimeoutMs ? { statement_timeout: options.statementTimeoutMs } : {}),
  };
}

/**
 * Postgres's notices. Warning 25001 ("there is already a transaction in progress") means a BEGIN
 * reached a connection that was already inside a transaction: two requests' statements mixed in one
 * transaction (the postgres.js defect patched in patches/, upstream #823/#1189). For a ledger that is
 * an error an operator must see, never a notice to hide. The rest (migrations' "already exists,
 * skipping") are debug.
 */
export function logNotice(notice: postgres.Notice): void {
  const fields = { code: notice.code, severity: notice.severity, message: notice.message };
  if (notice.code === "25001") log.error(fields, "Postgres warning 25001: a BEGIN inside a transaction; two requests' statements may have mixed");
  else log.debug(fields, "Postgres notice");
}

/** The SQLSTATE of a Postgres error, through the wrappers (Drizzle's "Failed query" keeps it as its cause). */
export function postgresErrorCode(error: unknown): string | undefined {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown; severity?: unknown }).code;
    if (typeof code === "string" && (e as { severity?: unknown }).severity !== undefined) return code;
  }
  return undefined;
}

/** Errors after which the connection is gone (and the server has rolled back its transaction). */
const LOST_CONNECTION_CODES = new Set(["CONNECTION_CLOSED", "CONNECTION_ENDED", "CONNECTION_DESTROYED", "ECONNRESET", "EPIPE", "ETIMEDOUT"]);

function connectionLost(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && (LOST_CONNECTION_CODES.has(code) || code.startsWith("08") || /^57P0[123]$/.test(code))) return true;
  }
  return false;
}

/**
 * postgres.js (3.4.9) answers a failed transaction with ROLLBACK on the same connection even when
 * that connection has just closed; the deferred write then dereferences the closed socket inside a
 * setImmediate, an uncaught TypeError that takes the whole process down (porsager/postgres#1154,
 * #1208; found by the fault suite: pg_terminate_backend under the workers). So when a transaction
 * fails because its connection is gone, its callback does not reject (which would send that
 * ROLLBACK): it stays pending, and begin() rejects on its own with CONNECTION_CLOSED as soon as the
 * driver reports the close. The server has rolled the transaction back already. If the connection
 * were somehow still open after a while, the callback rejects after all and the ROLLBACK goes out.
 */
function withTransactionsThatSurviveLostConnections(sql: postgres.Sql<{ bigint: bigint }>): postgres.Sql<{ bigint: bigint }> {
  const driverBegin = sql.begin.bind(sql) as (...args: unknown[]) => Promise<unknown>;
  async function begin(...args: unknown[]): Promise<unknown> {
    const at = typeof args[0] === "function" ? 0 : 1;
    const body = args[at] as (tx: unknown) => unknown;
    let ended = false;
    const guarded = async (tx: unknown) => {
      try {
        return await body(tx);
      } catch (error) {
        if (!connectionLost(error)) throw error;
        return new Promise((_resolve, reject) => setTimeout(() => ended || reject(error), 10_000).unref());
      }
    };
    try {
      return await withSpan("postgres transaction", { "db.system": "postgresql" }, () => driverBegin(...args.slice(0, at), guarded));
    } finally {
      ended = true;
    }
  }
  return new Proxy(sql, { get: (target, property, receiver) => (property === "begin" ? begin : Reflect.get(target, property, receiver)) });
}

type Client = postgres.Sql<{ bigint: bigint }>;

/**
 * Drizzle sends every raw statement (db.execute, all of our SQL) unprepared, so Postgres parses,
 * analyses and plans it again on every call and postgres.js describes its result again: half the
 * database's CPU per dispersal (3.1 → 1.6 ms on the bench machine; see docs/performance.md). This hands
 * drizzle the same client with statements that carry parameters prepared once per connection —
 * what postgres.js does by default for its own tagged queries. Statements without parameters
 * (BEGIN, SET LOCAL …) stay simple queries.
 */
function withPreparedStatements(sql: Client): Client {
  return new Proxy(sql, {
    get(target, property, receiver) {
      if (property === "unsafe") {
        return (query: string, args?: unknown[], options?: Record<string, unknown>) =>
          target.unsafe(query, args as never, { ...options, prepare: Array.isArray(args) && args.length > 0 });
      }
      if (property === "begin" || property === "savepoint") {
        const open = Reflect.get(target, property, receiver) as (...args: unknown[]) => Promise<unknown>;
        return (...args: unknown[]) => {
          const body = args.pop() as (tx: Client) => unknown;
          return open(...args, (tx: Client) => body(withPreparedStatements(tx)));
        };
      }
      return Reflect.get(target, property, receiver);
    },
  });
}

/**
 * SQLSTATE classes and client codes that mean "the database is not there right now", not "this data
 * is wrong". 25006 (read-only transaction): during a failover a connection can reach a server that
 * is not (or no longer) the writable primary — pg_auto_failover's promoted node stays read-only
 * until it is ready; the job waits for the primary instead of using an attempt.
 */
const OUTAGE_SQLSTATES = ["08", "57P01", "57P02", "57P03", "53300", "40001", "40P01", "55P03", "25006"];
const OUTAGE_CLIENT_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
]);

export function isOutage(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof InfrastructureError) return true;
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") {
      if (OUTAGE_CLIENT_CODES.has(code)) return true;
      if (OUTAGE_SQLSTATES.some((prefix) => code.startsWith(prefix))) return true;
    }
    if (e instanceof AggregateError && e.errors.some(isOutage)) return true;
  }
  return false;
}

/** Postgres cancelled the statement (57014): a reader's statement_timeout, or an operator's pg_cancel_backend. */
export function isStatementCancelled(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === "57014") return true;
  }
  return false;
}

/** Rethrows an outage as InfrastructureError (keeping the cause); anything else unchanged. */
export function classifyDatabaseError(error: unknown, url?: string): unknown {
  if (error instanceof InfrastructureError || !isOutage(error)) return error;
  const where = url ? ` at ${redactUrl(url)}` : "";
  return new InfrastructureError(`Postgres${where} is unavailable: ${(error as Error).message}`, { cause: error });
}

