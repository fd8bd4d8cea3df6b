// The JSON API under /api: validate input (zod), call db/healing and jobs/requeue, map errors to
// HTTP (httpErrors.ts). Money leaves as strings of integer cents.
import express, { Router, type Request } from "express";
import { z } from "zod";
import { idSchema } from "../domain/ids.js";
import { groupEscalations, type EscalationGroup, type EscalationSelection } from "../db/escalationGroups.js";
import { listEscalations, type EscalationView } from "../db/healing.js";
import { receivePayment, returnPayment, type PaymentReceipt, type PaymentReturn } from "../db/payments.js";
import { latestReconciliation, recentReconciliations } from "../db/reconciliation.js";
import { paymentAmountSchema, paymentReferenceSchema } from "../domain/paymentInput.js";
import { listPendingRequeues } from "../db/requeueRequests.js";
import { requeueReasonSchema } from "../domain/requeueReason.js";
import type { PipelineContext } from "../jobs/context.js";
import { approveRequeue, requestRequeue, requiredApprovals, withdrawRequeue } from "../jobs/requeue.js";
import { operatorOf, requireOperatorRole, requireServiceRole } from "./auth.js";
import { HttpError, notFound } from "./httpErrors.js";
import { obligationRoutes } from "./obligationsApi.js";
import { MAX_BULK_REQUEUE, dryRunRequeueMany, dryRunSelection, requeueMany, requeueSelection, type SelectionDryRun } from "./requeueMany.js";
import { requestScan } from "./scanRequest.js";

export const BODY_LIMIT = "64kb";
/** A payment is two short strings: anything bigger is not one. */
export const PAYMENT_BODY_LIMIT = "2kb";

const healingStatus = z.enum(["escalated", "requeued", "retrying", "resolved"]);
const obligationId = idSchema;

const listQuery = z.strictObject({
  status: healingStatus.default("escalated"),
  mortgageId: idSchema.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().max(300).optional(),
});

/**
 * A timestamptz as Postgres prints it, or ISO 8601: it goes back into SQL as ::timestamptz, so every
 * field must be one Postgres accepts (a hand-made month 13 would otherwise answer 500).
 */
const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?(Z|[+-](\d{2})(:?(\d{2}))?)$/;
const timestamp = z.string().refine(isRealTimestamp, { error: "is not a timestamp" });
const cursorContent = z.tuple([timestamp, idSchema]);

const paymentBody = z.strictObject({ reference: paymentReferenceSchema, amount: paymentAmountSchema });
// A return's reason follows the same visible-text rule as a requeue's.
const paymentReturnBody = z.strictObject({ reason: requeueReasonSchema });

function isRealTimestamp(value: string): boolean {
  const m = TIMESTAMP.exec(value);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  const offsetOk = m[9] === undefined || (Number(m[9]) <= 15 && (m[11] === undefined || Number(m[11]) <= 59));
  return year >= 1 && month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth && hour <= 23 && minute <= 59 && second <= 59 && offsetOk;
}

const requeueBody = z.strictObject({ reason: requeueReasonSchema });

const bulkSelection = z.union([
  z.strictObject({ obligationIds: z.array(obligationId).min(1).max(MAX_BULK_REQUEUE), reason: z.unknown().optional(), dryRun: z.boolean().optional() }),
  z.strictObject({
    all: z.literal(true),
    filter: z.strictObject({ mortgageId: idSchema.optional() }).default({}),
    reason: z.unknown().optional(),
    dryRun: z.boolean().optional(),
  }),
  // By filter, confirmed by count: every escalation it matches, refused (409) when that is not expectedCount.
  z.strictObject({
    filter: z.strictObject({
      mortgageId: idSchema.optional(),
      error: z.string().max(2000).nullable().optional(),
      escalatedBefore: timestamp.optional(),
    }),
    expectedCount: z.number().int().min(0).optional(),
    reason: z.unknown().optional(),
    dryRun: z.boolean().optional(),
  }),
]);

const groupsQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(1000).default(200) });

