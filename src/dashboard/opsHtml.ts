// The HTML of the ops page, rendered on the server: no front-end build, no script, every value
// escaped. Meant to be read by a tired person at 3 a.m.: big numbers, plain words, one action per row.
import type { EscalationGroup, SelectedEscalation } from "../db/escalationGroups.js";
import type { EscalationView } from "../db/healing.js";
import type { MoneyAtRisk } from "../db/moneyAtRisk.js";
import type { ObligationMatch } from "../db/obligationStory.js";
import type { ReconciliationReport } from "../db/reconciliation.js";
import type { PendingRequeue } from "../db/requeueRequests.js";
import { MAX_REASON_LENGTH } from "../domain/requeueReason.js";
import { formatMoney } from "../domain/money.js";
import type { Operator } from "./auth.js";

export interface Flash {
  kind: "ok" | "warn" | "error";
  text: string;
}

export interface OpsView {
  operator: Operator;
  formToken: string;
  open: EscalationView[];
  openTruncated: boolean;
  inProgress: EscalationView[];
  recentlyResolved: EscalationView[];
  reconciliation: ReconciliationReport | undefined;
  /** The latest runs, newest first (running and failed ones too). */
  reconciliationRuns?: ReconciliationReport[];
  flash: Flash | undefined;
  now: Date;
  bullBoardPath: string;
  retriggerQueue: string;
  moneyAtRisk: MoneyAtRisk;
  /** Present when the page was asked to search (/ops?q=…). */
  search?: { q: string; results: ObligationMatch[]; notice?: string | undefined } | undefined;
  /** Requeue requests waiting for a second operator (four-eyes policy at 2). */
  pending: PendingRequeue[];
  approvalsRequired: 1 | 2;
  /** Open escalations by cause, largest amount first, and the newest rows of each. */
  groups: EscalationGroup[];
  groupMembers: SelectedEscalation[];
  /** The ISO 4217 currency amounts are shown in (CURRENCY). */
  currency: string;
  /** This process's Redis connection is not ready: requeues, scans and Bull Board cannot work now. */
  redisUnreachable?: boolean;
}

export function escapeHtml(value: unknown): string {
  return String(value ?? "")
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

/** Tagged template that escapes every interpolation unless it is already rendered Html. */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  values.forEach((value, i) => {
    out += render(value) + strings[i + 1]!;
  });
  return new Html(out);
}

function render(value: unknown): string {
  if (value instanceof Html) return value.value;
  if (Array.isArray(value)) return value.map(render).join("");
  if (value === undefined || value === null || value === false) return "";
  return escapeHtml(value);
}

