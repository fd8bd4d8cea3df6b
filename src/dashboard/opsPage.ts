// /ops: the server-rendered page an operator opens when paged, and its two plain HTML forms
// (requeue, scan now), which answer with a redirect back and a one-time flash message.
import express, { Router, type Request, type Response } from "express";
import { z } from "zod";
import { idSchema } from "../domain/ids.js";
import type { OpsUser } from "../config.js";
import { listEscalations } from "../db/healing.js";
import { latestReconciliation } from "../db/reconciliation.js";
import type { PipelineContext } from "../jobs/context.js";
import { BODY_LIMIT } from "./api.js";
import { formToken, formTokenMatches, operatorOf, requireOperatorRole } from "./auth.js";
import { BULL_BOARD_PATH } from "./bullBoard.js";
import { renderOpsPage, type Flash } from "./opsHtml.js";
import { MAX_BULK_REQUEUE, requeueMany } from "./requeueMany.js";
import { requestScan } from "./scanRequest.js";

const OPEN_ROWS = 200;
const FLASH_COOKIE = "ops_flash";

const requeueForm = z.object({
  only: idSchema.optional(),
  obligationId: z.union([idSchema, z.array(idSchema).max(MAX_BULK_REQUEUE)]).optional(),
});

export function opsRoutes(ctx: PipelineContext, users: readonly OpsUser[]): Router {
  const router = Router();
  router.use(express.urlencoded({ extended: false, limit: BODY_LIMIT, parameterLimit: MAX_BULK_REQUEUE + 10 }));

  router.get("/", async (req, res) => {
    const operator = operatorOf(res);
    const db = ctx.database.db;
    const [open, inProgress, recentlyResolved, reconciliation] = await Promise.all([
      listEscalations(db, { status: "escalated", limit: OPEN_ROWS + 1 }),
      listEscalations(db, { status: "requeued", limit: 50 }),
      listEscalations(db, { status: "resolved", limit: 10 }),
      latestReconciliation(db),
    ]);
    const flash = takeFlash(req, res);
    res.setHeader("Cache-Control", "no-store");
    res.setHeader("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
    res.type("html").send(
      renderOpsPage({
        operator,
        formToken: formToken(users, operator),
        open: open.slice(0, OPEN_ROWS),
        openTruncated: open.length > OPEN_ROWS,
        inProgress,
        recentlyResolved: recentlyResolved.filter((e) => e.escalatedAt !== null),
        reconciliation,
        flash,
        now: new Date(),
        bullBoardPath: BULL_BOARD_PATH,
        retriggerQueue: ctx.queues.retrigger.name,
      }),
    );
  });

  router.post("/requeue", requireOperatorRole(), async (req, res) => {
    const operator = operatorOf(res);
    if (!formTokenMatches(users, operator, submittedToken(req))) return refuseForm(res);
    const form = requeueForm.safeParse(req.body ?? {});
    if (!form.success) return backWith(res, { kind: "error", text: "The form was not understood (an obligation id is not a UUID, or too many were selected)." });
    const selected = form.data.only ? [form.data.only] : [form.data.obligationId ?? []].flat();
    if (selected.length === 0) return backWith(res, { kind: "warn", text: "Nothing selected: tick the escalations to requeue first." });
    const summary = await requeueMany(ctx, selected, operator.name, "ops-page");
    const refusals = summary.results.flatMap((r) => (r.outcome === "requeued" ? [] : [`${r.obligationId.slice(0, 8)}: ${r.error}`]));
    const text = [
      summary.requeued > 0 ? `Requeued ${summary.requeued} escalation${summary.requeued === 1 ? "" : "s"} for a new round.` : "",
      refusals.length > 0 ? `Not requeued (${refusals.length}): ${refusals.slice(0, 3).join("; ")}${refusals.length > 3 ? " …" : ""}` : "",
    ].filter(Boolean).join(" ");
    backWith(res, { kind: refusals.length === 0 ? "ok" : summary.requeued > 0 ? "warn" : "error", text });
  });

  router.post("/scan", requireOperatorRole(), async (req, res) => {
    const operator = operatorOf(res);
    if (!formTokenMatches(users, operator, submittedToken(req))) return refuseForm(res);
    const scan = await requestScan(ctx, operator.name);
    backWith(res, { kind: "ok", text: scan.alreadyRequested ? `A scan was already queued (job ${scan.jobId}); it will run once.` : `Scan queued (job ${scan.jobId}).` });
  });

  return router;
}

function submittedToken(req: Request): unknown {
  return (req.body as { _token?: unknown } | undefined)?._token;
}

function refuseForm(res: Response): void {
  res.status(403).type("html").send(`<!doctype html><meta charset="utf-8"><title>Refused</title>
<p>This form was not sent from this ops page (its token is missing or wrong). <a href="/ops">Back to the ops page</a>.</p>`);
}

/** Post/redirect/get: the flash rides in a short-lived cookie, not the URL, so links cannot fake it. */
function backWith(res: Response, flash: Flash): void {
  const value = Buffer.from(JSON.stringify(flash)).toString("base64url");
  res.setHeader("Set-Cookie", `${FLASH_COOKIE}=${value}; Path=/ops; Max-Age=60; HttpOnly; SameSite=Strict`);
  res.redirect(303, "/ops");
}

const flashContent = z.object({ kind: z.enum(["ok", "warn", "error"]), text: z.string().max(2000) });

function takeFlash(req: Request, res: Response): Flash | undefined {
  const raw = (req.headers.cookie ?? "").split(";").map((c) => c.trim()).find((c) => c.startsWith(`${FLASH_COOKIE}=`));
  if (!raw) return undefined;
  res.setHeader("Set-Cookie", `${FLASH_COOKIE}=; Path=/ops; Max-Age=0; HttpOnly; SameSite=Strict`);
  try {
    const parsed = flashContent.safeParse(JSON.parse(Buffer.from(raw.slice(FLASH_COOKIE.length + 1), "base64url").toString("utf8")));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