export function apiRoutes(ctx: PipelineContext): Router {
  const router = Router();
  // The payments intake (service accounts only) parses its own, smaller body: it comes before the
  // router-wide parser. Same reference and amount again: the same answer, nothing written.
  router.post(
    "/obligations/:obligationId/payments",
    requireServiceRole(),
    express.json({ limit: PAYMENT_BODY_LIMIT, strict: true }),
    async (req, res) => {
      requireJson(req);
      const id = parse(idSchema, req.params.obligationId, "obligationId");
      const body = parse(paymentBody, req.body, "body");
      const receipt = await receivePayment(ctx.database.db, { obligationId: id, ...body, actor: operatorOf(res).name, channel: "api" });
      if (receipt.replayed) res.setHeader("Idempotent-Replayed", "true");
      res.status(201).json(paymentJson(receipt));
    },
  );
  // A returned payment (a bounced cheque, a charge-back): the REVERSAL of its CASH_RECEIVED and the
  // allocation that follows, in one transaction. The same reference again: the same answer.
  router.post(
    "/obligations/:obligationId/payments/:reference/return",
    requireServiceRole(),
    express.json({ limit: PAYMENT_BODY_LIMIT, strict: true }),
    async (req, res) => {
      requireJson(req);
      const id = parse(idSchema, req.params.obligationId, "obligationId");
      const reference = parse(paymentReferenceSchema, req.params.reference, "reference");
      const body = parse(paymentReturnBody, req.body, "body");
      const returned = await returnPayment(ctx.database.db, { obligationId: id, reference, reason: body.reason, actor: operatorOf(res).name, channel: "api" });
      if (returned.replayed) res.setHeader("Idempotent-Replayed", "true");
      res.status(returned.replayed ? 200 : 201).json(paymentReturnJson(returned));
    },
  );
  router.use(express.json({ limit: BODY_LIMIT, strict: true }));

  router.get("/escalations", async (req, res) => {
    const query = parse(listQuery, req.query, "query");
    const before = query.cursor ? decodeCursor(query.cursor) : undefined;
    const rows = await listEscalations(ctx.database.db, {
      status: query.status,
      ...(query.mortgageId ? { mortgageId: query.mortgageId } : {}),
      ...(before ? { before } : {}),
      limit: query.limit + 1,
    });
    const page = rows.slice(0, query.limit);
    const last = page[page.length - 1];
    const nextCursor = rows.length > query.limit && last ? encodeCursor(last) : null;
    res.json({ escalations: page.map(escalationJson), nextCursor });
  });

  router.get("/escalations/groups", async (req, res) => {
    const query = parse(groupsQuery, req.query, "query");
    const groups = await groupEscalations(ctx.database.db, { limit: query.limit });
    res.json({ groups: groups.map(groupJson) });
  });

  router.post("/escalations/requeue", requireOperatorRole(), async (req, res) => {
    requireJson(req);
    const body = parse(bulkSelection, req.body, "body");
    if (!("obligationIds" in body) && !("all" in body)) {
      const filter = selectionOf(body.filter);
      const { expectedCount } = body;
      if (body.dryRun) {
        res.json(selectionDryRunJson(await dryRunSelection(ctx, filter, expectedCount)));
        return;
      }
      if (expectedCount === undefined) throw new HttpError(400, "invalid body: expectedCount is required with a filter (a dry run answers the count it matches)");
      const reason = parse(requeueReasonSchema, body.reason, "reason");
      const summary = await requeueSelection(ctx, filter, expectedCount, { actor: operatorOf(res).name, channel: "api", reason });
      res.status(summary.interrupted ? 503 : 200).json(summary);
      return;
    }
    const ids =
      "obligationIds" in body
        ? body.obligationIds
        : (
            await listEscalations(ctx.database.db, {
              status: "escalated",
              ...(body.filter.mortgageId ? { mortgageId: body.filter.mortgageId } : {}),
              limit: MAX_BULK_REQUEUE,
            })
          ).map((e) => e.obligationId);
    if (body.dryRun) {
      res.json(await dryRunRequeueMany(ctx, ids));
      return;
    }
    const reason = parse(requeueReasonSchema, body.reason, "reason");
    const summary = await requeueMany(ctx, ids, { actor: operatorOf(res).name, channel: "api", reason });
    res.status(summary.interrupted ? 503 : 200).json(summary);
  });

  router.get("/escalations/requeue/pending", async (_req, res) => {
    const pending = await listPendingRequeues(ctx.database.db, 500, ctx.settings.REQUEUE_APPROVAL_TTL);
    res.json({ approvalsRequired: await requiredApprovals(ctx), pending: pending.map((p) => ({ ...p, amount: p.amount.toString() })) });
  });

  router.post("/escalations/:obligationId/requeue", requireOperatorRole(), async (req, res) => {
    const id = parse(obligationId, req.params.obligationId, "obligationId");
    const { reason } = parse(requeueBody, req.body ?? {}, "body");
    res.status(202).json(await requestRequeue(ctx, id, { actor: operatorOf(res).name, channel: "api", reason }));
  });

  router.post("/escalations/:obligationId/requeue/approve", requireOperatorRole(), async (req, res) => {
    const id = parse(obligationId, req.params.obligationId, "obligationId");
    res.status(202).json(await approveRequeue(ctx, id, operatorOf(res).name, "api"));
  });

  router.post("/escalations/:obligationId/requeue/withdraw", requireOperatorRole(), async (req, res) => {
    const id = parse(obligationId, req.params.obligationId, "obligationId");
    res.status(200).json(await withdrawRequeue(ctx, id, operatorOf(res).name, "api"));
  });

  router.post("/healing/scan", requireOperatorRole(), async (_req, res) => {
    res.status(202).json(await requestScan(ctx, operatorOf(res).name));
  });

  router.get("/reconciliation/latest", async (_req, res) => {
    const report = await latestReconciliation(ctx.database.db);
    if (!report) throw new HttpError(404, "no reconciliation has finished yet");
    res.json(report);
  });

  // The latest runs (?limit=1..100, default 20), newest first: scope, marks, obligations checked, defects.
  router.get("/reconciliation/runs", async (req, res) => {
    const raw = req.query.limit;
    const limit = raw === undefined ? 20 : Number(raw);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw new HttpError(400, "limit must be an integer from 1 to 100");
    res.json({ runs: await recentReconciliations(ctx.database.db, limit) });
  });

  router.use(obligationRoutes(ctx));
  router.use(notFound());
  return router;
}

