// A worker process's own /metrics on METRICS_PORT (with /healthz and /readyz): the jobs it ran and
// runs, its dispersal batches, its Node figures. The service's shared numbers are the server's.
import express from "express";
import type { Server } from "node:http";
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { Config } from "../config.js";
import type { PipelineContext } from "../jobs/context.js";
import type { Workers } from "../jobs/worker.js";
import { PortInUseError } from "./app.js";
import { requireCredentials } from "./auth.js";
import { healthRoutes } from "./health.js";
import { notFound, respondWithErrors } from "./httpErrors.js";
import { registerProcessInfo } from "./metrics.js";
import { securityHeaders } from "./securityHeaders.js";
import { signInThrottle } from "./signInThrottle.js";

const OUTCOMES = ["completed", "failed"] as const;

/** Adds what this process's workers do to `registry`: the server's in `start`, the metrics server's in `worker`. */
export function registerWorkerMetrics(registry: Registry, workers: Workers): void {
  const registers = [registry];
  const jobs = new Counter({
    name: "dispersal_worker_jobs_total",
    help: "Job attempts this process ran, by queue and outcome (failed: every failed attempt, retried or final)",
    labelNames: ["queue", "outcome"],
    registers,
  });
  for (const worker of workers.workers) {
    for (const outcome of OUTCOMES) jobs.inc({ queue: worker.name, outcome }, 0);
    worker.on("completed", () => jobs.inc({ queue: worker.name, outcome: "completed" }));
    worker.on("failed", () => jobs.inc({ queue: worker.name, outcome: "failed" }));
  }
  new Gauge({
    name: "dispersal_worker_jobs_active",
    help: "Jobs running in this process now, by queue",
    labelNames: ["queue"],
    registers,
    collect() {
      for (const [queue, n] of Object.entries(workers.figures().active)) this.set({ queue }, n);
    },
  });
  new Counter({
    name: "dispersal_worker_dispersal_batches_total",
    help: "Dispersal batches this process committed (HEALING_BATCH_SIZE > 1)",
    registers,
    collect() {
      this.reset();
      this.inc(workers.figures().batches.batches);
    },
  });
  new Counter({
    name: "dispersal_worker_dispersal_batch_obligations_total",
    help: "Obligations in the dispersal batches this process committed (÷ batches: the average batch size)",
    registers,
    collect() {
      this.reset();
      this.inc(workers.figures().batches.obligations);
    },
  });
}

export interface MetricsServer {
  registry: Registry;
  url: string;
  close(): Promise<void>;
}

/**
 * Listens on HOST:METRICS_PORT before the worker takes any job (a port in use stops the process,
 * naming METRICS_PORT); the workers' figures are added to `registry` once they run.
 */
export async function startMetricsServer(ctx: PipelineContext, config: Config & { METRICS_PORT: number }): Promise<MetricsServer> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "dispersal_" });
  registerProcessInfo(registry, ctx.queues.prefix);

  const app = express();
  app.disable("x-powered-by");
  app.set("trust proxy", config.TRUST_PROXY);
  app.use(securityHeaders());
  app.use(healthRoutes(ctx));
  app.use(requireCredentials(config.OPS_USERS, signInThrottle(ctx, config)));
  app.get("/metrics", async (_req, res) => {
    res.setHeader("Content-Type", registry.contentType);
    res.send(await registry.metrics());
  });
  app.use(notFound());
  app.use(respondWithErrors(ctx.log));

  let server: Server;
  try {
    server = await new Promise<Server>((resolve, reject) => {
      const s = app.listen(config.METRICS_PORT, config.HOST, (error?: Error) => (error ? reject(error) : resolve(s)));
    });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EADDRINUSE") throw new PortInUseError(config.METRICS_PORT, config.HOST, { cause: error, variable: "METRICS_PORT" });
    throw error;
  }
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.METRICS_PORT;
  const host = config.HOST.includes(":") ? `[${config.HOST}]` : config.HOST;
  const url = `http://${host}:${port}`;
  ctx.log.info({ url: `${url}/metrics` }, "worker metrics served");
  return {
    registry,
    url,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
