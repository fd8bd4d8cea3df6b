// /ops/obligations/:obligationId: the whole story of one obligation as a page (server-rendered,
// every value escaped, no script): what was owed and settled, every posting with both accounts,
// who was paid how much, the healing row, the retrigger job, and the timeline with every audit row.
import type { Request, RequestHandler, Response } from "express";
import type { StoryAccount } from "../db/obligationStory.js";
import { idSchema } from "../domain/ids.js";
import { formatCents } from "../domain/money.js";
import type { PipelineContext } from "../jobs/context.js";
import { operatorOf, type Operator } from "./auth.js";
import { buildObligationStory, type ObligationStory, type TimelineItem } from "./obligationStoryView.js";
import { Html, STYLE, age, html } from "./opsHtml.js";
import { STORY_READ_AUDIT_ACTION, auditRead } from "./requestAudit.js";

export function storyPage(ctx: PipelineContext): RequestHandler {
  return async (req: Request, res: Response) => {
    const parsed = idSchema.safeParse(req.params.obligationId);
    if (!parsed.success) {
      res.status(400).type("html").send(plainPage("Not an obligation id", html`<p><code>${String(req.params.obligationId).slice(0, 100)}</code> is not an obligation id (a UUID, 8-4-4-4-12 hexadecimal).</p>`));
      return;
    }
    const story = await buildObligationStory(ctx, parsed.data);
    if (!story) {
      res.status(404).type("html").send(plainPage("No such obligation", html`<p>No obligation has the id <code class="copy">${parsed.data}</code>.</p>`));
      return;
    }
    await auditRead(ctx, res, { action: STORY_READ_AUDIT_ACTION, resourceType: "obligation_story", resourceId: parsed.data, channel: "ops-page" });
    res.type("html").send(renderStoryPage(story, operatorOf(res), new Date()));
  };
}

function plainPage(title: string, body: Html): string {
  return html`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title><style>${new Html(STYLE)}</style></head>
<body><header><h1>${title}</h1><nav><a href="/ops">Back to the ops page</a></nav></header><main>${body}</main></body></html>`.value;
}

function copyable(id: string | null | undefined): Html | string {
  if (!id) return "–";
  return html`<code class="copy" title="click to select, then copy">${id}</code>`;
}

function accountCell(a: StoryAccount): Html {
  const ids = [
    a.mortgageId ? html`<div class="muted">mortgage ${copyable(a.mortgageId)}</div>` : "",
    a.obligationId ? html`<div class="muted">obligation ${copyable(a.obligationId)}</div>` : "",
    a.lenderId ? html`<div class="muted">lender ${copyable(a.lenderId)}</div>` : "",
  ];
  return html`<strong>${a.family}</strong>${a.subaccount ? html`:${a.subaccount}` : ""}<div class="muted">account ${copyable(a.id)}</div>${ids}`;
}

function money(cents: string | null): string {
  return cents === null ? "" : formatCents(BigInt(cents));
}

