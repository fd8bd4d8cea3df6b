// Every environment variable the service reads, parsed and validated once. Nothing else reads process.env.
import { isIP } from "node:net";
import { CronExpressionParser } from "cron-parser";
import { z } from "zod";
import { currencyProblem } from "./domain/money.js";
import { redactUrl } from "./redactUrl.js";

export class ConfigError extends Error {
  readonly code = "CONFIG_INVALID";
  constructor(readonly variable: string, detail: string) {
    super(`Invalid configuration: ${variable} ${detail}`);
    this.name = "ConfigError";
  }
}

const POSITIVE_INT = "must be a positive whole number";
const positiveInt = (fallback: number) => z.coerce.number({ error: POSITIVE_INT }).int(POSITIVE_INT).positive(POSITIVE_INT).default(fallback);

const CRON = 'must be a cron expression of 5 fields, minute hour day-of-month month day-of-week, in UTC (e.g. "0 7 * * *")';
/** The parser BullMQ's job schedulers use, so that what passes here is what BullMQ accepts at start-up. */
function isCronExpression(value: string): boolean {
  if (value.trim().split(/\s+/).length !== 5) return false;
  try {
    CronExpressionParser.parse(value, { tz: "UTC" });
    return true;
  } catch {
    return false;
  }
}

const opsUser = z
  .string()
  .regex(/^[A-Za-z0-9._@-]+:(viewer|operator|service):.{12,}$/, "must be name:role:secret (role viewer|operator|service, secret at least 12 characters)");

