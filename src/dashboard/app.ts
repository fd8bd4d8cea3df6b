// The operations surface (express): health without credentials; behind Basic auth the API, the ops
// page, Bull Board and the metrics; every state-changing request audited. startHttpServer listens
// and closes it all (including the metrics' Redis event listeners).
import express, { type Express } from "express";
import type { Server } from "node:http";
import type { Registry } from "prom-client";
import type { Config } from "../config.js";
import type { PipelineContext } from "../jobs/context.js";
import { apiRoutes } from "./api.js";
import { requireCredentials, serviceAccountsIntakeOnly, viewersReadOnly } from "./auth.js";
import { BULL_BOARD_PATH, bullBoardRoutes } from "./bullBoard.js";
import { healthRoutes } from "./health.js";
import { notFound, respondWithErrors } from "./httpErrors.js";
import { createMetrics } from "./metrics.js";
import { opsRoutes } from "./opsPage.js";
import { auditStateChanges } from "./requestAudit.js";
import { bullBoardContentSecurityPolicy, securityHeaders } from "./securityHeaders.js";
import { signInThrottle } from "./signInThrottle.js";
import { refuseCrossSiteWrites } from "./sameOrigin.js";
import { InfrastructureError } from "../domain/errors.js";
import { describeRedis } from "../queues/connection.js";

export type OperationsApp = Express & {
  /** What /metrics answers; a `start` process adds its workers' figures to it. */
  metricsRegistry: Registry;
  /** Stops what the app holds besides the HTTP server: the metrics' queue event listeners. */
  closeResources(): Promise<void>;
};

export function createApp(ctx: PipelineContext, config: Config): OperationsApp {
  const app = express();
  app.disable("x-powered-by");
  // X-Forwarded-For/-Host/-Proto are believed only from the proxies TRUST_PROXY names (default: none).
  app.set("trust proxy", config.TRUST_PROXY);
  app.use(securityHeaders());
  app.use(healthRoutes(ctx));

  app.use(requireCredentials(config.OPS_USERS, signInThrottle(ctx, config)));
  app.use(auditStateChanges(ctx));
  app.use(serviceAccountsIntakeOnly());
  app.use(refuseCrossSiteWrites());
  app.use(viewersReadOnly());

  const metrics = createMetrics(ctx);
  app.get("/metrics", async (_req, res) => {
    res.setHeader("Content-Type", metrics.registry.contentType);
    res.send(await metrics.registry.metrics());
  });
  app.use("/api", apiRoutes(ctx));
  app.use("/ops", opsRoutes(ctx, config.OPS_USERS));
  app.get("/", (_req, res) => res.redirect(302, "/ops"));
  const bullBoard = bullBoardRoutes(ctx, describeRedis(config));
  app.use(BULL_BOARD_PATH, bullBoardContentSecurityPolicy(), bullBoard.router);

  app.use(notFound());
  app.use(respondWithErrors(ctx.log));
  return Object.assign(app, { metricsRegistry: metrics.registry, closeResources: async () => void (await Promise.all([metrics.close(), bullBoard.close()])) });
}

/** The process cannot serve: another one holds the address. Named so a supervisor's log says why it exited. */
export class PortInUseError extends InfrastructureError {
  constructor(readonly port: number, readonly host: string, options: { cause: unknown; variable?: "PORT" | "METRICS_PORT" }) {
    const variable = options.variable ?? "PORT";
    super(`${variable} ${port} is already in use on ${host}: stop what holds it or set ${variable} to a free port`, options);
  }
}

export interface HttpServer {
  server: Server;
  metricsRegistry: Registry;
  url: string;
  close(): Promise<void>;
}

export async function startHttpServer(ctx: PipelineContext, config: Config): Promise<HttpServer> {
  const app = createApp(ctx, config);
  let server: Server;
  try {
    server = await new Promise<Server>((resolve, reject) => {
      const s = app.listen(config.PORT, config.HOST, (error?: Error) => (error ? reject(error) : resolve(s)));
    });
  } catch (error) {
    await app.closeResources();
    if ((error as NodeJS.ErrnoException).code === "EADDRINUSE") throw new PortInUseError(config.PORT, config.HOST, { cause: error });
    throw error;
  }
  // Fail closed, but not silently: otherwise nobody learns why until the first 401.
  if (config.OPS_USERS.length === 0) ctx.log.warn("OPS_USERS is empty: every route but /healthz and /readyz answers 401; set OPS_USERS=name:role:secret,… (roles viewer, operator, service)");
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.PORT;
  const host = config.HOST.includes(":") ? `[${config.HOST}]` : config.HOST;
  return {
    server,
    metricsRegistry: app.metricsRegistry,
    url: `http://${host}:${port}`,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // A client holding a request open must not keep a shutting-down process alive.
      const force = setTimeout(() => server.closeAllConnections(), 5000);
      await closed;
      clearTimeout(force);
      await app.closeResources();
    },
  };
}
