// Bull Board at /admin/queues over the three queues, allowing what ops needs and nothing that goes
// around the service: reading everything; retrying a retrigger job, which becomes an audited requeue
// (bullBoardRetry.ts), one job's only through its confirmation (bullBoardRetryScript.ts). Every other write (add, edit data, promote, delay, priority, clean, empty,
// obliterate, pause, resume, scheduler edits or removal) is refused with 403 before it reaches the
// board, and the board itself is configured read-only where it can be, so that a route missed here
// still answers 405. Viewers get a read-only board without retry buttons.
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { ExpressAdapter } from "@bull-board/express";
import { Router, type Express, type RequestHandler } from "express";
import type { PipelineContext } from "../jobs/context.js";
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

function board(ctx: PipelineContext, forOperators: boolean): Express {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(BULL_BOARD_PATH);
  createBullBoard({
    queues: ctx.queues.all.map((queue) => {
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
  const app = serverAdapter.getRouter() as Express;
  app.disable("x-powered-by"); // the board is an express app of its own, with express's default on
  return app;
}

export function bullBoardRoutes(ctx: PipelineContext): Router {
  const forOperators = board(ctx, true);
  const forViewers = board(ctx, false);
  const router = Router();
  router.get(RETRY_SCRIPT_PATH, (_req, res) => void res.type("text/javascript").send(RETRY_SCRIPT));
  router.use(retryAsRequeue(ctx));
  router.use(refuseOtherWrites());
  router.use(withRetryConfirmation(ctx.queues.retrigger.name));
  router.use((req, res, next) => mounted(operatorOf(res).role === "operator" ? forOperators : forViewers)(req, res, next));
  return router;
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
