// PLACEHOLDER until the operations surface lands: health only.
import express from "express";
import type { Server } from "node:http";
import type { Config } from "../config.js";
import type { PipelineContext } from "../jobs/context.js";

export function createApp(_ctx: PipelineContext, _config: Config): express.Express {
  const app = express();
  app.get("/healthz", (_req, res) => void res.json({ status: "ok" }));
  return app;
}

export async function startHttpServer(ctx: PipelineContext, config: Config): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const app = createApp(ctx, config);
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(config.PORT, config.HOST, () => resolve(s));
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.PORT;
  return { server, url: `http://${config.HOST}:${port}`, close: () => new Promise((r) => server.close(() => r())) };
}