export function renderStoryPage(story: ObligationStory, operator: Operator, now: Date): string {
  const o = story.obligation;
  const h = story.healing;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${story.mortgage.reference} · ${o.type.replaceAll("_", " ")} · ${formatCents(BigInt(o.amount))} – obligation story</title>
<style>${new Html(STYLE)}
  dl.facts { display:grid; grid-template-columns: max-content 1fr; gap:.3rem 1.2rem; padding:1rem; margin:0; }
  dl.facts dt { color:var(--muted); } dl.facts dd { margin:0; }
  ol.timeline { list-style:none; margin:0; padding:0; }
  ol.timeline li { display:grid; grid-template-columns: 15rem 22rem 1fr; gap:.8rem; padding:.5rem 1rem; border-bottom:1px solid var(--line); }
  ol.timeline li:last-child { border-bottom:none; }
  ol.timeline li.audit { background:var(--warnbg); } ol.timeline li.audit.sev-error { background:var(--errbg); }
  ol.timeline li .error { max-width:none; }
</style>
</head>
<body>
<header>
  <h1>Obligation <span class="mono">${o.id.slice(0, 8)}</span></h1>
  <span class="badge">${operator.name} · ${operator.role}</span>
  <nav><a href="/ops">Ops page</a><a href="/api/obligations/${o.id}">JSON</a></nav>
</header>
<main>
<h2 id="obligation">The obligation</h2>
<section class="card" aria-labelledby="obligation"><dl class="facts">
  <dt>Obligation id</dt><dd>${copyable(o.id)}</dd>
  <dt>Mortgage</dt><dd><strong>${story.mortgage.reference}</strong> ${copyable(story.mortgage.id)}
    <span class="muted">· principal ${formatCents(BigInt(story.mortgage.principal))} · fee ${story.mortgage.servicingFeeBps} bps · ${story.mortgage.paymentFrequency.replaceAll("_", " ")}</span></dd>
  <dt>Type</dt><dd>${o.type.replaceAll("_", " ")}</dd>
  <dt>Amount</dt><dd class="mono" data-field="amount">${formatCents(BigInt(o.amount))}</dd>
  <dt>Status</dt><dd>${o.status}${o.dispersed ? " · dispersed" : " · not dispersed"}</dd>
  <dt>Due</dt><dd>${o.dueDate}</dd>
  <dt>Settled</dt><dd>${o.settledAt ? html`${o.settledAt} <span class="muted">(${age(o.settledAt, now)} ago)</span>` : "–"}</dd>
  <dt>In SUSPENSE now</dt><dd class="mono" data-field="suspense">${formatCents(BigInt(story.suspenseBalance))}</dd>
  <dt>Healing</dt><dd data-field="healing">${h
    ? html`<strong>${h.status}</strong> · attempt ${h.attemptCount} of this round · ${h.requeueCount} requeue${h.requeueCount === 1 ? "" : "s"}
        ${h.escalatedAt ? html`· escalated ${age(h.escalatedAt, now)} ago` : ""}${h.resolvedAt ? html` · resolved ${age(h.resolvedAt, now)} ago` : ""}
        ${h.lastError ? (h.status === "resolved" ? html`<div class="muted">last error before it resolved: ${h.lastError}</div>` : html`<div class="error">${h.lastError}</div>`) : ""}`
    : html`<span class="muted">never needed healing</span>`}</dd>
  <dt>Retrigger job</dt><dd data-field="job">${story.job
    ? html`${copyable(story.job.id)} <strong>${story.job.state}</strong>${story.job.live ? " (live)" : ""} · ${story.job.attemptsMade} of ${story.job.attempts} attempts made
        ${story.job.failedReason ? html`<div class="error">${story.job.failedReason}</div>` : ""}`
    : story.jobUnavailable ? html`<span class="error">${story.jobUnavailable}</span>` : html`<span class="muted">none in Redis</span>`}</dd>
</dl></section>

<h2 id="dispersal">Dispersal</h2>
<section class="card" aria-labelledby="dispersal">${story.dispersalEntries.length === 0 && !story.servicingFee
    ? html`<div class="empty">Nothing dispersed yet.</div>`
    : html`<table>
  <thead><tr><th>Lender</th><th>Lender id</th><th class="num">Units</th><th class="num">Amount</th><th>Date</th></tr></thead>
  <tbody>${story.dispersalEntries.map(
    (e) => html`<tr data-lender="${e.lenderId}"><td><strong>${e.lenderName}</strong></td><td>${copyable(e.lenderId)}</td>
      <td class="num">${e.ownershipUnits} / ${e.totalUnits}</td><td class="num">${money(e.amount)}</td><td>${e.dispersalDate}</td></tr>`,
  )}
  ${story.servicingFee ? html`<tr><td><strong>Servicing fee</strong></td><td>${copyable(story.servicingFee.id)}</td><td class="num">${story.servicingFee.annualRateBps} bps</td><td class="num">${money(story.servicingFee.amount)}</td><td></td></tr>` : ""}
  <tr><td colspan="3"><strong>Total</strong> <span class="muted">(lenders ${money(story.dispersal.toLenders)} + fee ${money(story.dispersal.fee)})</span></td><td class="num"><strong>${money(story.dispersal.total)}</strong></td><td></td></tr>
  </tbody></table>`}</section>

<h2 id="postings">Cash journal postings <span class="count neutral">${story.postings.length}</span></h2>
<section class="card" aria-labelledby="postings">${story.postings.length === 0
    ? html`<div class="empty">No posting names this obligation.</div>`
    : html`<table>
  <thead><tr><th class="num">#</th><th>Entry type</th><th class="num">Amount</th><th>Debit</th><th>Credit</th><th>Key</th><th>Actor</th><th>Time</th></tr></thead>
  <tbody>${story.postings.map(
    (p) => html`<tr data-entry-type="${p.entryType}"><td class="num">${p.sequence}</td><td><strong>${p.entryType}</strong>${p.reason ? html`<div class="muted">${p.reason}</div>` : ""}</td>
      <td class="num">${money(p.amount)}</td><td>${accountCell(p.debit)}</td><td>${accountCell(p.credit)}</td>
      <td>${copyable(p.idempotencyKey)}</td><td>${p.actor ?? "–"}${p.channel ? html`<div class="muted">${p.channel}</div>` : ""}</td><td class="mono">${p.createdAt}</td></tr>`,
  )}</tbody></table>`}</section>

<h2 id="timeline-heading">Timeline</h2>
<section class="card" aria-labelledby="timeline-heading"><ol class="timeline" id="timeline">${story.timeline.map(timelineRow)}</ol></section>
</main>
</body>
</html>`.value;
}

function timelineRow(item: TimelineItem): Html {
  const severity = typeof item.detail.severity === "string" ? item.detail.severity : "";
  return html`<li class="${item.kind}${severity ? ` sev-${severity}` : ""}" data-action="${item.action}">
    <span class="mono">${item.at}</span>
    <span><code>${item.action}</code>${item.amount ? html` <strong class="mono">${money(item.amount)}</strong>` : ""}</span>
    <span>${item.actor ? html`by <strong data-field="actor">${item.actor}</strong>` : ""}${item.reason ? html` — <span data-field="reason">${item.reason}</span>` : ""}</span>
  </li>`;
}
