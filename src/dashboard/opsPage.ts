// /ops: the server-rendered page an operator opens when paged, and its two plain HTML forms
// (requeue, scan now), which answer with a redirect back and a one-time flash message.
import express, { Router, type Request, type Response } from "express";
import { z } from "zod";
import { idSchema } from "../domain/ids.js";
import type { OpsUser } from "../config.js";
import { groupEscalations, listGroupMembers } from "../db/escalationGroups.js";
import { listEscalations } from "../db/healing.js";
import { readMoneyAtRisk } from "../db/moneyAtRisk.js";
import { SEARCH_MIN_CHARACTERS, searchObligations, type ObligationMatch } from "../db/obligationStory.js";
import { isStatementCancelled } from "../db/client.js";
import { latestReconciliation, recentReconciliations } from "../db/reconciliation.js";
import { listPendingRequeues } from "../db/requeueRequests.js";
import { requeueReasonSchema } from "../domain/requeueReason.js";
import { approveRequeue, requiredApprovals, withdrawRequeue } from "../jobs/requeue.js";
import { answerFor } from "./httpErrors.js";
import type { PipelineContext } from "../jobs/context.js";
import { BODY_LIMIT } from "./api.js";
import { formToken, formTokenMatches, operatorOf, requireOperatorRole } from "./auth.js";
import { BULL_BOARD_PATH } from "./bullBoard.js";
import { escapeHtml, renderOpsPage, type Flash } from "./opsHtml.js";
import { MAX_BULK_REQUEUE, dryRunRequeueMany, requeueMany, requeueSelection, type BulkRequeueSummary } from "./requeueMany.js";
import { EscalationCountMismatchError } from "../domain/requeueErrors.js";
import { groupRequeuePage, groupSelectionFields, selectionOfFields, streamGroupRequeue } from "./groupRequeuePage.js";
import { SEARCH_LIMIT } from "./obligationsApi.js";
import { storyPage } from "./storyPage.js";
import { requestScan } from "./scanRequest.js";
import { HttpError } from "./httpErrors.js";
import { searchThrottle, type SearchThrottle } from "./searchThrottle.js";

const OPEN_ROWS = 200;
const GROUPS = 100;
/** Rows shown when a group is expanded; its "requeue all" acts on every one. */
const GROUP_ROWS = 50;
/** The latest reconciliation runs listed under the latest one's findings (daily incremental, weekly full). */
const RECONCILIATION_RUNS = 8;
const FLASH_COOKIE = "ops_flash";

const requeueForm = z.object({
  only: idSchema.optional(),
  obligationId: z.union([idSchema, z.array(idSchema).max(MAX_BULK_REQUEUE)]).optional(),
  reason: z.string().optional(),
  dryRun: z.string().optional(),
});

const decisionForm = z.object({ obligationId: idSchema });

const groupRequeueForm = groupSelectionFields.extend({ expectedCount: z.coerce.number().int().min(0), reason: z.string().optional() });

