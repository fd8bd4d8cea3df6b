// Every environment variable the service reads, parsed and validated once. Nothing else reads process.env.
import { z } from "zod";

export class ConfigError extends Error {
  readonly code = "CONFIG_INVALID";
  constructor(readonly variable: string, detail: string) {
    super(`Invalid configuration: ${variable} ${detail}`);
    this.name = "ConfigError";
  }
}

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

const opsUser = z
  .string()
  .regex(/^[A-Za-z0-9._@-]+:(viewer|operator):.{12,}$/, "must be name:role:secret (role viewer|operator, secret at least 12 characters)");

export const configSchema = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL")
    .default("postgres://postgres@127.0.0.1:5432/dispersal"),
  DATABASE_POOL_SIZE: positiveInt(10),
  REDIS_URL: z.string().regex(/^rediss?:\/\//, "must be a redis:// or rediss:// URL").default("redis://127.0.0.1:6379"),
  REDIS_CLUSTER_NODES: z
    .string()
    .regex(/^[^,\s]+:\d+(,[^,\s]+:\d+)*$/, "must be host:port[,host:port…]")
    .optional(),
  QUEUE_PREFIX: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z0-9{}_.-]+$/, "may only hold letters, digits and {}_.-")
    .default("{dispersal}"),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  HOST: z.string().min(1).default("127.0.0.1"),
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
        parsed.push({ name: name!, role: role as "viewer" | "operator", secret: secret.join(":") });
      }
      return parsed;
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
  RECONCILIATION_CRON: z.string().min(9).default("0 7 * * *"),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export type Config = z.infer<typeof configSchema>;
export type OpsUser = Config["OPS_USERS"][number];

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
  return value.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@");
}
