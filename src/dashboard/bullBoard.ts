// Bull Board at /admin/queues over the three queues: operators get the full board (retry, clean,
// …, with failed retrigger jobs retried as requeues), viewers a read-only one.
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { ExpressAdapter } from "@bull-board/express";
import { Router, type Express, type RequestHandler } from "express";
import type { PipelineContext } from "../jobs/context.js";
import { QUEUE } from "../queues/names.js";
import { operatorOf } from "./auth.js";
import { retryFailedRetriggerAsRequeue } from "./bullBoardRetry.js";

export const BULL_BOARD_PATH = "/admin/queues";

const DESCRIPTIONS: Record<string, string> = {
  [QUEUE.healing]: "the scan: finds orphaned obligations and enqueues them",
  [QUEUE.retrigger]: "one job per orphaned obligation; retrying a failed one requeues its escalation",
  [QUEUE.reconciliation]: "daily reconciliation of the cash ledger",
};

function board(ctx: PipelineContext, readOnlyMode: boolean): Express {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(BULL_BOARD_PATH);
  createBullBoard({
    queues: ctx.queues.all.map(
      (queue) => new BullMQAdapter(queue, { readOnlyMode, allowRetries: !readOnlyMode, description: DESCRIPTIONS[queue.name] ?? "" }),
    ),
    // @bull-board/express 9.10.1 carries its own copy of @bull-board/api 9.10.1: the same shape, another declaration.
    serverAdapter: serverAdapter as unknown as Parameters<typeof createBullBoard>[0]["serverAdapter"],
    options: {
      uiConfig: {
        boardTitle: readOnlyMode ? "dispersal-healing (read-only)" : "dispersal-healing",
        miscLinks: [{ text: "Ops page", url: "/ops" }],
      },
    },
  });
  return serverAdapter.getRouter() as Express;
}

export function bullBoardRoutes(ctx: PipelineContext): Router {
  const forOperators = board(ctx, false);
  const forViewers = board(ctx, true);
  const router = Router();
  router.use(retryFailedRetriggerAsRequeue(ctx));
  router.use((req, res, next) => mounted(operatorOf(res).role === "operator" ? forOperators : forViewers)(req, res, next));
  return router;
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
