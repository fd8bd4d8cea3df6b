// The read side finance and operators use without SQL: GET /api/obligations/:obligationId (the
// whole story), GET /api/search?q= (obligation id, mortgage reference, lender name),
// GET /api/escalations.csv (the open escalations for finance) and GET /api/money-at-risk (and
// .csv: the /ops header's figures by category). Viewers and operators alike; the reads run on the
// readers' pool (statement timeout), search throttled per user.
import { Router, type Response } from "express";
import { z } from "zod";
import { listEscalations, type EscalationView } from "../db/healing.js";
import { readMoneyAtRisk, type MoneyAtRisk } from "../db/moneyAtRisk.js";
import { SEARCH_MIN_CHARACTERS, searchObligations, type ObligationMatch } from "../db/obligationStory.js";
import { formatMoney } from "../domain/money.js";
import { idSchema } from "../domain/ids.js";
import type { PipelineContext } from "../jobs/context.js";
import { csvLine } from "./csv.js";
import { HttpError } from "./httpErrors.js";
import { CSV_READ_AUDIT_ACTION, STORY_READ_AUDIT_ACTION, auditRead } from "./requestAudit.js";
import { buildObligationStory } from "./obligationStoryView.js";
import { operatorOf } from "./auth.js";
import { searchThrottle } from "./searchThrottle.js";

export const SEARCH_LIMIT = 50;
const CSV_PAGE = 500;

const searchQuery = z.strictObject({
  q: z.string().trim().min(SEARCH_MIN_CHARACTERS, { error: `must be at least ${SEARCH_MIN_CHARACTERS} characters (fewer match too much to be worth a search)` }).max(200),
  limit: z.coerce.number().int().min(1).max(200).default(SEARCH_LIMIT),
});

export function obligationRoutes(ctx: PipelineContext): Router {
  const router = Router();
  const throttle = searchThrottle(ctx);

  router.get("/obligations/:obligationId", async (req, res) => {
    const id = parseOr400(idSchema, req.params.obligationId, "obligationId");
    const story = await buildObligationStory(ctx, id);
    if (!story) throw new HttpError(404, `no obligation ${id}`, { code: "OBLIGATION_NOT_FOUND" });
    await auditRead(ctx, res, { action: STORY_READ_AUDIT_ACTION, resourceType: "obligation_story", resourceId: id, channel: "api" });
    res.json(story);
  });

  router.get("/search", async (req, res) => {
    const query = parseOr400(searchQuery, req.query, "query");
    await throttle.take(operatorOf(res).name);
    const matches = await searchObligations(ctx.readers.db, query.q, query.limit);
    res.json({ q: query.q, obligations: matches.map(matchJson) });
  });

  router.get("/escalations.csv", async (_req, res) => {
    await auditRead(ctx, res, { action: CSV_READ_AUDIT_ACTION, resourceType: "escalations", resourceId: "open-escalations.csv", channel: "api" });
    await sendEscalationsCsv(ctx, res);
  });

  router.get("/money-at-risk", async (_req, res) => {
    res.json(moneyAtRiskJson(await readMoneyAtRisk(ctx.readers.db)));
  });

  router.get("/money-at-risk.csv", async (_req, res) => {
    const risk = await readMoneyAtRisk(ctx.readers.db);
    const currency = ctx.settings.CURRENCY;
    const stamp = new Date().toISOString().slice(0, 19).replaceAll(":", "-");
    res.setHeader("Content-Type", "text/csv; charset=utf-8; header=present");
    res.setHeader("Content-Disposition", `attachment; filename="money-at-risk-${stamp}.csv"`);
    res.send(
      csvLine(["category", "cents", "amount", "obligations"]) +
        csvLine(["suspense", risk.suspenseCents.toString(), formatMoney(risk.suspenseCents, currency), risk.openEscalations]) +
        csvLine(["shortfall", risk.shortfallCents.toString(), formatMoney(risk.shortfallCents, currency), risk.shortfallObligations]),
    );
  });

  return router;
}

/** Money at risk by category: SUSPENSE (open escalations, by age) and the shortfall; cents as strings. */
export function moneyAtRiskJson(risk: MoneyAtRisk) {
  return {
    suspenseCents: risk.suspenseCents.toString(),
    openEscalations: risk.openEscalations,
    oldestEscalatedAt: risk.oldestEscalatedAt,
    oldestAgeSeconds: risk.oldestAgeSeconds,
    ageBuckets: risk.ageBuckets,
    shortfallCents: risk.shortfallCents.toString(),
    shortfallObligations: risk.shortfallObligations,
  };
}

function parseOr400<T>(schema: z.ZodType<T>, input: unknown, what: string): T {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const detail = result.error.issues.map((i) => `${[what, ...i.path.map(String)].join(".")} ${i.message}`).join("; ");
  throw new HttpError(400, `invalid ${what}: ${detail}`.slice(0, 500));
}

export function matchJson(m: ObligationMatch) {
  return {
    obligationId: m.obligationId,
    mortgageId: m.mortgageId,
    mortgageReference: m.mortgageReference,
    obligationType: m.obligationType,
    amount: m.amount.toString(),
    status: m.status,
    dispersed: m.dispersed,
    settledAt: m.settledAt ? new Date(m.settledAt).toISOString() : null,
    healingStatus: m.healingStatus,
    matchedBy: m.matchedBy,
    lenderName: m.lenderName,
  };
}

const CSV_HEADER = [
  "obligation_id",
  "mortgage_reference",
  "obligation_type",
  "amount_cents",
  "amount",
  "suspense_cents",
  "suspense",
  "attempts",
  "requeues",
  "escalated_at",
  "age_seconds",
  "age_days",
  "last_error",
];

function csvRow(e: EscalationView, now: number, currency: string): unknown[] {
  const ageSeconds = e.escalatedAt ? Math.max(0, Math.floor((now - new Date(e.escalatedAt).getTime()) / 1000)) : "";
  return [
    e.obligationId,
    e.mortgageReference,
    e.obligationType,
    e.amount.toString(),
    formatMoney(e.amount, currency),
    e.suspenseBalance.toString(),
    formatMoney(e.suspenseBalance, currency),
    e.attemptCount,
    e.requeueCount,
    e.escalatedAt ? new Date(e.escalatedAt).toISOString() : "",
    ageSeconds,
    ageSeconds === "" ? "" : (ageSeconds / 86_400).toFixed(2),
    e.lastError ?? "",
  ];
}

/** Every open escalation, newest first, read page by page (keyset) and written as it is read. */
async function sendEscalationsCsv(ctx: PipelineContext, res: Response): Promise<void> {
  const now = Date.now();
  const first = await listEscalations(ctx.readers.db, { status: "escalated", limit: CSV_PAGE });
  const stamp = new Date(now).toISOString().slice(0, 19).replaceAll(":", "-");
  res.setHeader("Content-Type", "text/csv; charset=utf-8; header=present");
  res.setHeader("Content-Disposition", `attachment; filename="open-escalations-${stamp}.csv"`);
  res.write(csvLine(CSV_HEADER));
  let page = first;
  for (;;) {
    for (const e of page) res.write(csvLine(csvRow(e, now, ctx.settings.CURRENCY)));
    const last = page[page.length - 1];
    if (page.length < CSV_PAGE || !last) break;
    page = await listEscalations(ctx.readers.db, { status: "escalated", before: { listedAt: last.listedAt, obligationId: last.obligationId }, limit: CSV_PAGE });
  }
  res.end();
}
