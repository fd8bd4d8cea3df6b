// Bull Board at /admin/queues over the three queues, allowing what ops needs and nothing that goes
// around the service: reading everything; retrying a retrigger job, which becomes an audited requeue
// (bullBoardRetry.ts), one job's only through its confirmation (bullBoardRetryScript.ts). Every other write (add, edit data, promote, delay, priority, clean, empty,
// obliterate, pause, resume, scheduler edits or removal) is refused with 403 before it reaches the
// board, and the board itself is configured read-only where it can be, so that a route missed here
// still answers 405. Viewers get a read-only board without retry buttons.
// Redis away: the board never waits for it. Its queues are opened on the bounded connection (no
// offline queue, every command within REDIS_COMMAND_TIMEOUT_MS), and while that connection is not
// ready the page and its API under the mount answer 503 at once, naming the (redacted) Redis URL;
// the next poll after Redis is back is served again, without a restart.
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { ExpressAdapter } from "@bull-board/express";
import { Queue } from "bullmq";
import { Router, type ErrorRequestHandler, type Express, type RequestHandler } from "express";
import type { PipelineContext } from "../jobs/context.js";
import type { RedisConnection } from "../queues/connection.js";
import { QUEUE } from "../queues/names.js";
import { isMutating, operatorOf } from "./auth.js";
import { retryAsRequeue } from "./bullBoardRetry.js";
import { RETRY_SCRIPT, RETRY_SCRIPT_PATH } from "./bullBoardRetryScript.js";
import { escapeHtml } from "./opsHtml.js";

export const BULL_BOARD_PATH = "/admin/queues";

const DESCRIPTIONS: Record<string, string> = {
  [QUEUE.healing]: "the scan: finds orphaned obligations and enqueues them",
  [QUEUE.retrigger]: "one job per orphaned obligation; retrying one opens its requeue (with a reason, audited in your name) on the obligation's story page",
  [QUEUE.reconciliation]: "daily reconciliation of the cash ledger",
};

function board(ctx: PipelineContext, queues: readonly Queue[], forOperators: boolean, unreachable: string): Express {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(BULL_BOARD_PATH);
  createBullBoard({
    queues: queues.map((queue) => {
      // Only the retrigger queue's board is writable (for its retry buttons); refuseOtherWrites() guards the rest of it.
      const retriable = forOperators && queue.name === ctx.queues.retrigger.name;
      // allowCompletedRetries is honoured by the adapter (hides retry on completed jobs) but missing from its option type.
      const options = { readOnlyMode: !retriable, allowRetries: retriable, allowCompletedRetries: false, description: DESCRIPTIONS[queue.name] ?? "" };
      return new BullMQAdapter(queue, options);
    }),
    // @bull-board/express 9.10.1 carries its own copy of @bull-board/api 9.10.1: the same shape, another declaration.
    serverAdapter: serverAdapter as unknown as Parameters<typeof createBullBoard>[0]["serverAdapter"],
    options: {
      uiConfig: {
        boardTitle: forOperators ? "dispersal-healing" : "dispersal-healing (read-only)",
        miscLinks: [{ text: "Ops page", url: "/ops" }],
      },
    },
  });
  // A command that failed on the bounded connection (refused while it reconnects, or past
  // REDIS_COMMAND_TIMEOUT_MS) is Redis being away, said as such; anything else as Bull Board says it.
  type ErrorHandler = Parameters<ExpressAdapter["setErrorHandler"]>[0];
  const boardsOwn = (serverAdapter as unknown as { errorHandler: ErrorHandler }).errorHandler;
  serverAdapter.setErrorHandler((error) =>
    // Bull Board's status type lists the codes it answers itself; 503 is ours.
    isRedisUnavailable(error, ctx.queues.forRequests.connection) ? ({ status: 503, body: redisUnavailableBody(unreachable) } as unknown as ReturnType<ErrorHandler>) : boardsOwn(error),
  );
  const app = serverAdapter.getRouter() as Express;
  app.disable("x-powered-by"); // the board is an express app of its own, with express's default on
  return app;
}

export interface BullBoardRoutes {
  router: Router;
  /** The board's own Queue objects (their connection is the bounded one, closed with the queues). */
  close(): Promise<void>;
}

/**
 * `redisDescription`: the Redis URL with its password redacted (describeRedis), for the message an
 * operator reads while it is away.
 */