function parse<T>(schema: z.ZodType<T>, input: unknown, what: string): T {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issues = result.error.issues.map((i) => ({ path: [what, ...i.path.map(String)].join("."), message: i.message }));
  throw new HttpError(400, `invalid ${what}: ${issues.map((i) => `${i.path} ${i.message}`).join("; ")}`.slice(0, 500), { issues: issues.slice(0, 20) });
}

function requireJson(req: Request): void {
  if (!req.is("application/json")) throw new HttpError(415, "send the body as application/json");
}

function paymentReturnJson(r: PaymentReturn) {
  return {
    obligationId: r.obligationId,
    reference: r.reference,
    amount: r.amount.toString(),
    reversalEntryId: r.reversalEntryId,
    netReceived: r.netReceived.toString(),
    outstanding: r.outstanding.toString(),
    status: r.status,
    allocationsReversed: r.allocationsReversed,
    reallocated: r.reallocated,
    replayed: r.replayed,
  };
}

function paymentJson(p: PaymentReceipt) {
  return {
    obligationId: p.obligationId,
    reference: p.reference,
    amount: p.amount.toString(),
    journalEntryId: p.journalEntryId,
    receivedTotal: p.receivedTotal.toString(),
    outstanding: p.outstanding.toString(),
    status: p.status,
  };
}

/** Only the fields given: an absent field selects everything, a null error selects rows without one. */
function selectionOf(filter: { mortgageId?: string | undefined; error?: string | null | undefined; escalatedBefore?: string | undefined }): EscalationSelection {
  return {
    ...(filter.mortgageId !== undefined ? { mortgageId: filter.mortgageId } : {}),
    ...(filter.error !== undefined ? { error: filter.error } : {}),
    ...(filter.escalatedBefore !== undefined ? { escalatedBefore: filter.escalatedBefore } : {}),
  };
}

function groupJson(g: EscalationGroup) {
  return { mortgageId: g.mortgageId, mortgageReference: g.mortgageReference, error: g.error, count: g.count, amount: g.amount.toString(), oldestEscalatedAt: g.oldestEscalatedAt };
}

function selectionDryRunJson(d: SelectionDryRun) {
  return { ...d, amount: d.amount.toString(), obligations: d.obligations.map((o) => ({ ...o, amount: o.amount.toString() })) };
}

function escalationJson(e: EscalationView) {
  return {
    obligationId: e.obligationId,
    mortgageId: e.mortgageId,
    mortgageReference: e.mortgageReference,
    obligationType: e.obligationType,
    obligationStatus: e.obligationStatus,
    amount: e.amount.toString(),
    suspenseBalance: e.suspenseBalance.toString(),
    attemptCount: e.attemptCount,
    requeueCount: e.requeueCount,
    lastError: e.lastError,
    escalatedAt: e.escalatedAt ? new Date(e.escalatedAt).toISOString() : null,
    status: e.status,
    lastJobId: e.lastJobId,
    story: `/api/obligations/${e.obligationId}`,
  };
}

/** Keyset position, opaque to clients; the timestamp keeps Postgres's microseconds. */
function encodeCursor(e: EscalationView): string {
  return Buffer.from(JSON.stringify([e.listedAt, e.obligationId])).toString("base64url");
}

function decodeCursor(cursor: string): { listedAt: string; obligationId: string } {
  let content: unknown;
  try {
    content = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw new HttpError(400, "invalid query: cursor is not one this API returned");
  }
  const [listedAt, id] = parse(cursorContent, content, "cursor");
  return { listedAt, obligationId: id };
}
