// `dispersal <command>`: parses arguments (commander) and calls the modules that do the work.
import { Command, InvalidArgumentError } from "commander";
import { userInfo } from "node:os";
import { z } from "zod";
import { cliActor, CliActorRefusedError } from "./cliActor.js";
import { ConfigError, directDatabaseUrl, loadConfig, type Config } from "./config.js";
import { DomainError, InfrastructureError } from "./domain/errors.js";
import { EscalationCountMismatchError, SelectionTooLargeError } from "./domain/requeueErrors.js";
import { normaliseId } from "./domain/ids.js";
import { connectDatabase } from "./db/client.js";
import { selectEscalations, type EscalationSelection } from "./db/escalationGroups.js";
import { listEscalations } from "./db/healing.js";
import { receivePayment, returnPayment } from "./db/payments.js";
import { idSchema } from "./domain/ids.js";
import { paymentAmountSchema, paymentReferenceSchema } from "./domain/paymentInput.js";
import { migrateDatabase, unreachable } from "./db/migrate.js";
import { seedDemo, seedObligations } from "./db/seed.js";
import { startHttpServer } from "./dashboard/app.js";
import { registerWorkerMetrics, startMetricsServer } from "./dashboard/workerMetrics.js";
import { reconcileLedger } from "./jobs/reconcile.js";
import { requestRequeue } from "./jobs/requeue.js";
import { readRequeuePolicy, setRequeuePolicy } from "./db/requeueRequests.js";
import { requeueReasonSchema } from "./domain/requeueReason.js";
import { scanAndWait } from "./jobs/scanAndWait.js";
import { scanForOrphans } from "./jobs/scan.js";
import { startSettlementListener, type SettlementListener } from "./jobs/settlementListener.js";
import { startWorkers } from "./jobs/worker.js";
import { log } from "./log.js";
import { keepSchedules } from "./queues/schedulers.js";
import { keepRequeuePolicy, openRuntime, type Runtime } from "./runtime.js";
import { NoOpenObligationsError, runSimulation } from "./settlementSimulation.js";

// Bad input is one line (commander's "error: …"); `dispersal <command> --help` shows the usage.
const program = new Command("dispersal").description("Self-healing dispersal of settled mortgage obligations");

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("must be a positive integer");
  return n;
}