export const configSchema = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL")
    .default("postgres://postgres@127.0.0.1:5432/dispersal"),
  /**
   * A direct session with Postgres (never through a transaction pooler): the settlement listener's
   * LISTEN, the migrations' session advisory lock, and the readers' pool. (Default: DATABASE_URL)
   */
  DATABASE_DIRECT_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL")
    .optional(),
  /**
   * off when DATABASE_URL goes through a pooler in transaction mode (PgBouncer): statements are sent
   * unprepared, and no session setting rides on the connection (a pooler hands the server session to
   * someone else after each transaction). (Default: on)
   */
  DATABASE_PREPARED_STATEMENTS: z.enum(["on", "off"], { error: "must be on or off" }).default("on"),
  DATABASE_POOL_SIZE: positiveInt(10),
  /** Connections of the readers' own pool (search, the ops pages), apart from the writers'. (Default: 2) */
  READER_POOL_SIZE: positiveInt(2),
  /** Postgres cancels a reader's statement (search, the ops pages) that runs longer than this. (Default: 2,000) */
  READER_STATEMENT_TIMEOUT_MS: positiveInt(2_000),
  /** Searches one user may run per minute (each server process counts on its own). (Default: 30) */
  SEARCHES_PER_USER_PER_MINUTE: positiveInt(30),
  /**
   * Postgres ends a session that sits inside a transaction doing nothing this long (a frozen or
   * half-dead process), releasing its row locks: otherwise they block every other dispersal of the
   * same mortgage for as long as the process hangs. (Default: 60,000)
   */
  DATABASE_IDLE_TRANSACTION_TIMEOUT_MS: positiveInt(60_000),
  REDIS_URL: z.string().regex(/^rediss?:\/\//, "must be a redis:// or rediss:// URL").default("redis://127.0.0.1:6379"),
  REDIS_CLUSTER_NODES: z
    .string()
    .regex(/^[^,\s]+:\d+(,[^,\s]+:\d+)*$/, "must be host:port[,host:port…]")
    .optional(),
  /**
   * How long Redis may take over the queue work a request waits on (a requeue's or an approval's
   * job); past it, or at once while Redis is unreachable, the request is answered 503 and changes
   * nothing. (Default: 5,000)
   */
  REDIS_COMMAND_TIMEOUT_MS: positiveInt(5_000),
  QUEUE_PREFIX: z
    .string()
    .max(64, "must be at most 64 characters")
    .regex(/^[A-Za-z0-9{}_.-]+$/, "may only hold letters, digits and {}_.-")
    .default("{dispersal}"),
  PORT: z.coerce.number({ error: "must be a port number from 0 to 65535" }).int("must be a port number from 0 to 65535").min(0, "must be a port number from 0 to 65535").max(65535, "must be a port number from 0 to 65535").default(3000),
  /**
   * Where a `worker` process serves its own /metrics (and /healthz); `start` and `server` serve
   * them on PORT. Unset: no metrics server, so that workers side by side on one host need no port
   * each. (Default: off)
   */
  METRICS_PORT: z.coerce.number({ error: "must be a port number from 0 to 65535" }).int("must be a port number from 0 to 65535").min(0, "must be a port number from 0 to 65535").max(65535, "must be a port number from 0 to 65535").optional(),
  HOST: z.string().min(1, "must be an address to listen on (e.g. 127.0.0.1, 0.0.0.0, ::)").default("127.0.0.1"),
  OPS_USERS: z
    .string()
    .default("")
    .transform((value, ctx) => {
      const users = value.split(",").map((s) => s.trim()).filter(Boolean);
      const parsed = [];
      for (const entry of users) {
        const check = opsUser.safeParse(entry);
        if (!check.success) {
          ctx.addIssue({ code: "custom", message: `entry "${entry.split(":")[0]}…" ${check.error.issues[0]?.message}` });
          return z.NEVER;
        }
        const [name, role, ...secret] = entry.split(":");
        parsed.push({ name: name!, role: role as "viewer" | "operator" | "service", secret: secret.join(":") });
      }
      const clash = sharedIdentity(parsed);
      if (clash) {
        ctx.addIssue({ code: "custom", message: clash });
        return z.NEVER;
      }
      return parsed;
    }),
  /**
   * Who may act from the CLI: `osuser:name,…`, each OS user (the account running `dispersal`) mapped
   * to an OPS_USERS name; `requeue` acts as the mapped operator, `pay` and `return-payment` as the
   * mapped service account, and anything else is refused. (Default: empty: nobody requeues or pays from the CLI)
   */
  OPS_CLI_USERS: z
    .string()
    .default("")
    .transform((value, ctx) => {
      const mappings = [];
      for (const entry of value.split(",").map((s) => s.trim()).filter(Boolean)) {
        const match = /^([A-Za-z0-9._$-]{1,64}):([A-Za-z0-9._@-]{1,100})$/.exec(entry);
        if (!match) {
          ctx.addIssue({ code: "custom", message: `entry "${entry}" must be osuser:name (an OS user name, then an OPS_USERS name)` });
          return z.NEVER;
        }
        mappings.push({ osUser: match[1]!, name: match[2]! });
      }
      return mappings;
    }),
  WORKER_CONCURRENCY: positiveInt(200),
  WORKER_LOCK_DURATION_MS: positiveInt(30_000),
  WORKER_STALLED_INTERVAL_MS: positiveInt(30_000),
  SHUTDOWN_TIMEOUT_MS: positiveInt(30_000),
  HEALING_SCAN_EVERY_MS: positiveInt(15 * 60 * 1000),
  HEALING_BACKOFF_MS: positiveInt(60_000),
  HEALING_ATTEMPTS: positiveInt(3),
  HEALING_SCAN_PAGE_SIZE: positiveInt(1000),
  /** Retrigger jobs Redis may hold at once (waiting, delayed, prioritised, active); the scan stops paging here. (Default: 20,000) */
  HEALING_MAX_BACKLOG: positiveInt(20_000),
  /** Obligations one worker process disperses in one transaction (its concurrently active jobs). 1: no batching. (Default: 100) */
  HEALING_BATCH_SIZE: positiveInt(100),
  INFRA_RETRY_DELAY_MS: positiveInt(5_000),
  /** Whether worker and start processes LISTEN for settlements (the fast path). (Default: on) */
  SETTLEMENT_LISTENER: z.enum(["on", "off"], { error: "must be on or off" }).default("on"),
  /** First delay before the settlement listener reconnects; doubles up to 30 s. (Default: 1,000) */
  SETTLEMENT_LISTENER_RECONNECT_MS: positiveInt(1_000),
  /** The daily reconciliation (incremental: what changed since the previous completed run). (Default: 07:00 UTC daily) */
  RECONCILIATION_CRON: z.string().refine(isCronExpression, CRON).default("0 7 * * *"),
  /** The weekly full sweep of every obligation and account. (Default: 07:30 UTC on Sundays) */
  RECONCILIATION_FULL_CRON: z.string().refine(isCronExpression, CRON).default("30 7 * * 0"),
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url({ error: "must be an http(s) URL" }).regex(/^https?:\/\//, "must be an http(s) URL").optional(),
  /** The standard OTLP protocol setting: this service exports OTLP/HTTP with JSON bodies, so only http/json. (Default: http/json) */
  OTEL_EXPORTER_OTLP_PROTOCOL: z.enum(["http/json"], { error: "must be http/json (the service exports OTLP/HTTP JSON; grpc and http/protobuf are not built in)" }).default("http/json"),
  /** service.name on every span (the OpenTelemetry standard variable). (Default: dispersal-healing) */
  OTEL_SERVICE_NAME: z.string().trim().min(1, "must be a service name").optional(),
  /** More resource attributes on every span: key=value,key2=value2 (values percent-encoded), as OpenTelemetry specifies. (Default: none) */
  OTEL_RESOURCE_ATTRIBUTES: z
    .string()
    .optional()
    .transform((value, ctx) => {
      if (value === undefined) return undefined;
      const attributes = parseResourceAttributes(value);
      if (!attributes) {
        ctx.addIssue({ code: "custom", message: "must be key=value pairs separated by commas (values percent-encoded), e.g. deployment.environment=prod,team=ops" });
        return z.NEVER;
      }
      return attributes;
    }),
  /**
   * The four-eyes policy's first value only: a service process (start, server, worker, migrate)
   * writes it to ops_policy when the table has no row; from then on `dispersal policy set` decides
   * and no environment overrides it. 1, or 2 (a second operator approves). (Default: 1)
   */
  REQUEUE_APPROVALS: z.enum(["1", "2"], { error: "must be 1 or 2" }).default("1").transform((v) => Number(v) as 1 | 2),
  /**
   * How long a requeue request waits for its second operator (four eyes) before it expires and can
   * no longer be approved: a duration, `<n>s`, `<n>m`, `<n>h` or `<n>d`, 1 minute to 30 days; parsed
   * into seconds. (Default: 24h)
   */
  REQUEUE_APPROVAL_TTL: z
    .string()
    .default("24h")
    .transform((value, ctx) => {
      const seconds = parseDurationSeconds(value);
      if (seconds === undefined || seconds < 60 || seconds > 30 * 86_400) {
        ctx.addIssue({ code: "custom", message: "must be a duration from 1 minute to 30 days: <n>s, <n>m, <n>h or <n>d (e.g. 24h, 90m)" });
        return z.NEVER;
      }
      return seconds;
    }),
  /** How often every process checks the scan and reconciliation schedules and puts back a missing one. (Default: 30 s) */
  SCHEDULE_CHECK_EVERY_MS: positiveInt(30_000),
  /** Which proxies' X-Forwarded-* headers to believe (express "trust proxy"). (Default: none) */
  TRUST_PROXY: z
    .string()
    .default("")
    .transform((value, ctx) => {
      const trusted = parseTrustProxy(value);
      if (trusted === undefined) {
        ctx.addIssue({ code: "custom", message: "must be a number of hops, or a comma list of addresses, subnets, loopback, linklocal, uniquelocal (not true: that would believe any client)" });
        return z.NEVER;
      }
      return trusted;
    }),
  /** Failed sign-ins one client address may make per window before 429. (Default: 10) */
  SIGN_IN_FAILURES_PER_ADDRESS: positiveInt(10),
  /** Failed sign-ins for one user name, from any address, per window before that name is throttled. (Default: 5) */
  SIGN_IN_FAILURES_PER_USER: positiveInt(5),
  /** The sign-in throttling window, and how long a throttled client waits. (Default: 900 s) */
  SIGN_IN_WINDOW_SECONDS: positiveInt(900),
  /** The ISO 4217 currency of every amount (cents are its hundredths): how pages and CSV show money; the JSON API keeps raw cents. (Default: USD) */
  CURRENCY: z
    .string()
    .default("USD")
    .superRefine((value, ctx) => {
      const problem = currencyProblem(value);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    }),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"], { error: "must be one of fatal, error, warn, info, debug, trace, silent" }).default("info"),
});