export function bullBoardRoutes(ctx: PipelineContext, redisDescription: string): BullBoardRoutes {
  const connection = ctx.queues.forRequests.connection;
  // The board's reads on the bounded connection: a command is refused at once while Redis is away and
  // never waits for ever in an offline queue (the shared connection's), so no request of it hangs.
  const queues = ctx.queues.all.map((queue) => {
    const boardQueue = new Queue(queue.name, { connection, prefix: ctx.queues.prefix });
    boardQueue.on("error", () => {}); // the shared connection reports the same outage
    return boardQueue;
  });
  const unreachable = `Redis at ${redisDescription} is unreachable: queue views are unavailable; the ledger pages still work`;
  const forOperators = board(ctx, queues, true, unreachable);
  const forViewers = board(ctx, queues, false, unreachable);
  const router = Router();
  router.get(RETRY_SCRIPT_PATH, (_req, res) => void res.type("text/javascript").send(RETRY_SCRIPT));
  router.use(refuseWhileRedisIsAway(connection, unreachable));
  router.use(retryAsRequeue(ctx));
  router.use(refuseOtherWrites());
  router.use(withRetryConfirmation(ctx.queues.retrigger.name));
  router.use((req, res, next) => mounted(operatorOf(res).role === "operator" ? forOperators : forViewers)(req, res, next));
  // A retry route's Redis command refused or timed out (Redis hung, not yet seen as down): the same 503.
  router.use(((error, _req, res, next) => {
    if (res.headersSent || !isRedisUnavailable(error, connection)) return next(error);
    res.setHeader("Retry-After", String(RETRY_SECONDS));
    res.status(503).json(redisUnavailableBody(unreachable));
  }) as ErrorRequestHandler);
  return { router, close: async () => void (await Promise.all(queues.map((q) => q.close()))) };
}

/** How long the page waits before it tries again by itself, and the Retry-After of the API's 503. */
const RETRY_SECONDS = 5;

function redisUnavailableBody(unreachable: string) {
  // Bull Board's UI shows `error` as a toast's title and `message` as its text.
  return { error: unreachable, message: `Try again in a few seconds; the ops page (/ops) reads Postgres only.`, dependency: "redis" };
}

function isRedisUnavailable(error: unknown, connection: RedisConnection): boolean {
  if (connection.status !== "ready") return true;
  const message = error instanceof Error ? error.message : String(error);
  return /Command timed out|Connection is closed|enableOfflineQueue|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|Reached the max retries per request limit/i.test(message);
}

/**
 * Before anything of the board that reads Redis (its page, whose UI reads at once, its API, the
 * retry routes): while the board's connection is not ready, a 503 naming Redis instead of a page
 * that says "Loading" for ever. The page reloads itself, and so comes back once Redis does; the
 * board's static files do not need Redis and are served either way.
 */
function refuseWhileRedisIsAway(connection: RedisConnection, unreachable: string): RequestHandler {
  const page = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="${RETRY_SECONDS}">
<title>Queues unavailable: Redis is unreachable</title></head>
<body style="font-family:system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;line-height:1.5">
<h1 style="font-size:1.3rem">Queue views are unavailable</h1>
<p role="alert" id="redis-unreachable">${escapeHtml(unreachable)}.</p>
<p>This page tries again every ${RETRY_SECONDS} seconds by itself. Escalations, requeue requests, the money at risk and the obligations' stories are on the <a href="/ops">ops page</a>, which reads Postgres.</p>
</body></html>`;
  return (req, res, next) => {
    if (connection.status === "ready" || req.path.startsWith("/static/")) return next();
    res.setHeader("Retry-After", String(RETRY_SECONDS));
    if (/^\/api(\/|$)/.test(req.path)) return void res.status(503).json(redisUnavailableBody(unreachable));
    res.status(503).type("html").send(page);
  };
}

/** Bull Board's page (the one with its UI config) gains our script, so its Retry opens the confirmation. */
function withRetryConfirmation(retriggerQueue: string): RequestHandler {
  const tag = `<script defer src="${BULL_BOARD_PATH}${RETRY_SCRIPT_PATH}" data-retrigger-queue="${escapeHtml(retriggerQueue)}"></script>`;
  return (req, res, next) => {
    if (req.method !== "GET") return next();
    const send = res.send;
    res.send = function (this: typeof res, body?: unknown) {
      // Only the page itself: res.json also ends here, with its content type already set.
      const isPage = typeof body === "string" && !/json/i.test(String(this.get("Content-Type") ?? "")) && body.includes('id="__UI_CONFIG__"');
      const page = isPage ? (body as string).replace("</body>", `${tag}</body>`) : body;
      return send.call(this, page);
    } as typeof res.send;
    next();
  };
}

/** Whatever state-changing request the retry routes did not answer: by method, whatever the path says. */
function refuseOtherWrites(): RequestHandler {
  return (req, res, next) => {
    if (!isMutating(req.method)) return next();
    res.status(403).json({ error: "Bull Board is read-only here except for retrying retrigger jobs (an audited requeue); use the ops page or API" });
  };
}

/** What express's app.use does for a sub-app: hand the request back with its own prototypes when the board passes. */
function mounted(app: Express): RequestHandler {
  return (req, res, next) => {
    const request = Object.getPrototypeOf(req) as object;
    const response = Object.getPrototypeOf(res) as object;
    app(req, res, (error?: unknown) => {
      Object.setPrototypeOf(req, request);
      Object.setPrototypeOf(res, response);
      next(error);
    });
  };
}