/** Collects variadic ids: any 8-4-4-4-12 hexadecimal id (as Postgres's uuid holds it), lower-cased. */
function obligationIds(value: string, previous: string[] = []): string[] {
  const id = normaliseId(value);
  if (!id) throw new InvalidArgumentError("must be a UUID (8-4-4-4-12 hexadecimal)");
  return [...previous, id];
}

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2)}\n`);
}

/**
 * Catches SIGTERM/SIGINT from the start of a long-running command, so that a signal that comes while
 * it is still starting (a supervisor stopping it at once, a deploy rolling back) is not the default
 * "die at once" of a process with no handler yet: it is acted on as soon as the command reaches
 * `until`. `until` runs until the signal, then closes `stop` in order; a second signal exits at once.
 * A close that outlives the timeout (say, Redis unreachable) is abandoned: the process exits and its
 * active jobs stall and are taken over by the other workers, which is safe because dispersal is idempotent.
 */
function catchStopSignals(): { until(stop: Array<() => Promise<void>>, timeoutMs: number): Promise<void> } {
  let received: NodeJS.Signals | undefined;
  let act: ((signal: NodeJS.Signals) => void) | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (received) process.exit(130);
    received = signal;
    act?.(signal);
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  return {
    until: (stop, timeoutMs) =>
      new Promise((resolve) => {
        act = async (signal: NodeJS.Signals) => {
          log.info({ signal }, "shutting down: finishing active jobs");
          const timer = setTimeout(() => {
            log.error({ timeoutMs }, "graceful shutdown timed out: exiting");
            process.exit(1);
          }, timeoutMs);
          timer.unref(); // left running through the connections' close; it never holds the process open
          for (const close of stop) {
            await close().catch((error: Error) => log.error({ error: error.message }, "error during shutdown"));
          }
          log.info("stopped");
          resolve();
        };
        if (received) act(received);
      }),
  };
}

/** The fast path, in every worker and start process unless SETTLEMENT_LISTENER=off. */
function listenForSettlements(ctx: Runtime["ctx"], config: Config): SettlementListener | undefined {
  if (config.SETTLEMENT_LISTENER === "off") return undefined;
  return startSettlementListener(ctx, { databaseUrl: directDatabaseUrl(config), reconnectMs: config.SETTLEMENT_LISTENER_RECONNECT_MS });
}

async function withRuntime<T>(options: { migrate?: boolean; name: string }, body: (runtime: Runtime) => Promise<T>): Promise<T> {
  const runtime = await openRuntime(options);
  try {
    return await body(runtime);
  } finally {
    await runtime.close();
  }
}

program
  .command("migrate")
  .description("create the database if missing and apply the migrations")
  .action(async () => {
    const config = loadConfig();
    await migrateDatabase(directDatabaseUrl(config));
    const database = connectDatabase(config.DATABASE_URL, { max: 1, applicationName: "dispersal-migrate", preparedStatements: config.DATABASE_PREPARED_STATEMENTS === "on" });
    try {
      await keepRequeuePolicy(database.db, config);
    } finally {
      await database.close();
    }
    print({ migrated: true });
  });

const policy = program.command("policy").description("the four-eyes policy, kept in Postgres (ops_policy) for every process");

policy
  .command("show")
  .description("print the approvals a requeue needs, who set them and when")
  .action(async () => {
    const config = loadConfig();
    log.level = config.LOG_LEVEL;
    const database = connectDatabase(config.DATABASE_URL, { max: 1, applicationName: "dispersal-policy" });
    try {
      const current = await readRequeuePolicy(database.db, config.REQUEUE_APPROVALS);
      print({ ...current, source: current.setBy === null ? "REQUEUE_APPROVALS (ops_policy has no row yet)" : "ops_policy" });
    } catch (error) {
      throw unreachable(config.DATABASE_URL, error);
    } finally {
      await database.close();
    }
  });

policy
  .command("set")
  .description("set the approvals a requeue needs (audited ops.policy_set, in your OS user's name); every path reads it at once")
  .requiredOption("--requeue-approvals <n>", "1: a requeue is carried out at once; 2: four eyes, a different operator approves", (value: string) => {
    if (value !== "1" && value !== "2") throw new InvalidArgumentError("must be 1 or 2");
    return Number(value) as 1 | 2;
  })
  .action(async (opts: { requeueApprovals: 1 | 2 }) => {
    const config = loadConfig();
    log.level = config.LOG_LEVEL;
    const osUser = userInfo().username;
    const database = connectDatabase(config.DATABASE_URL, { max: 1, applicationName: "dispersal-policy" });
    try {
      print(await database.db.transaction((tx) => setRequeuePolicy(tx, opts.requeueApprovals, osUser, { channel: "cli", osUser })));
    } catch (error) {
      throw unreachable(config.DATABASE_URL, error);
    } finally {
      await database.close();
    }
  });

program
  .command("start")
  .description("one process doing everything: migrations, schedules, workers, HTTP")
  .option("--concurrency <n>", "retrigger jobs processed at once (default WORKER_CONCURRENCY)", positiveInt)
  .action(async (opts: { concurrency?: number }) => {
    const signals = catchStopSignals();
    await withRuntime({ migrate: true, name: "dispersal-start" }, async ({ ctx, config }) => {
      // The port first: a process that cannot serve exits before it holds any work (PortInUseError).
      const http = await startHttpServer(ctx, config);
      const schedules = await keepSchedules(ctx.queues, config, log);
      const workers = startWorkers(ctx, opts);
      registerWorkerMetrics(http.metricsRegistry, workers);
      const listener = listenForSettlements(ctx, config);
      log.info({ url: http.url }, "dispersal-healing started");
      // The listener stops first: what it holds goes to Redis while the workers still run.
      await signals.until([() => schedules.stop(), () => http.close(), async () => listener?.stop(), () => workers.close()], config.SHUTDOWN_TIMEOUT_MS);
    });
  });

program
  .command("worker")
  .description("a worker process (run as many side by side as you like)")
  .option("--concurrency <n>", "retrigger jobs processed at once (default WORKER_CONCURRENCY)", positiveInt)
  .action(async (opts: { concurrency?: number }) => {
    const signals = catchStopSignals();
    await withRuntime({ migrate: true, name: "dispersal-worker" }, async ({ ctx, config }) => {
      // The port first, as `start` does: a worker that cannot serve its metrics exits before it holds any work.
      const metrics = config.METRICS_PORT === undefined ? undefined : await startMetricsServer(ctx, { ...config, METRICS_PORT: config.METRICS_PORT });
      const schedules = await keepSchedules(ctx.queues, config, log);
      const workers = startWorkers(ctx, opts);
      if (metrics) registerWorkerMetrics(metrics.registry, workers);
      const listener = listenForSettlements(ctx, config);
      await signals.until([() => schedules.stop(), async () => listener?.stop(), () => workers.close(), async () => metrics?.close()], config.SHUTDOWN_TIMEOUT_MS);
    });
  });

program
  .command("server")
  .description("the HTTP server: Bull Board, ops API and page, health, metrics")
  .action(async () => {
    const signals = catchStopSignals();
    await withRuntime({ migrate: true, name: "dispersal-server" }, async ({ ctx, config }) => {
      const http = await startHttpServer(ctx, config);
      const schedules = await keepSchedules(ctx.queues, config, log);
      log.info({ url: http.url }, "dispersal-healing server started");
      await signals.until([() => schedules.stop(), () => http.close()], config.SHUTDOWN_TIMEOUT_MS);
    });
  });

program
  .command("scan")
  .description("scan for orphans now and enqueue them")
  .option("--wait", "run a local worker and wait until every enqueued job ended; print a summary")
  .option("--timeout <seconds>", "give up waiting after this long", positiveInt, 3600)
  .action(async (opts: { wait?: boolean; timeout: number }) => {
    await withRuntime({ name: "dispersal-scan" }, async ({ ctx }) => {
      if (!opts.wait) {
        print(await scanForOrphans(ctx, "cli"));
        return;
      }
      const workers = startWorkers(ctx);
      try {
        const summary = await scanAndWait(ctx, { timeoutMs: opts.timeout * 1000 });
        print(summary);
        if (summary.unfinished > 0) process.exitCode = 3;
      } finally {
        await workers.close();
      }
    });
  });

program
  .command("escalations")
  .description("list open escalations, newest first")
  .option("--status <status>", "healing status to list (escalated, requeued, retrying, resolved)", "escalated")
  .option("--limit <n>", "at most this many", positiveInt, 100)
  .action(async (opts: { status: string; limit: number }) => {
    if (!["escalated", "requeued", "retrying", "resolved"].includes(opts.status)) {
      throw new InvalidArgumentError(`--status must be escalated, requeued, retrying or resolved, not ${opts.status}`);
    }
    await withRuntime({ name: "dispersal-cli" }, async ({ ctx }) => {
      print(await listEscalations(ctx.database.db, { status: opts.status as "escalated", limit: opts.limit }));
    });
  });

/**
 * The CLI acts as the operator its OS user is mapped to (OPS_CLI_USERS, cliActor.ts): an --actor
 * that is not that name is refused, and the OS user is recorded beside it. The four-eyes policy is
 * Postgres's (ops_policy), read in each requeue's transaction: at 2 the request waits for a
 * different operator's approval (ops page or API), whatever REQUEUE_APPROVALS this process has.
 * By filter (--mortgage, --error, --escalated-before) it acts only when the filter matches exactly
 * --expect escalations, as POST /api/escalations/requeue does.
 */
program
  .command("requeue")
  .description("requeue escalated obligations for a new round of attempts, by id or by filter (with the four-eyes policy at 2: ask, and wait for approval)")
  .argument("[obligationId...]", "one or more obligation ids (or select by filter instead)", obligationIds)
  .requiredOption("--reason <text>", "why a new round will succeed (recorded in the audit log)")
  .option("--actor <name>", "the operator you act as: one OPS_CLI_USERS maps your OS user to (needed only when it maps several)")
  .option("--mortgage <id>", "filter: the escalations of this mortgage")
  .option("--error <text>", "filter: this normalised last error, exactly as GET /api/escalations/groups gives it")
  .option("--escalated-before <time>", "filter: escalated before this ISO time")
  .option("--expect <n>", "with a filter: the number of escalations it must match, or nothing is requeued", nonNegativeInt)
  .option("--dry-run", "with a filter: print what it matches and change nothing")
  .action(async (obligationIds: string[], opts: { reason: string; actor?: string; mortgage?: string; error?: string; escalatedBefore?: string; expect?: number; dryRun?: boolean }) => {
    const reason = requeueReasonSchema.safeParse(opts.reason);
    if (!reason.success) throw new InvalidArgumentError(`--reason: ${reason.error.issues[0]?.message}`);
    const filter = selectionOfOptions(opts);
    if (filter && obligationIds.length > 0) throw new InvalidArgumentError("give obligation ids or a filter (--mortgage, --error, --escalated-before), not both");
    if (!filter && obligationIds.length === 0) throw new InvalidArgumentError("give one or more obligation ids, or a filter (--mortgage, --error, --escalated-before) with --expect");
    if (filter && opts.expect === undefined && !opts.dryRun) throw new InvalidArgumentError("--expect <n> is required with a filter (--dry-run prints the count it matches)");
    const { name: actor, osUser } = cliActor(loadConfig(), userInfo().username, "operator", opts.actor?.trim());
    await withRuntime({ name: "dispersal-cli" }, async ({ ctx }) => {
      let ids = obligationIds;
      let metadata: Record<string, unknown> = { osUser };
      if (filter) {
        try {
          const selected = await selectEscalations(ctx.database.db, filter, opts.expect === undefined ? {} : { expectedCount: opts.expect });
          if (opts.dryRun) return print({ dryRun: true, filter, matched: selected.length, obligations: selected });
          ids = selected.map((s) => s.obligationId);
          metadata = { ...metadata, selection: { filter, expectedCount: opts.expect } };
        } catch (error) {
          if (!(error instanceof EscalationCountMismatchError || error instanceof SelectionTooLargeError)) throw error;
          process.stderr.write(`dispersal: ${error.message}\n`);
          process.exitCode = 1;
          return;
        }
      }
      const results = [];
      for (const id of ids) {
        try {
          const result = await requestRequeue(ctx, id, { actor, channel: "cli", reason: reason.data, metadata });
          results.push({ ...result, requeued: result.status === "requeued" });
        } catch (error) {
          if (!(error instanceof DomainError)) throw error;
          results.push({ obligationId: id, requeued: false, code: error.code, error: error.message });
          process.exitCode = 1;
        }
      }
      print(results);
    });
  });

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new InvalidArgumentError("must be a whole number (0 or more)");
  return n;
}

function selectionOfOptions(opts: { mortgage?: string; error?: string; escalatedBefore?: string }): EscalationSelection | undefined {
  if (opts.mortgage === undefined && opts.error === undefined && opts.escalatedBefore === undefined) return undefined;
  const selection: EscalationSelection = {};
  if (opts.mortgage !== undefined) selection.mortgageId = cliArgument(idSchema, opts.mortgage, "--mortgage");
  if (opts.error !== undefined) selection.error = opts.error;
  if (opts.escalatedBefore !== undefined) {
    const at = new Date(opts.escalatedBefore);
    if (!/^\d{4}-\d{2}-\d{2}/.test(opts.escalatedBefore) || Number.isNaN(at.getTime())) throw new InvalidArgumentError("--escalated-before must be an ISO time, e.g. 2026-12-01T00:00:00Z");
    selection.escalatedBefore = at.toISOString();
  }
  return selection;
}

program
  .command("reconcile")
  .description("run the daily reconciliation now (what changed since the last completed run); exits 2 when it finds defects")
  .option("--full", "check every obligation and account (the weekly sweep), not only what changed")
  .action(async (opts: { full?: boolean }) => {
    await withRuntime({ name: "dispersal-cli" }, async ({ ctx }) => {
      const report = await reconcileLedger(ctx, opts.full ? "full" : "incremental");
      print(report);
      if (report.defectCount > 0) process.exitCode = 2;
    });
  });

/** zod at the CLI's edge: the same rules as the HTTP intake, a clear message on the first problem. */
function cliArgument<T>(schema: z.ZodType<T>, value: unknown, name: string): T {
  const result = schema.safeParse(value);
  if (!result.success) throw new InvalidArgumentError(`${name} ${result.error.issues[0]?.message ?? "is invalid"}`);
  return result.data;
}

program
  .command("pay")
  .description("receive a borrower payment for an obligation (the payments intake, without HTTP)")
  .argument("<obligationId>", "the obligation paid")
  .requiredOption("--reference <r>", "the payment's reference (its idempotency key: the same reference twice is one payment)")
  .requiredOption("--amount <cents>", "integer cents, e.g. 125000")
  .option("--actor <name>", "the service account you pay as: one OPS_CLI_USERS maps your OS user to (needed only when it maps several)")
  .action(async (rawId: string, opts: { reference: string; amount: string; actor?: string }) => {
    const obligationId = cliArgument(idSchema, rawId, "obligationId");
    const reference = cliArgument(paymentReferenceSchema, opts.reference, "--reference");
    const amount = cliArgument(paymentAmountSchema, opts.amount, "--amount");
    const config = loadConfig();
    log.level = config.LOG_LEVEL;
    const { name: actor, osUser } = cliActor(config, userInfo().username, "service", opts.actor?.trim());
    const database = connectDatabase(config.DATABASE_URL, { max: 1, applicationName: "dispersal-pay", preparedStatements: config.DATABASE_PREPARED_STATEMENTS === "on" });
    try {
      print({ paid: true, ...(await receivePayment(database.db, { obligationId, reference, amount, actor, channel: "cli", metadata: { osUser } })) });
    } catch (error) {
      if (!(error instanceof DomainError)) throw unreachable(config.DATABASE_URL, error);
      print({ paid: false, obligationId, reference, code: error.code, error: error.message });
      process.exitCode = 1;
    } finally {
      await database.close();
    }
  });

program
  .command("return-payment")
  .description("record a returned payment (bounced, charged back): the REVERSAL of its cash, the status from the net cash, and the dispersal that follows, in one transaction")
  .argument("<obligationId>", "the obligation the payment was for")
  .requiredOption("--reference <r>", "the returned payment's reference")
  .requiredOption("--reason <text>", "why it was returned (recorded on the reversal and in the audit log)")
  .option("--actor <name>", "the service account that received the payment: one OPS_CLI_USERS maps your OS user to (needed only when it maps several)")
  .action(async (rawId: string, opts: { reference: string; reason: string; actor?: string }) => {
    const obligationId = cliArgument(idSchema, rawId, "obligationId");
    const reference = cliArgument(paymentReferenceSchema, opts.reference, "--reference");
    const reason = cliArgument(requeueReasonSchema, opts.reason, "--reason");
    const config = loadConfig();
    log.level = config.LOG_LEVEL;
    const { name: actor, osUser } = cliActor(config, userInfo().username, "service", opts.actor?.trim());
    const database = connectDatabase(config.DATABASE_URL, { max: 1, applicationName: "dispersal-return-payment", preparedStatements: config.DATABASE_PREPARED_STATEMENTS === "on" });
    try {
      print({ returned: true, ...(await returnPayment(database.db, { obligationId, reference, reason, actor, channel: "cli", metadata: { osUser } })) });
    } catch (error) {
      if (!(error instanceof DomainError)) throw unreachable(config.DATABASE_URL, error);
      print({ returned: false, obligationId, reference, code: error.code, error: error.message });
      process.exitCode = 1;
    } finally {
      await database.close();
    }
  });

program
  .command("simulate")
  .description("pay open obligations through the payments intake API at a steady rate, then report settle→dispersed latencies")
  .option("--rate <n>", "payments a second", positiveInt, 20)
  .option("--duration <seconds>", "how long to send payments", positiveInt, 30)
  .option("--url <url>", "the server's base URL (default http://HOST:PORT)")
  .option("--wait <seconds>", "after the last payment, wait this long at most for the dispersals", positiveInt, 30)
  .action(async (opts: { rate: number; duration: number; url?: string; wait: number }) => {
    await withRuntime({ name: "dispersal-simulate" }, async ({ ctx, config }) => {
      const service = config.OPS_USERS.find((u) => u.role === "service");
      if (!service) throw new InvalidArgumentError("OPS_USERS holds no service user (name:service:secret): simulate pays through the intake API as one");
      const host = config.HOST === "0.0.0.0" ? "127.0.0.1" : config.HOST.includes(":") ? `[${config.HOST}]` : config.HOST;
      try {
        const summary = await runSimulation(ctx, {
          baseUrl: opts.url ?? `http://${host}:${config.PORT}`,
          credentials: { name: service.name, secret: service.secret },
          ratePerSecond: opts.rate,
          durationSeconds: opts.duration,
          waitSeconds: opts.wait,
          onProgress: (line) => process.stderr.write(`${line}\n`),
        });
        print(summary);
        if (summary.stoppedEarly) process.stderr.write(`dispersal: simulate stopped after ${summary.stoppedEarly.afterSeconds} of ${opts.duration} s: ${summary.stoppedEarly.reason}\n`);
        if (summary.obligations.fixableNotDispersed > 0) process.exitCode = 3;
        else if (summary.stoppedEarly) process.exitCode = 4;
      } catch (error) {
        if (error instanceof NoOpenObligationsError) throw new InvalidArgumentError(error.message);
        throw error;
      }
    });
  });