export type Config = z.infer<typeof configSchema>;

/** The URL of a direct session with Postgres (LISTEN, session advisory locks, the readers). */
export function directDatabaseUrl(config: Pick<Config, "DATABASE_URL" | "DATABASE_DIRECT_URL">): string {
  return config.DATABASE_DIRECT_URL ?? config.DATABASE_URL;
}

/** OTEL_RESOURCE_ATTRIBUTES as the OpenTelemetry SDK specification has it; undefined when malformed. */
function parseResourceAttributes(value: string): Record<string, string> | undefined {
  const attributes: Record<string, string> = {};
  for (const pair of value.split(",").map((p) => p.trim()).filter(Boolean)) {
    const eq = pair.indexOf("=");
    if (eq <= 0) return undefined;
    const key = pair.slice(0, eq).trim();
    if (!/^[\x21-\x7e]+$/.test(key)) return undefined;
    try {
      attributes[key] = decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      return undefined;
    }
  }
  return attributes;
}

const DURATION_UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86_400 } as const;

function parseDurationSeconds(value: string): number | undefined {
  const match = /^(\d{1,7})(s|m|h|d)$/.exec(value.trim());
  if (!match) return undefined;
  return Number(match[1]) * DURATION_UNIT_SECONDS[match[2] as keyof typeof DURATION_UNIT_SECONDS];
}

