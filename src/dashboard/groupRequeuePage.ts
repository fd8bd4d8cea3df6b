// /ops/groups/requeue: the confirmation of "requeue all N" of a group (server-rendered, no script).
// It is the dry run: what the group's filter matches now, and a form that submits that count as expectedCount.
import type { RequestHandler, Response } from "express";
import { z } from "zod";
import type { OpsUser } from "../config.js";
import type { EscalationSelection } from "../db/escalationGroups.js";
import { idSchema } from "../domain/ids.js";
import { formatMoney } from "../domain/money.js";
import { MAX_REASON_LENGTH } from "../domain/requeueReason.js";
import type { PipelineContext } from "../jobs/context.js";
import { formToken, operatorOf } from "./auth.js";
import { answerFor } from "./httpErrors.js";
import { Html, STYLE, age, html, storyPath } from "./opsHtml.js";
import { dryRunSelection, type SelectionDryRun } from "./requeueMany.js";

const LISTED = 100;

/** A group's filter as the ops page's links and forms carry it (noError=1: the group without a recorded error). */
export const groupSelectionFields = z.object({
  mortgageId: idSchema.optional(),
  error: z.string().max(2000).optional(),
  noError: z.literal("1").optional(),
});

export function selectionOfFields(fields: z.infer<typeof groupSelectionFields>): EscalationSelection {
  return {
    ...(fields.mortgageId ? { mortgageId: fields.mortgageId } : {}),
    ...(fields.noError ? { error: null } : fields.error !== undefined ? { error: fields.error } : {}),
  };
}

export function groupRequeuePage(ctx: PipelineContext, users: readonly OpsUser[]): RequestHandler {
  return async (req, res) => {
    const fields = groupSelectionFields.safeParse(req.query);
    if (!fields.success) {
      res.status(400).type("html").send(page("Not a group", html`<p>This link does not name a group of escalations (a mortgage id and an error).</p>`));
      return;
    }
    const selection = selectionOfFields(fields.data);
    let dryRun: SelectionDryRun;
    try {
      dryRun = await dryRunSelection(ctx, selection);
    } catch (error) {
      const answer = answerFor(error);
      if (!answer || answer.status >= 500) throw error;
      res.status(answer.status).type("html").send(page("Cannot requeue this group", html`<p>${answer.body.error}</p>`));
      return;
    }
    const operator = operatorOf(res);
    const form = operator.role === "operator" && dryRun.wouldRequeue > 0 ? confirmForm(fields.data, dryRun, formToken(users, operator)) : "";
    res.type("html").send(page(`Requeue all ${dryRun.matched}`, html`${summary(dryRun, ctx.settings.CURRENCY)}${form}${listed(dryRun, new Date(), ctx.settings.CURRENCY)}`));
  };
}