export function opsRoutes(ctx: PipelineContext, users: readonly OpsUser[]): Router {
  const router = Router();
  router.use(express.urlencoded({ extended: false, limit: BODY_LIMIT, parameterLimit: MAX_BULK_REQUEUE + 10 }));

  router.get("/obligations/:obligationId", storyPage(ctx, users));
  const throttle = searchThrottle(ctx);

  router.get("/", async (req, res) => {
    const operator = operatorOf(res);
    // Every read of the page on the readers' pool: its statement timeout, and never the writers' connections.
    const db = ctx.readers.db;
    const q = typeof req.query.q === "string" ? req.query.q.trim().slice(0, 200) : "";
    const [open, inProgress, recentlyResolved, reconciliation, moneyAtRisk, results, pending, groups, groupMembers, reconciliationRuns] = await Promise.all([
      listEscalations(db, { status: "escalated", limit: OPEN_ROWS + 1 }),
      listEscalations(db, { status: "requeued", limit: 50 }),
      // The filter goes into the query: filtered after its limit, rows that never escalated took the places.
      listEscalations(db, { status: "resolved", escalatedOnly: true, limit: 10 }),
      latestReconciliation(db),
      readMoneyAtRisk(db),
      q ? searchOnPage(ctx, throttle, operator.name, q) : Promise.resolve(undefined),
      listPendingRequeues(db, OPEN_ROWS, ctx.settings.REQUEUE_APPROVAL_TTL),
      groupEscalations(db, { limit: GROUPS }),
      listGroupMembers(db, { perGroup: GROUP_ROWS }),
      recentReconciliations(db, RECONCILIATION_RUNS),
    ]);
    const flash = takeFlash(req, res);
    res.type("html").send(
      renderOpsPage({
        operator,
        formToken: formToken(users, operator),
        open: open.slice(0, OPEN_ROWS),
        openTruncated: open.length > OPEN_ROWS,
        inProgress,
        recentlyResolved,
        reconciliation,
        reconciliationRuns,
        flash,
        now: new Date(),
        bullBoardPath: BULL_BOARD_PATH,
        retriggerQueue: ctx.queues.retrigger.name,
        moneyAtRisk,
        search: results ? { q, ...results } : undefined,
        pending,
        approvalsRequired: await requiredApprovals(ctx),
        groups,
        groupMembers,
        currency: ctx.settings.CURRENCY,
        redisUnreachable: ctx.queues.connection.status !== "ready",
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
    if (form.data.dryRun) {
      const preview = await dryRunRequeueMany(ctx, selected);
      const skipped = Object.entries(preview.skippedBecause).map(([why, n]) => `${n} ${why.replaceAll("_", " ")}`).join(", ");
      const verb = preview.approvalsRequired === 2 ? "would wait for approval" : "would be requeued";
      return backWith(res, { kind: preview.skipped === 0 ? "ok" : "warn", text: `Dry run: ${preview.wouldRequeue} ${verb}; ${preview.skipped} skipped${skipped ? ` (${skipped})` : ""}. Nothing was changed.` });
    }
    const reason = requeueReasonSchema.safeParse(form.data.reason ?? "");
    if (!reason.success) return backWith(res, { kind: "error", text: `Give a reason for the requeue (why will a new round succeed?): ${reason.error.issues[0]?.message}.` }, 400);
    const summary = await requeueMany(ctx, selected, { actor: operator.name, channel: "ops-page", reason: reason.data });
    backWith(res, bulkOutcome(summary));
  });

  router.get("/groups/requeue", groupRequeuePage(ctx, users));

  router.post("/groups/requeue", requireOperatorRole(), async (req, res) => {
    const operator = operatorOf(res);
    if (!formTokenMatches(users, operator, submittedToken(req))) return refuseForm(res);
    const form = groupRequeueForm.safeParse(req.body ?? {});
    if (!form.success) return backWith(res, { kind: "error", text: "The form was not understood (the group or its count is malformed)." }, 400);
    const reason = requeueReasonSchema.safeParse(form.data.reason ?? "");
    if (!reason.success) return backWith(res, { kind: "error", text: "Give a reason for the requeue: why will a new round succeed?" }, 400);
    const page = streamGroupRequeue(res);
    try {
      const summary = await requeueSelection(ctx, selectionOfFields(form.data), form.data.expectedCount, { actor: operator.name, channel: "ops-page", reason: reason.data }, page.progress);
      page.finish(bulkOutcome(summary));
    } catch (error) {
      if (page.started) {
        ctx.log.error({ actor: operator.name, error: (error as Error)?.stack ?? String(error) }, "requeue of a group failed part way");
        return page.fail();
      }
      if (error instanceof EscalationCountMismatchError) {
        return backWith(res, { kind: "error", text: `Nothing was requeued: the group now has ${error.actualCount} escalation${error.actualCount === 1 ? "" : "s"}, not the ${error.expectedCount} you confirmed. Look at it again.` }, 409);
      }
      const answer = answerFor(error);
      if (!answer || answer.status >= 500) throw error;
      backWith(res, { kind: "error", text: `Not requeued: ${answer.body.error}` }, answer.status);
    }
  });

  router.post("/requeue/approve", requireOperatorRole(), async (req, res) => {
    const operator = operatorOf(res);
    if (!formTokenMatches(users, operator, submittedToken(req))) return refuseForm(res);
    const form = decisionForm.safeParse(req.body ?? {});
    if (!form.success) return backWith(res, { kind: "error", text: "The form was not understood (the obligation id is not a UUID)." }, 400);
    try {
      const approved = await approveRequeue(ctx, form.data.obligationId, operator.name, "ops-page");
      backWith(res, { kind: "ok", text: `Approved ${approved.requestedBy}'s requeue of ${form.data.obligationId.slice(0, 8)}: round ${approved.round} started.` });
    } catch (error) {
      const answer = answerFor(error);
      if (!answer || answer.status >= 500) throw error;
      backWith(res, { kind: "error", text: `Not approved: ${answer.body.error}` }, answer.status);
    }
  });

  router.post("/requeue/withdraw", requireOperatorRole(), async (req, res) => {
    const operator = operatorOf(res);
    if (!formTokenMatches(users, operator, submittedToken(req))) return refuseForm(res);
    const form = decisionForm.safeParse(req.body ?? {});
    if (!form.success) return backWith(res, { kind: "error", text: "The form was not understood (the obligation id is not a UUID)." }, 400);
    try {
      const withdrawn = await withdrawRequeue(ctx, form.data.obligationId, operator.name, "ops-page");
      backWith(res, { kind: "ok", text: `Withdrew ${withdrawn.requestedBy}'s requeue request of ${form.data.obligationId.slice(0, 8)}.` });
    } catch (error) {
      const answer = answerFor(error);
      if (!answer || answer.status >= 500) throw error;
      backWith(res, { kind: "error", text: `Not withdrawn: ${answer.body.error}` }, answer.status);
    }
  });

  router.post("/scan", requireOperatorRole(), async (req, res) => {
    const operator = operatorOf(res);
    if (!formTokenMatches(users, operator, submittedToken(req))) return refuseForm(res);
    const scan = await requestScan(ctx, operator.name);
    backWith(res, { kind: "ok", text: scan.alreadyRequested ? `A scan was already queued (job ${scan.jobId}); it will run once.` : `Scan queued (job ${scan.jobId}).` });
  });

  return router;
}

/**
 * The page's search: refused below SEARCH_MIN_CHARACTERS, throttled per user, and a search the
 * statement timeout stopped is said in its place; the rest of the page shows either way.
 */
async function searchOnPage(ctx: PipelineContext, throttle: SearchThrottle, user: string, q: string): Promise<{ results: ObligationMatch[]; notice?: string }> {
  if (q.length < SEARCH_MIN_CHARACTERS) return { results: [], notice: `Type at least ${SEARCH_MIN_CHARACTERS} characters to search.` };
  try {
    await throttle.take(user);
    return { results: await searchObligations(ctx.readers.db, q, SEARCH_LIMIT) };
  } catch (error) {
    if (error instanceof HttpError && error.status === 429) return { results: [], notice: `${error.message}.` };
    if (isStatementCancelled(error)) return { results: [], notice: `The search for “${q}” took too long and was stopped: make it more precise (an obligation id, a whole reference).` };
    throw error;
  }
}

function bulkOutcome(summary: BulkRequeueSummary): Flash {
  const refusals = summary.results.flatMap((r) => (r.outcome === "refused" || r.outcome === "not-attempted" ? [`${r.obligationId.slice(0, 8)}: ${r.error}`] : []));
  const text = [
    summary.requeued > 0 ? `Requeued ${summary.requeued} escalation${summary.requeued === 1 ? "" : "s"} for a new round.` : "",
    summary.pendingApproval > 0 ? `Requested ${summary.pendingApproval} requeue${summary.pendingApproval === 1 ? "" : "s"}: waiting for another operator's approval.` : "",
    refusals.length > 0 ? `Not requeued (${refusals.length}): ${refusals.slice(0, 3).join("; ")}${refusals.length > 3 ? " …" : ""}` : "",
  ].filter(Boolean).join(" ");
  const acted = summary.requeued + summary.pendingApproval;
  return { kind: refusals.length === 0 ? "ok" : acted > 0 ? "warn" : "error", text: text || "Nothing to requeue." };
}

function submittedToken(req: Request): unknown {
  return (req.body as { _token?: unknown } | undefined)?._token;
}

function refuseForm(res: Response): void {
  res.status(403).type("html").send(`<!doctype html><meta charset="utf-8"><title>Refused</title>
<p>This form was not sent from this ops page (its token is missing or wrong). <a href="/ops">Back to the ops page</a>.</p>`);
}

/**
 * Post/redirect/get: the flash rides in a short-lived cookie, not the URL, so links cannot fake it.
 * A refusal keeps its status (400, 403, 404, 409) on a small page linking back, so the audit row and
 * scripts see what happened; browsers follow the 303 of a success.
 */
function backWith(res: Response, flash: Flash, status = 303): void {
  const value = Buffer.from(JSON.stringify(flash)).toString("base64url");
  res.setHeader("Set-Cookie", `${FLASH_COOKIE}=${value}; Path=/ops; Max-Age=60; HttpOnly; SameSite=Strict`);
  if (status === 303) return void res.redirect(303, "/ops");
  res.status(status).type("html").send(`<!doctype html><meta charset="utf-8"><title>Refused</title>
<meta http-equiv="refresh" content="0; url=/ops"><p>${escapeHtml(flash.text)} <a href="/ops">Back to the ops page</a>.</p>`);
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
