// /ops/obligations/:obligationId: the whole story of one obligation as a page (server-rendered,
// every value escaped, no script): what was owed and settled, the mortgage's positions beside it,
// the cash received and returned, the allocations, SUSPENSE, the healing rounds and the requeue form
// (with its four-eyes state), every posting with both accounts, the job, and the timeline.
import type { Request, RequestHandler, Response } from "express";
import type { OpsUser } from "../config.js";
import type { StoryAccount } from "../db/obligationStory.js";
import { idSchema } from "../domain/ids.js";
import { formatMoney } from "../domain/money.js";
import { MAX_REASON_LENGTH } from "../domain/requeueReason.js";
import type { PipelineContext } from "../jobs/context.js";
import { formToken, operatorOf, type Operator } from "./auth.js";
import { buildObligationStory, type ObligationStory, type TimelineItem } from "./obligationStoryView.js";
import { Html, STYLE, age, html } from "./opsHtml.js";
import { STORY_READ_AUDIT_ACTION, auditRead } from "./requestAudit.js";

export function storyPage(ctx: PipelineContext, users: readonly OpsUser[]): RequestHandler {
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
    const operator = operatorOf(res);
    const retryOfJob = typeof req.query.retry === "string" && req.query.retry !== "" ? req.query.retry.slice(0, 200) : undefined;
    res.type("html").send(renderStoryPage(story, { operator, formToken: formToken(users, operator), currency: ctx.settings.CURRENCY, now: new Date(), retryOfJob }));
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

export interface StoryPageView {
  operator: Operator;
  /** The ops page's form token: the requeue, approve and withdraw forms post to the ops routes. */
  formToken: string;
  /** CURRENCY: every amount on the page is shown in it. */
  currency: string;
  now: Date;
  /** Set when Bull Board's Retry of this job led here (bullBoardRetry.ts): this form is its confirmation. */
  retryOfJob?: string | undefined;
}

export function renderStoryPage(story: ObligationStory, view: StoryPageView): string {
  const o = story.obligation;
  const h = story.healing;
  const { now, operator } = view;
  const money = (cents: string | null): string => (cents === null ? "" : formatMoney(BigInt(cents), view.currency));
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${story.mortgage.reference} · ${o.type.replaceAll("_", " ")} · ${money(o.amount)} – obligation story</title>
<style>${new Html(STYLE)}
  dl.facts { display:grid; grid-template-columns: max-content 1fr; gap:.3rem 1.2rem; padding:1rem; margin:0; }
  dl.facts dt { color:var(--muted); } dl.facts dd { margin:0; }
  ol.timeline { list-style:none; margin:0; padding:0; }
  ol.timeline li { display:grid; grid-template-columns: 15rem 22rem 1fr; gap:.8rem; padding:.5rem 1rem; border-bottom:1px solid var(--line); }
  ol.timeline li:last-child { border-bottom:none; }
  ol.timeline li.audit { background:var(--warnbg); } ol.timeline li.audit.sev-error { background:var(--errbg); }
  ol.timeline li .error { max-width:none; }
  tr.reversed td { color:var(--muted); text-decoration:line-through; } tr.reversed td.status { text-decoration:none; }
  section.requeue p { margin:0; padding:.7rem; }
  section.requeue input[name=reason] { font:inherit; padding:.3rem .6rem; }
</style>
</head>
<body>
<header>
  <h1>Obligation <code class="copy" id="obligation-id">${o.id}</code></h1>
  <span class="badge">${operator.name} · ${operator.role}</span>
  <nav><a href="#requeue">Requeue</a><a href="/ops">Ops page</a><a href="/api/obligations/${o.id}">JSON</a></nav>
</header>
<main>
<h2 id="obligation">The obligation</h2>
<section class="card" aria-labelledby="obligation"><dl class="facts">
  <dt>Obligation id</dt><dd>${copyable(o.id)}</dd>
  <dt>Mortgage</dt><dd><strong>${story.mortgage.reference}</strong> ${copyable(story.mortgage.id)}
    <span class="muted">· principal ${money(story.mortgage.principal)} · fee ${story.mortgage.servicingFeeBps} bps · ${story.mortgage.paymentFrequency.replaceAll("_", " ")}</span></dd>
  <dt>Type</dt><dd>${o.type.replaceAll("_", " ")}</dd>
  <dt>Amount</dt><dd class="mono" data-field="amount">${money(o.amount)}</dd>
  <dt>Status</dt><dd>${o.status}${o.dispersed ? " · dispersed" : " · not dispersed"}</dd>
  <dt>Due</dt><dd>${o.dueDate}</dd>
  <dt>Settled</dt><dd>${o.settledAt ? html`${o.settledAt} <span class="muted">(${age(o.settledAt, now)} ago)</span>` : "–"}</dd>
  <dt>Net settled cash</dt><dd class="mono" data-field="net-cash">${money(story.amounts.netCash)}</dd>
  <dt>Allocated</dt><dd class="mono" data-field="allocated">${money(story.amounts.allocated)}</dd>
  <dt>In SUSPENSE now</dt><dd class="mono" data-field="suspense">${money(story.suspenseBalance)}</dd>
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

<h2 id="requeue-heading">Requeue</h2>
<section class="card requeue" id="requeue" aria-labelledby="requeue-heading">${requeueSection(story, view, money)}</section>

<h2 id="positions">The mortgage's positions <span class="count neutral">${story.positions.length}</span></h2>
<section class="card" aria-labelledby="positions">${positionsTable(story)}</section>

<h2 id="cash">Cash received and returned</h2>
<section class="card" aria-labelledby="cash">${story.cash.length === 0
    ? html`<div class="empty">No payment posted for this obligation${o.status === "settled" ? " (settled by another system: its amount counts as the settled cash)" : ""}.</div>`
    : html`<table>
  <thead><tr><th></th><th>Payment reference</th><th class="num">Amount</th><th>By</th><th>Reason</th><th>Time</th></tr></thead>
  <tbody>${story.cash.map(
    (c) => html`<tr data-cash="${c.kind}" data-entry="${c.entryId}"><td><strong>${c.kind}</strong></td><td>${copyable(c.reference)}</td>
      <td class="num">${c.kind === "returned" ? "−" : ""}${money(c.amount)}</td><td>${c.actor ?? "–"}</td><td>${c.reason ?? ""}</td><td class="mono">${c.at}</td></tr>`,
  )}
  <tr><td colspan="2"><strong>Net received</strong></td><td class="num" data-field="net-received"><strong>${money(story.amounts.netReceived)}</strong></td><td colspan="3"></td></tr>
  </tbody></table>`}</section>

<h2 id="allocations">Allocations</h2>
<section class="card" aria-labelledby="allocations">${allocationsTable(story, money)}</section>

<h2 id="rounds">Healing rounds <span class="count neutral">${story.rounds.length}</span></h2>
<section class="card" aria-labelledby="rounds">${story.rounds.length === 0
    ? html`<div class="empty">Never needed healing: dispersed at settlement.</div>`
    : html`<table>
  <thead><tr><th class="num">Round</th><th>Began</th><th>Asked by</th><th>Reason</th><th>Approved by</th><th>Ended</th></tr></thead>
  <tbody>${story.rounds.map(
    (r) => html`<tr data-round="${r.round}"><td class="num">${r.round}</td><td class="mono">${r.startedAt}</td>
      <td>${r.startedBy ? html`<strong>${r.startedBy}</strong>${r.channel ? html` <span class="muted">(${r.channel})</span>` : ""}` : html`<span class="muted">the service (at settlement or by the scan)</span>`}</td>
      <td>${r.reason ?? ""}</td><td>${r.approvedBy ?? (r.round > 1 ? html`<span class="muted">–</span>` : "")}</td>
      <td data-field="outcome"><strong>${r.outcome}</strong>${r.endedAt ? html` <span class="mono muted">${r.endedAt}</span>` : ""}</td></tr>`,
  )}</tbody></table>`}</section>

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
<section class="card" aria-labelledby="timeline-heading"><ol class="timeline" id="timeline">${story.timeline.map((item) => timelineRow(item, money))}</ol></section>
</main>
</body>
</html>`.value;
}

type Money = (cents: string | null) => string;

/** Units and share of each lender now: the cause of "no active positions" is read here. */
function positionsTable(story: ObligationStory): Html {
  const total = story.positions.reduce((sum, p) => sum + BigInt(p.units), 0n);
  if (story.positions.length === 0) return html`<div class="empty error">The mortgage has no positions: nobody to disperse to.</div>`;
  return html`${total === 0n ? html`<div class="flash error" role="status">No position has units: a dispersal fails with "no active positions" until one has.</div>` : ""}<table>
  <thead><tr><th>Lender</th><th>Lender id</th><th class="num">Units</th><th class="num">Share</th></tr></thead>
  <tbody>${story.positions.map(
    (p) => html`<tr data-position="${p.lenderId}"><td><strong>${p.lenderName}</strong></td><td>${copyable(p.lenderId)}</td>
      <td class="num">${p.units}</td><td class="num">${total === 0n ? "–" : share(BigInt(p.units), total)}</td></tr>`,
  )}
  <tr><td colspan="2"><strong>Total</strong></td><td class="num" data-field="total-units"><strong>${total.toString()}</strong></td><td></td></tr>
  </tbody></table>`;
}

/** units / total as a percentage with two decimals, exactly (bigint), rounded half up. */
function share(units: bigint, total: bigint): string {
  const basisPoints = (units * 20_000n + total) / (total * 2n);
  return `${basisPoints / 100n}.${(basisPoints % 100n).toString().padStart(2, "0")}%`;
}

/** The entries and fees of each allocation (DESIGN.md §3), with their status; reversed ones struck through. */
function allocationsTable(story: ObligationStory, money: Money): Html {
  if (story.dispersalEntries.length === 0 && story.servicingFees.length === 0) return html`<div class="empty">Nothing allocated yet.</div>`;
  const numbers = [...new Set([...story.dispersalEntries.map((e) => e.allocation), ...story.servicingFees.map((f) => f.allocation)])].sort((a, b) => a - b);
  const rows = numbers.map((n) => {
    const entries = story.dispersalEntries.filter((e) => e.allocation === n);
    const fees = story.servicingFees.filter((f) => f.allocation === n);
    return html`<tbody data-allocation="${n}">${entries.map(
      (e) => html`<tr class="${e.status}" data-lender="${e.lenderId}" data-status="${e.status}"><td class="num">${n}</td><td><strong>${e.lenderName}</strong></td><td>${copyable(e.lenderId)}</td>
        <td class="num">${e.ownershipUnits} / ${e.totalUnits}</td><td class="num">${money(e.amount)}</td><td class="status">${e.status}</td><td>${e.dispersalDate}</td></tr>`,
    )}${fees.map(
      (f) => html`<tr class="${f.status}" data-fee="${f.id}" data-status="${f.status}"><td class="num">${n}</td><td><strong>Servicing fee</strong></td><td>${copyable(f.id)}</td>
        <td class="num">${f.annualRateBps} bps</td><td class="num">${money(f.amount)}</td><td class="status">${f.status}</td><td></td></tr>`,
    )}</tbody>`;
  });
  return html`<table>
  <thead><tr><th class="num">Allocation</th><th>Lender</th><th>Lender id</th><th class="num">Units</th><th class="num">Amount</th><th>Status</th><th>Date</th></tr></thead>
  ${rows}
  <tbody><tr><td colspan="4"><strong>Standing</strong> <span class="muted">(not reversed: lenders ${money(story.dispersal.toLenders)} + fee ${money(story.dispersal.fee)})</span></td>
    <td class="num" data-field="dispersal-total"><strong>${money(story.dispersal.total)}</strong></td><td colspan="2"></td></tr></tbody>
  </table>`;
}

/** The one action of the page: the ops routes' forms, with the four-eyes state beside them. */
function requeueSection(story: ObligationStory, view: StoryPageView, money: Money): Html {
  return html`${view.retryOfJob ? html`<div class="flash warn" data-field="bull-board-retry">Bull Board's Retry of job <code>${view.retryOfJob}</code> is a requeue of this obligation:
    ${story.healing?.status === "escalated" ? "give the reason below to confirm it (nothing has changed yet)." : "nothing to retry, it is not escalated."}</div>` : ""}${requeueAction(story, view, money)}`;
}

function requeueAction(story: ObligationStory, view: StoryPageView, money: Money): Html {
  const h = story.healing;
  if (!h || h.status !== "escalated") {
    return html`<p class="muted" data-requeue="not-escalated">${h ? `Healing is ${h.status}` : "It never needed healing"}: only an escalation is requeued.</p>`;
  }
  const canAct = view.operator.role === "operator";
  const token = html`<input type="hidden" name="_token" value="${view.formToken}"><input type="hidden" name="obligationId" value="${story.obligation.id}">`;
  const pending = story.pendingRequeue;
  const policy = html`<p class="muted" data-field="four-eyes">${story.approvalsRequired === 2 ? "Four eyes: a requeue waits until a second operator approves it." : "One operator requeues: the new round starts at once."} Each requeue is audited in the operator's name with the reason.</p>`;
  if (pending && !pending.expired) {
    const own = pending.requestedBy === view.operator.name;
    return html`<p data-requeue="pending" data-requested-by="${pending.requestedBy}">Requeue asked for by <strong>${pending.requestedBy}</strong> <span class="muted">(${pending.channel}, ${age(pending.createdAt, view.now)} ago; expires ${pending.expiresAt})</span>
      — <span data-field="pending-reason">${pending.reason}</span>. Waiting for a second operator's approval.</p>
    ${canAct
      ? html`<div class="actions">${own
          ? html`<span class="muted">Your request: another operator approves it.</span>`
          : html`<form method="post" action="/ops/requeue/approve">${token}<button type="submit">Approve the requeue of ${money(story.amounts.netCash)}</button></form>`}
        <form method="post" action="/ops/requeue/withdraw">${token}<button class="secondary" type="submit">Withdraw</button></form></div>`
      : ""}${policy}`;
  }
  const expired = pending?.expired ? html`<p class="muted" data-requeue="expired">${pending.requestedBy}'s request expired unapproved at ${pending.expiresAt}: ask again.</p>` : "";
  if (!canAct) return html`${expired}<p class="muted" data-requeue="viewer">Escalated: an operator can requeue it here once the cause is fixed.</p>${policy}`;
  return html`${expired}<form method="post" action="/ops/requeue" id="requeue-form">
    <input type="hidden" name="_token" value="${view.formToken}">
    <p>Requeue <strong>${story.mortgage.reference}</strong> · ${story.obligation.type.replaceAll("_", " ")} · <strong data-field="requeue-amount">${money(story.amounts.netCash)}</strong> for a new round of attempts (SUSPENSE ${money(story.suspenseBalance)} is reversed when it disperses).</p>
    <div class="actions">
      <label>Reason <input type="text" name="reason" required maxlength="${MAX_REASON_LENGTH}" size="56" placeholder="why will a new round succeed?" aria-label="reason for the requeue"></label>
      <button type="submit" name="only" value="${story.obligation.id}">${story.approvalsRequired === 2 ? "Ask for a requeue" : "Requeue"}</button>
    </div>
  </form>${policy}`;
}

function timelineRow(item: TimelineItem, money: Money): Html {
  const severity = typeof item.detail.severity === "string" ? item.detail.severity : "";
  return html`<li class="${item.kind}${severity ? ` sev-${severity}` : ""}" data-action="${item.action}">
    <span class="mono">${item.at}</span>
    <span><code>${item.action}</code>${item.amount ? html` <strong class="mono">${money(item.amount)}</strong>` : ""}</span>
    <span>${item.actor ? html`by <strong data-field="actor">${item.actor}</strong>` : ""}${item.reason ? html` — <span data-field="reason">${item.reason}</span>` : ""}</span>
  </li>`;
}