// A stray rejection in a long-running worker is logged, not allowed to take down the process and its
// active jobs; an uncaught exception leaves the process in an unknown state, so it exits (jobs stall
// and are taken over by the other workers).
process.on("unhandledRejection", (reason) => log.error({ error: String((reason as Error)?.stack ?? reason) }, "unhandled rejection"));
process.on("uncaughtException", (error) => {
  log.fatal({ error: error.stack }, "uncaught exception: exiting");
  process.exit(1);
});

function share(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError("must be a fraction from 0 to 1");
  return n;
}

program
  .command("seed")
  .description("write a generated data set: --demo for a realistic small one, or size it with the flags")
  .option("--demo", "3,000 obligations on 200 mortgages, ~2% of the settled ones orphaned, some unfixable")
  .option("--mortgages <n>", "mortgages to create", positiveInt)
  .option("--obligations <n>", "obligations in all", positiveInt)
  .option("--settled-share <f>", "fraction of obligations settled", share)
  .option("--orphan-share <f>", "fraction of settled obligations left without dispersal entries", share)
  .option("--unfixable-share <f>", "fraction of orphans on mortgages whose positions are all zero", share)
  .option("--seed <n>", "deterministic values for the same seed", positiveInt)
  .action(async (opts: { demo?: boolean; mortgages?: number; obligations?: number; settledShare?: number; orphanShare?: number; unfixableShare?: number; seed?: number }) => {
    if (!opts.demo && !opts.mortgages) throw new InvalidArgumentError("say --demo, or size the data set with --mortgages (and --obligations)");
    const config = loadConfig();
    log.level = config.LOG_LEVEL;
    await migrateDatabase(directDatabaseUrl(config));
    const database = connectDatabase(config.DATABASE_URL, { max: 3, applicationName: "dispersal-seed", preparedStatements: config.DATABASE_PREPARED_STATEMENTS === "on" });
    try {
      const sized = {
        ...(opts.obligations ? { obligations: opts.obligations } : {}),
        ...(opts.settledShare !== undefined ? { settledShare: opts.settledShare } : {}),
        ...(opts.orphanShare !== undefined ? { orphanShare: opts.orphanShare } : {}),
        ...(opts.unfixableShare !== undefined ? { unfixableOrphanShare: opts.unfixableShare } : {}),
        ...(opts.seed ? { seed: opts.seed } : {}),
        onProgress: (n: number) => log.info({ obligations: n }, "seeding"),
      };
      const summary = opts.demo
        ? await seedDemo(database, { ...(opts.mortgages ? { mortgages: opts.mortgages } : {}), ...sized })
        : await seedObligations(database, { mortgages: opts.mortgages!, withHistoricalDispersals: true, ...sized });
      print(summary);
    } finally {
      await database.close();
    }
  });

try {
  await program.parseAsync(process.argv);
} catch (error) {
  // One line for a person; the stack only when asked for (LOG_LEVEL=debug, set by the command's config).
  const known = error instanceof ConfigError || error instanceof InfrastructureError || error instanceof InvalidArgumentError || error instanceof CliActorRefusedError;
  const detail = log.isLevelEnabled("debug") ? (error as Error)?.stack : undefined;
  const line = known ? (error as Error).message : `${(error as Error)?.message ?? String(error)} (LOG_LEVEL=debug shows where)`;
  process.stderr.write(`dispersal: ${detail ?? line.replace(/\s*\n\s*/g, " ")}\n`);
  process.exitCode = 1;
}
// The command has closed what it opened by now; a timer left behind (a trace exporter retrying a
// collector that is down) must not hold the exit. Output is written synchronously (pipes, pino's destination).
process.exit();