function summary(d: SelectionDryRun, currency: string): Html {
  const first = d.obligations[0];
  const skipped = Object.entries(d.skippedBecause).map(([why, n]) => `${n} ${why.replaceAll("_", " ")}`).join(", ");
  return html`<div class="flash ${d.skipped === 0 ? "ok" : "warn"}" role="status" id="dry-run">
    Dry run: <strong data-matched="${d.matched}">${d.matched}</strong> escalation${d.matched === 1 ? "" : "s"} match${d.matched === 1 ? "es" : ""}${first ? html` on <strong>${first.mortgageReference}</strong>` : ""},
    ${formatMoney(d.amount, currency)} in all. ${d.approvalsRequired === 2 ? `${d.wouldRequeue} would wait for a second operator's approval` : `${d.wouldRequeue} would be requeued`}${d.skipped > 0 ? `; ${d.skipped} skipped (${skipped})` : ""}. Nothing has changed yet.
  </div>
  <p>Error: <code>${d.filter.error === null ? "no error recorded" : (d.filter.error ?? "any")}</code></p>`;
}

function confirmForm(fields: z.infer<typeof groupSelectionFields>, d: SelectionDryRun, token: string): Html {
  const hidden = (name: string, value: string | undefined) => (value === undefined ? "" : html`<input type="hidden" name="${name}" value="${value}">`);
  return html`<form class="card" method="post" action="/ops/groups/requeue" id="confirm-group-requeue">
    <input type="hidden" name="_token" value="${token}">
    ${hidden("mortgageId", fields.mortgageId)}${hidden("error", fields.noError ? undefined : fields.error)}${hidden("noError", fields.noError)}
    <input type="hidden" name="expectedCount" value="${d.matched}">
    <div class="actions">
      <label>Reason <input type="text" name="reason" required maxlength="${MAX_REASON_LENGTH}" size="48" placeholder="why will a new round succeed?" aria-label="reason for the requeue"></label>
      <button type="submit">Requeue all ${d.matched}</button>
      <span class="muted">Refused, with nothing changed, if the group no longer has exactly ${d.matched}. The next page shows the progress, then the result${d.approvalsRequired === 2 ? " (each one asked for, waiting for a second operator)" : ""}; each is audited in your name with the reason.</span>
    </div>
  </form>`;
}

function listed(d: SelectionDryRun, now: Date, currency: string): Html {
  const rows = d.obligations.slice(0, LISTED);
  return html`<h2>The escalations${d.matched > LISTED ? ` (the first ${LISTED} of ${d.matched})` : ""}</h2>
  <div class="card"><table><thead><tr><th>Obligation</th><th class="num">Amount</th><th class="num">Escalated</th></tr></thead><tbody>${rows.map(
    (o) => html`<tr data-obligation="${o.obligationId}"><td><a class="mono" href="${storyPath(o.obligationId)}">${o.obligationId}</a></td>
      <td class="num">${formatMoney(o.amount, currency)}</td><td class="num" title="${o.escalatedAt ?? ""}">${age(o.escalatedAt, now)} ago</td></tr>`,
  )}</tbody></table></div>`;
}

function page(title: string, body: Html): string {
  return html`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title} – dispersal healing</title><style>${new Html(STYLE)}</style></head>
<body><header><h1>${title}</h1><nav><a href="/ops">Back to the ops page</a></nav></header><main>${body}</main></body></html>`.value;
}

export interface GroupRequeueStream {
  progress(done: number, total: number): void;
  /** Whether the page has begun: from then on the answer is this page, not a redirect. */
  readonly started: boolean;
  finish(result: { kind: "ok" | "warn" | "error"; text: string }): void;
  fail(): void;
}

/**
 * The answer to POST /ops/groups/requeue once the count is confirmed: an HTML page streamed as the
 * requeues go (no script: each progress line hides the one before it), ending with the result.
 * Nothing is sent before the first progress call, so a refusal before it can still redirect.
 */
export function streamGroupRequeue(res: Response): GroupRequeueStream {
  let started = false;
  let step = 1;
  const start = (total: number) => {
    started = true;
    step = Math.max(1, Math.ceil(total / 50));
    res.status(200);
    res.setHeader("Content-Type", "text/html; charset=utf-8");
    res.write(html`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Requeue all ${total} – dispersal healing</title>
<style>${new Html(STYLE)} #group-requeue-progress p:not(:last-child) { display:none; }</style></head>
<body><header><h1>Requeue all ${total}</h1><nav><a href="/ops">Back to the ops page</a></nav></header><main>
<div class="card"><div class="actions" id="group-requeue-progress">`.value);
  };
  return {
    get started() {
      return started;
    },
    progress(done, total) {
      if (!started) start(total);
      if (done === total) res.write(html`<p>${done} of ${total} done.</p>`.value);
      else if (done % step === 0) res.write(html`<p>${done} of ${total} done…</p>`.value);
    },
    finish(result) {
      res.end(html`</div></div><div class="flash ${result.kind}" role="status" id="group-requeue-result">${result.text}</div>
<p><a href="/ops">Back to the ops page</a></p></main></body></html>`.value);
    },
    fail() {
      res.end(html`</div></div><div class="flash error" role="status" id="group-requeue-result">The requeue stopped with an internal error; the details are in the server log. What was done is on the ops page.</div></main></body></html>`.value);
    },
  };
}