export function age(from: string | null, now: Date): string {
  if (!from) return "–";
  const seconds = Math.max(0, Math.floor((now.getTime() - new Date(from).getTime()) / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h ${minutes % 60}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

export const STYLE = `
  :root { color-scheme: light dark; --bg:#f6f7f9; --fg:#1b1f24; --muted:#5b6470; --card:#fff; --line:#d8dde3;
          --accent:#0b5cad; --ok:#13733a; --okbg:#e3f4e8; --warn:#8a5a00; --warnbg:#fff4d6; --err:#a61b1b; --errbg:#fde8e8; }
  @media (prefers-color-scheme: dark) {
    :root { --bg:#121417; --fg:#e6e9ed; --muted:#9aa4b0; --card:#1b1f24; --line:#2d333b; --accent:#6cb0ff;
            --ok:#6fd08f; --okbg:#16301f; --warn:#f0c060; --warnbg:#33290f; --err:#ff8a8a; --errbg:#3a1717; }
  }
  * { box-sizing: border-box; }
  body { margin:0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background:var(--bg); color:var(--fg); }
  header { display:flex; align-items:center; gap:1rem; padding:.8rem 1.5rem; background:var(--card); border-bottom:1px solid var(--line); }
  header h1 { font-size:1.15rem; margin:0; }
  header nav { margin-left:auto; display:flex; gap:1rem; align-items:center; }
  main { padding:1.2rem 1.5rem 3rem; max-width:1400px; }
  a { color:var(--accent); }
  h2 { font-size:1.05rem; margin:1.6rem 0 .6rem; }
  .count { display:inline-block; min-width:1.8em; padding:0 .5em; border-radius:1em; background:var(--errbg); color:var(--err); text-align:center; font-weight:600; }
  .count.zero { background:var(--okbg); color:var(--ok); } .count.neutral { background:var(--line); color:var(--fg); }
  .card { background:var(--card); border:1px solid var(--line); border-radius:8px; overflow-x:auto; }
  table { border-collapse:collapse; width:100%; }
  th, td { padding:.5rem .7rem; text-align:left; border-bottom:1px solid var(--line); vertical-align:top; }
  th { font-size:.8rem; text-transform:uppercase; letter-spacing:.03em; color:var(--muted); font-weight:600; }
  tr:last-child td { border-bottom:none; }
  td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
  th.num { text-align:right; }
  code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:.85em; }
  .error { color:var(--err); max-width:38ch; overflow-wrap:anywhere; }
  .muted { color:var(--muted); }
  .flash { padding:.7rem 1rem; border-radius:6px; margin-bottom:1rem; font-weight:500; }
  .flash.ok { background:var(--okbg); color:var(--ok); } .flash.warn { background:var(--warnbg); color:var(--warn); }
  .flash.error { background:var(--errbg); color:var(--err); }
  .outage { padding:.3rem .7rem; border-radius:6px; background:var(--errbg); color:var(--err); font-weight:600; }
  button { font:inherit; padding:.3rem .8rem; border-radius:5px; border:1px solid var(--accent); background:var(--accent); color:#fff; cursor:pointer; }
  button.secondary { background:transparent; color:var(--accent); }
  .actions { display:flex; gap:.8rem; align-items:center; padding:.7rem; border-top:1px solid var(--line); }
  .empty { padding:1rem; color:var(--muted); }
  .badge { padding:.1rem .5rem; border-radius:4px; font-size:.8rem; background:var(--line); }
  .status-clean { color:var(--ok); font-weight:600; } .status-defects, .status-failed { color:var(--err); font-weight:600; }
  input[type=checkbox] { width:1.1rem; height:1.1rem; }
  .risk { display:flex; flex-wrap:wrap; gap:.8rem; margin:.2rem 0 1rem; }
  .risk .tile { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:.6rem 1rem; min-width:11rem; }
  .risk .tile .label { font-size:.8rem; color:var(--muted); text-transform:uppercase; letter-spacing:.03em; }
  .risk .tile .value { font-size:1.5rem; font-weight:650; font-variant-numeric:tabular-nums; }
  .risk .tile.alarm .value { color:var(--err); }
  form.search { display:flex; gap:.5rem; margin:1rem 0 .4rem; }
  form.search input[type=search] { font:inherit; padding:.3rem .6rem; min-width:28rem; border:1px solid var(--line); border-radius:5px; background:var(--card); color:var(--fg); }
  details summary { cursor:pointer; color:var(--accent); }
  tbody.group tr.members td { padding-top:0; }
  tbody.group + tbody.group tr:first-child td { border-top:2px solid var(--line); }
  .copy { user-select:all; -webkit-user-select:all; cursor:text; }
`;

export function renderOpsPage(view: OpsView): string {
  const canAct = view.operator.role === "operator";
  const board = view.bullBoardPath;
  const failedJobs = `${board}/queue/${encodeURIComponent(view.retriggerQueue)}?status=failed`;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${view.open.length > 0 ? `(${view.open.length}${view.openTruncated ? "+" : ""}) ` : ""}Dispersal healing – ops</title>
<style>${new Html(STYLE)}</style>
</head>
<body>
<header>
  <h1>Dispersal healing</h1>
  <span class="badge">${view.operator.name} · ${view.operator.role}${canAct ? "" : " (read-only)"}</span>
  ${view.redisUnreachable ? html`<span class="outage" role="alert">Redis is unreachable: requeues and scans are refused until it is back; what this page lists comes from Postgres.</span>` : ""}
  <nav>
    <a href="${board}">Bull Board</a>
    <a href="${failedJobs}">Failed retrigger jobs</a>
    <a href="/api/escalations.csv">Escalations CSV</a>
    <a href="/api/money-at-risk.csv">Money at risk CSV</a>
    <a href="/api/reconciliation/latest">Reconciliation JSON</a>
    ${canAct ? scanForm(view.formToken) : ""}
  </nav>
</header>
<main>
${view.flash ? html`<div class="flash ${view.flash.kind}" role="status">${view.flash.text}</div>` : ""}
${riskHeader(view.moneyAtRisk, view.currency)}
${searchForm(view.search?.q ?? "")}
${view.search ? searchResults(view.search.q, view.search.results, view.search.notice, view.currency) : ""}
<h2 id="groups">Escalations by cause <span class="count ${view.groups.length === 0 ? "zero" : "neutral"}">${view.groups.length}</span></h2>
<p class="muted">The same mortgage and the same error (ids and numbers aside) usually have one cause: fix it once, then requeue the whole group.</p>
<section aria-labelledby="groups">${groupsTable(view, canAct)}</section>
<h2 id="open">Open escalations <span class="count ${view.open.length === 0 ? "zero" : ""}">${view.open.length}${view.openTruncated ? "+" : ""}</span></h2>
<p class="muted">Settled cash that could not be dispersed after every attempt; it sits in SUSPENSE. Fix the cause (positions, data), then requeue.</p>
<section aria-labelledby="open">${openTable(view, canAct)}</section>
${view.approvalsRequired === 2 || view.pending.length > 0 ? pendingSection(view, canAct) : ""}
<h2 id="in-progress">In progress (requeued) <span class="count neutral">${view.inProgress.length}</span></h2>
<section aria-labelledby="in-progress">${progressTable(view.inProgress, view)}</section>
<h2 id="resolved">Recently resolved</h2>
<section aria-labelledby="resolved">${resolvedTable(view.recentlyResolved, view)}</section>
<h2 id="reconciliation">Latest reconciliation</h2>
<section aria-labelledby="reconciliation">${reconciliationCard(view.reconciliation, view.now)}${reconciliationRunsCard(view.reconciliationRuns ?? [], view.now)}</section>
</main>
</body>
</html>`.value;
}

function scanForm(token: string): Html {
  return html`<form method="post" action="/ops/scan"><input type="hidden" name="_token" value="${token}"><button class="secondary" type="submit">Scan now</button></form>`;
}

function jobLink(view: OpsView, jobId: string | null): Html | string {
  if (!jobId) return "–";
  return html`<a class="mono" href="${view.bullBoardPath}/queue/${encodeURIComponent(view.retriggerQueue)}/${encodeURIComponent(jobId)}">job</a>`;
}

export function storyPath(obligationId: string): string {
  return `/ops/obligations/${encodeURIComponent(obligationId)}`;
}

function obligationCell(e: { obligationId: string; obligationType: string }): Html {
  return html`<a class="mono story-link" href="${storyPath(e.obligationId)}" title="the whole story of this obligation">${e.obligationId}</a><br><span class="muted">${e.obligationType.replaceAll("_", " ")}</span>`;
}

/** Money at risk at a glance: what is parked in SUSPENSE, how many escalations, for how long; what was paid out of cash since returned. */
function riskHeader(risk: MoneyAtRisk, currency: string): Html {
  const b = risk.ageBuckets;
  const alarm = risk.openEscalations > 0 ? "alarm" : "";
  const short = risk.shortfallObligations > 0 ? "alarm" : "";
  return html`<section class="risk" id="money-at-risk" aria-label="Money at risk">
    <div class="tile ${alarm}" data-risk="suspense"><div class="label">In SUSPENSE</div><div class="value">${formatMoney(risk.suspenseCents, currency)}</div></div>
    <div class="tile ${alarm}" data-risk="open"><div class="label">Open escalations</div><div class="value">${risk.openEscalations}</div></div>
    <div class="tile" data-risk="oldest"><div class="label">Oldest open</div><div class="value">${risk.oldestEscalatedAt ? ageOfSeconds(risk.oldestAgeSeconds) : "–"}</div></div>
    <div class="tile" data-risk="buckets"><div class="label">By age</div><div class="value">
      <span title="less than a day" data-bucket="under-1d">${b.underOneDay}</span> <span class="muted">&lt;1d</span> ·
      <span title="one to seven days" data-bucket="1-7d">${b.oneToSevenDays}</span> <span class="muted">1–7d</span> ·
      <span title="more than seven days" data-bucket="over-7d">${b.overSevenDays}</span> <span class="muted">&gt;7d</span></div></div>
    <div class="tile ${short}" data-risk="shortfall" title="paid out to lenders beyond the cash held: payments returned after the payout"><div class="label">Shortfall</div><div class="value">${formatMoney(risk.shortfallCents, currency)}</div></div>
    <div class="tile ${short}" data-risk="shortfall-obligations"><div class="label">Obligations short</div><div class="value">${risk.shortfallObligations}</div></div>
  </section>`;
}

function ageOfSeconds(seconds: number): string {
  return age(new Date(Date.now() - seconds * 1000).toISOString(), new Date());
}

function searchForm(q: string): Html {
  return html`<form class="search" method="get" action="/ops" role="search">
    <input type="search" name="q" value="${q}" placeholder="Obligation id (or its first 8 characters), mortgage reference, lender name" aria-label="search obligations" maxlength="200">
    <button class="secondary" type="submit">Search</button>
  </form>`;
}

function searchResults(q: string, results: ObligationMatch[], notice: string | undefined, currency: string): Html {
  if (notice) return html`<section id="search-results" class="card"><div class="empty" role="status">${notice}</div></section>`;
  if (results.length === 0) return html`<section id="search-results" class="card"><div class="empty">Nothing matches “${q}”.</div></section>`;
  return html`<section id="search-results" class="card"><table>
    <thead><tr><th>Mortgage</th><th>Obligation</th><th class="num">Amount</th><th>Status</th><th>Healing</th><th>Matched</th></tr></thead>
    <tbody>${results.map(
      (r) => html`<tr data-obligation="${r.obligationId}"><td><strong>${r.mortgageReference}</strong></td><td>${obligationCell(r)}</td>
        <td class="num">${formatMoney(r.amount, currency)}</td><td>${r.status}${r.dispersed ? " · dispersed" : ""}</td>
        <td>${r.healingStatus ?? html`<span class="muted">–</span>`}</td>
        <td class="muted">${r.matchedBy === "lender" ? `lender ${r.lenderName ?? ""}` : r.matchedBy}</td></tr>`,
    )}</tbody></table></section>`;
}

/** The link to a group's dry run and confirmation (/ops/groups/requeue): its filter in the query. */
export function groupRequeuePath(group: { mortgageId: string; error: string | null }): string {
  const query = new URLSearchParams({ mortgageId: group.mortgageId });
  if (group.error === null) query.set("noError", "1");
  else query.set("error", group.error);
  return `/ops/groups/requeue?${query.toString()}`;
}

function groupsTable(view: OpsView, canAct: boolean): Html {
  if (view.groups.length === 0) return html`<div class="card"><div class="empty">Nothing escalated. Nothing to do.</div></div>`;
  const key = (mortgageId: string, error: string | null) => JSON.stringify([mortgageId, error]);
  const members = new Map<string, SelectedEscalation[]>();
  for (const m of view.groupMembers) members.set(key(m.mortgageId, m.error), [...(members.get(key(m.mortgageId, m.error)) ?? []), m]);
  const groups = view.groups.map((g) => {
    const rows = members.get(key(g.mortgageId, g.error)) ?? [];
    return html`<tbody class="group" data-group-mortgage="${g.mortgageId}" data-group-count="${g.count}">
      <tr>
        <td><strong>${g.mortgageReference}</strong></td>
        <td class="error">${g.error ?? html`<span class="muted">no error recorded</span>`}</td>
        <td class="num">${g.count}</td>
        <td class="num">${formatMoney(g.amount, view.currency)}</td>
        <td class="num" title="${g.oldestEscalatedAt ?? ""}">${age(g.oldestEscalatedAt, view.now)}</td>
        <td>${canAct ? html`<a class="requeue-group" href="${groupRequeuePath({ mortgageId: g.mortgageId, error: g.error })}">Requeue all ${g.count}</a>` : ""}</td>
      </tr>
      <tr class="members"><td colspan="6"><details><summary>${rows.length < g.count ? `Show the newest ${rows.length} of ${g.count}` : `Show ${g.count === 1 ? "it" : `the ${g.count}`}`}</summary>
        <table><thead><tr><th>Obligation</th><th class="num">Amount</th><th class="num">Escalated</th></tr></thead><tbody>${rows.map(
          (m) => html`<tr data-obligation="${m.obligationId}"><td><a class="mono story-link" href="${storyPath(m.obligationId)}">${m.obligationId}</a></td>
            <td class="num">${formatMoney(m.amount, view.currency)}</td><td class="num" title="${m.escalatedAt ?? ""}">${age(m.escalatedAt, view.now)} ago</td></tr>`,
        )}</tbody></table></details></td></tr>
    </tbody>`;
  });
  return html`<div class="card"><table id="groups-table">
    <thead><tr><th>Mortgage</th><th>Error</th><th class="num">Count</th><th class="num">Amount</th><th class="num">Oldest</th><th></th></tr></thead>
    ${groups}
  </table></div>`;
}

function openTable(view: OpsView, canAct: boolean): Html {
  if (view.open.length === 0) return html`<div class="card"><div class="empty">Nothing escalated. Nothing to do.</div></div>`;
  const rows = view.open.map(
    (e) => html`<tr data-obligation="${e.obligationId}">
      ${canAct ? html`<td><input type="checkbox" name="obligationId" value="${e.obligationId}" aria-label="select ${e.mortgageReference}"></td>` : ""}
      <td><strong>${e.mortgageReference}</strong></td>
      <td>${obligationCell(e)}</td>
      <td class="num">${formatMoney(e.amount, view.currency)}</td>
      <td class="num">${formatMoney(e.suspenseBalance, view.currency)}</td>
      <td class="num">${e.attemptCount}${e.requeueCount > 0 ? html`<br><span class="muted">${e.requeueCount} requeue${e.requeueCount === 1 ? "" : "s"}</span>` : ""}</td>
      <td class="error" title="${e.lastError ?? ""}">${truncate(e.lastError, 160) || html`<span class="muted">–</span>`}</td>
      <td class="num" title="${e.escalatedAt ?? ""}">${age(e.escalatedAt, view.now)}</td>
      <td>${jobLink(view, e.lastJobId)}</td>
      ${canAct ? html`<td><button type="submit" name="only" value="${e.obligationId}">Requeue</button></td>` : ""}
    </tr>`,
  );
  const table = html`<table>
    <thead><tr>${canAct ? html`<th><span class="muted">✓</span></th>` : ""}<th>Mortgage</th><th>Obligation</th><th class="num">Amount</th><th class="num">In suspense</th>
      <th class="num">Attempts</th><th>Last error</th><th class="num">Age</th><th>Job</th>${canAct ? html`<th></th>` : ""}</tr></thead>
    <tbody>${rows}</tbody>
  </table>`;
  const more = view.openTruncated ? html`<div class="actions muted">Showing the newest ${view.open.length}; use the API (GET /api/escalations) for the rest.</div>` : "";
  if (!canAct) return html`<div class="card">${table}${more}</div>`;
  return html`<form class="card" method="post" action="/ops/requeue">
    <input type="hidden" name="_token" value="${view.formToken}">
    ${table}
    <div class="actions">
      <label>Reason <input type="text" name="reason" required maxlength="${MAX_REASON_LENGTH}" size="48" placeholder="why will a new round succeed?" aria-label="reason for the requeue"></label>
      <button type="submit" name="selected" value="1">Requeue selected</button>
      <button class="secondary" type="submit" name="dryRun" value="1" formnovalidate>Preview (dry run)</button>
      <span class="muted">${view.approvalsRequired === 2 ? "A second operator must approve each requeue. " : ""}Each requeue starts a new round of attempts and is audited in your name with its reason.</span></div>
    ${more}
  </form>`;
}

function pendingSection(view: OpsView, canAct: boolean): Html {
  const rows = view.pending.map((p) => {
    const own = p.requestedBy === view.operator.name;
    const form = (action: string, label: string, cls: string) =>
      html`<form method="post" action="/ops/requeue/${action}" style="display:inline"><input type="hidden" name="_token" value="${view.formToken}"><input type="hidden" name="obligationId" value="${p.obligationId}"><button class="${cls}" type="submit">${label}</button></form>`;
    const approval = p.expired
      ? html`<span class="muted">expired unapproved: ask again</span> `
      : own
        ? html`<span class="muted">your request: another operator approves</span> `
        : form("approve", "Approve", "");
    return html`<tr data-pending="${p.obligationId}"${p.expired ? html` data-expired="true"` : ""}>
      <td><strong>${p.mortgageReference}</strong><br><a class="mono story-link" href="${storyPath(p.obligationId)}">${p.obligationId}</a></td>
      <td class="num">${formatMoney(p.amount, view.currency)}</td>
      <td class="requested-by">${p.requestedBy} <span class="muted">(${p.channel})</span></td>
      <td class="reason">${p.reason}</td>
      <td class="num" title="${p.requestedAt}">${age(p.requestedAt, view.now)} ago${p.expired ? html`<br><span class="expired" title="${p.expiresAt}">expired</span>` : ""}</td>
      ${canAct ? html`<td>${approval}${form("withdraw", "Withdraw", "secondary")}</td>` : ""}
    </tr>`;
  });
  return html`<h2 id="pending">Requeues waiting for approval <span class="count neutral">${view.pending.length}</span></h2>
<section aria-labelledby="pending">${
    view.pending.length === 0
      ? html`<div class="card"><div class="empty">None.</div></div>`
      : html`<div class="card"><table><thead><tr><th>Mortgage</th><th class="num">Amount</th><th>Asked by</th><th>Why</th><th class="num">Asked</th>${canAct ? html`<th></th>` : ""}</tr></thead><tbody>${rows}</tbody></table></div>`
  }</section>`;
}

function progressTable(rows: EscalationView[], view: OpsView): Html {
  if (rows.length === 0) return html`<div class="card"><div class="empty">None.</div></div>`;
  return html`<div class="card"><table>
    <thead><tr><th>Mortgage</th><th>Obligation</th><th class="num">Amount</th><th class="num">Attempts this round</th><th>Last error</th><th class="num">Escalated</th><th>Job</th></tr></thead>
    <tbody>${rows.map(
      (e) => html`<tr data-obligation="${e.obligationId}"><td><strong>${e.mortgageReference}</strong></td><td>${obligationCell(e)}</td>
        <td class="num">${formatMoney(e.amount, view.currency)}</td><td class="num">${e.attemptCount}</td>
        <td class="error">${truncate(e.lastError, 160)}</td><td class="num">${age(e.escalatedAt, view.now)} ago</td><td>${jobLink(view, e.lastJobId)}</td></tr>`,
    )}</tbody></table></div>`;
}

function resolvedTable(rows: EscalationView[], view: OpsView): Html {
  if (rows.length === 0) return html`<div class="card"><div class="empty">No escalation resolved yet.</div></div>`;
  return html`<div class="card"><table>
    <thead><tr><th>Mortgage</th><th>Obligation</th><th class="num">Amount</th><th class="num">In suspense</th><th class="num">Escalated</th><th>Status</th></tr></thead>
    <tbody>${rows.map(
      (e) => html`<tr data-obligation="${e.obligationId}"><td><strong>${e.mortgageReference}</strong></td><td>${obligationCell(e)}</td>
        <td class="num">${formatMoney(e.amount, view.currency)}</td><td class="num">${formatMoney(e.suspenseBalance, view.currency)}</td>
        <td class="num">${age(e.escalatedAt, view.now)} ago</td><td class="status-clean">resolved</td></tr>`,
    )}</tbody></table></div>`;
}

const CHECK_LABELS: Record<string, string> = {
  staleOrphans: "Orphans past their deadline (scan interval + round backoff + margin)",
  rejectedOrphans: "Orphans whose retrigger job was refused as unrecoverable",
  conservationDefects: "Dispersed obligations whose journal allocates less than their net settled cash",
  payablesMismatch: "Obligations whose dispersal entries disagree with the journal's payables (per lender)",
  feeMismatch: "Obligations whose servicing fee entries disagree with the journal's fee",
  overAllocated: "Obligations that owe lenders more than their net cash (a shortfall)",
  settledWithoutCash: "Settled obligations with no net cash left (every payment returned)",
  escalatedSuspenseMismatch: "Escalations whose SUSPENSE ≠ net cash − allocated",
  openSuspenseMismatch: "Retrying or requeued obligations whose SUSPENSE is neither 0 nor net cash − allocated",
  resolvedSuspenseNotCleared: "SUSPENSE held by an obligation that is not an open escalation",
  accountTotalsMismatch: "Accounts whose totals ≠ their journal lines",
  duplicateIdempotencyKeys: "Duplicate idempotency keys",
};

function reconciliationCard(report: ReconciliationReport | undefined, now: Date): Html {
  if (!report) return html`<div class="card"><div class="empty">No reconciliation has finished yet (it runs daily; <code>dispersal reconcile</code> runs one now).</div></div>`;
  const checks = Object.entries(report.findings).filter((entry): entry is [string, { count: number; sample: string[] }] => typeof entry[1] === "object");
  return html`<div class="card">
    <div class="actions">
      <span class="status-${report.status}">${report.status === "clean" ? "Clean" : report.status === "defects" ? `${report.defectCount} defect${report.defectCount === 1 ? "" : "s"}` : report.status}</span>
      <span class="muted">finished ${age(report.finishedAt ?? report.startedAt, now)} ago · ${report.finishedAt ?? report.startedAt}</span>
      <span class="muted">${scopeText(report)}</span>
    </div>
    ${report.findings.error ? html`<div class="flash error">The run failed: ${report.findings.error}</div>` : ""}
    <table><thead><tr><th>Check</th><th class="num">Found</th><th>First ids</th></tr></thead>
    <tbody>${checks.map(
      ([name, finding]) => html`<tr><td>${CHECK_LABELS[name] ?? name}</td>
        <td class="num ${finding.count > 0 ? "status-defects" : "status-clean"}">${finding.count}</td>
        <td class="mono">${finding.sample.slice(0, 5).join(", ")}${finding.sample.length > 5 ? " …" : ""}</td></tr>`,
    )}</tbody></table>
  </div>`;
}

/** "incremental · 12 obligations checked · journal 1,040 → 1,100", or "full · 9,000 obligations checked · journal to 1,100". */
function scopeText(report: ReconciliationReport): string {
  const checked = report.obligationsChecked === null ? "" : ` · ${report.obligationsChecked.toLocaleString("en-US")} obligation${report.obligationsChecked === 1 ? "" : "s"} checked`;
  const mark = (m: string) => BigInt(m).toLocaleString("en-US");
  const journal = report.journalMark === null ? "" : report.fromMark === null ? ` · journal to ${mark(report.journalMark)}` : ` · journal ${mark(report.fromMark)} → ${mark(report.journalMark)}`;
  return `${report.scope}${checked}${journal}`;
}

function reconciliationRunsCard(runs: ReconciliationReport[], now: Date): Html | string {
  if (runs.length === 0) return "";
  return html`<div class="card"><h3>Recent runs</h3>
    <table><thead><tr><th>Started</th><th>Scope</th><th>Status</th><th class="num">Obligations checked</th><th class="num">Defects</th><th>Journal</th></tr></thead>
    <tbody>${runs.map(
      (run) => html`<tr><td>${age(run.startedAt, now)} ago</td><td>${run.scope}</td>
        <td class="status-${run.status}">${run.status}</td>
        <td class="num">${run.obligationsChecked === null ? "" : run.obligationsChecked.toLocaleString("en-US")}</td>
        <td class="num">${run.defectCount}</td>
        <td class="mono">${run.journalMark === null ? "" : run.fromMark === null ? `to ${run.journalMark}` : `${run.fromMark} → ${run.journalMark}`}</td></tr>`,
    )}</tbody></table>
  </div>`;
}

function truncate(text: string | null, max: number): string {
  if (!text) return "";
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