/** false (trust nobody), a hop count, or the list express hands to proxy-addr; undefined when invalid. */
function parseTrustProxy(value: string): false | number | string[] | undefined {
  const trimmed = value.trim();
  if (trimmed === "" || trimmed === "false") return false;
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const items = trimmed.split(",").map((s) => s.trim()).filter(Boolean);
  const valid = items.every((item) => {
    if (["loopback", "linklocal", "uniquelocal"].includes(item)) return true;
    const [address, prefix, ...rest] = item.split("/");
    if (rest.length > 0 || !address || isIP(address) === 0) return false;
    return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (isIP(address) === 4 ? 32 : 128));
  });
  return valid && items.length > 0 ? items : undefined;
}
export type OpsUser = Config["OPS_USERS"][number];

/**
 * Four eyes counts people, not entries: one secret under two names, or "Olga" beside "olga", would
 * let one person approve their own requeue. Names the entries, never the secret.
 */
function sharedIdentity(users: readonly { name: string; secret: string }[]): string | undefined {
  for (const [i, user] of users.entries()) {
    for (const other of users.slice(i + 1)) {
      if (other.secret === user.secret) return `entries "${user.name}" and "${other.name}" share a secret: every user needs their own`;
      if (other.name.toLowerCase() === user.name.toLowerCase()) return `entries "${user.name}" and "${other.name}" are one name (names are compared ignoring case)`;
    }
  }
  return undefined;
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const present = Object.fromEntries(
    Object.keys(configSchema.shape).flatMap((key) => (env[key] === undefined || env[key] === "" ? [] : [[key, env[key]]])),
  );
  const result = configSchema.safeParse(present);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const variable = String(issue.path[0] ?? "environment");
    throw new ConfigError(variable, `${issue.message} (got ${JSON.stringify(redact(variable, present[variable]))})`);
  }
  return result.data;
}

function redact(variable: string, value: unknown): unknown {
  if (typeof value !== "string") return value;
  if (variable === "OPS_USERS") return "<redacted>";
  return redactUrl(value);
}
