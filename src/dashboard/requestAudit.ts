// Every state-changing HTTP request of an authenticated user goes to audit_log with the user's name
// BEFORE it is acted on: a client that hangs up right after sending cannot hide it, and when the row
// cannot be written (Postgres away) the request is refused, not carried out unaudited. The outcome
// (status, or that the client hung up) follows in a second row; audit_log is append-only. Reads of
// money and people's data in bulk (an obligation's story, the escalations CSV) are audited too.
import { randomUUID } from "node:crypto";
import type { RequestHandler, Response } from "express";
import { writeAudit } from "../db/audit.js";
import type { AuditSeverity } from "../db/schema.js";
import type { PipelineContext } from "../jobs/context.js";
import { isMutating, operatorOf } from "./auth.js";

export const HTTP_AUDIT_ACTION = "ops.http_request";
export const HTTP_OUTCOME_AUDIT_ACTION = "ops.http_response";
export const STORY_READ_AUDIT_ACTION = "ops.obligation_story_read";
export const CSV_READ_AUDIT_ACTION = "ops.escalations_csv_read";

export interface AuditedRead {
  action: typeof STORY_READ_AUDIT_ACTION | typeof CSV_READ_AUDIT_ACTION;
  resourceType: string;
  resourceId: string;
  channel: "api" | "ops-page";
}

/**
 * Written before the answer is sent, by the user who reads: if it cannot be written, the error
 * answers instead (503 for an outage) and nothing is shown unaudited.
 */
export async function auditRead(ctx: PipelineContext, res: Response, read: AuditedRead): Promise<void> {
  const operator = operatorOf(res);
  await writeAudit(ctx.database.db, {
    action: read.action,
    actor: operator.name,
    resourceType: read.resourceType,
    resourceId: read.resourceId,
    severity: "info",
    metadata: { channel: read.channel, role: operator.role, address: res.req.ip },
  });
}

export function auditStateChanges(ctx: PipelineContext): RequestHandler {
  return async (req, res, next) => {
    if (!isMutating(req.method)) return next();
    const operator = operatorOf(res);
    const path = req.originalUrl.split("?")[0]!.slice(0, 500);
    const requestId = randomUUID();
    const base = { actor: operator.name, resourceType: "http", resourceId: `${req.method} ${path}` };
    // "close" is emitted once: a client that hung up before this point (while sign-in awaited
    // Redis) or hangs up during the await below would leave a listener added later waiting for
    // ever. "finish" never fires for a response whose client is gone; "close" always comes.
    const ended = res.closed
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          res.once("finish", resolve);
          res.once("close", resolve);
        });
    const started = performance.now();
    try {
      await writeAudit(ctx.database.db, {
        ...base,
        action: HTTP_AUDIT_ACTION,
        severity: "info",
        metadata: { requestId, method: req.method, path, role: operator.role, address: req.ip },
      });
    } catch (error) {
      ctx.log.error({ ...base, error: (error as Error).message }, "audit row of an HTTP request could not be written: request refused");
      res.status(503).json({ error: "the audit log is unavailable, so nothing was changed; try again shortly" });
      return;
    }
    const recordOutcome = () => {
      const severity: AuditSeverity = !res.writableFinished ? "warning" : res.statusCode >= 500 ? "error" : res.statusCode >= 400 ? "warning" : "info";
      const record = {
        ...base,
        action: HTTP_OUTCOME_AUDIT_ACTION,
        severity,
        metadata: { requestId, method: req.method, path, status: res.writableFinished ? res.statusCode : null, role: operator.role, clientHungUp: !res.writableFinished, ms: Math.round(performance.now() - started) },
      };
      writeAudit(ctx.database.db, record).catch((error: Error) => ctx.log.error({ ...record, error: error.message }, "audit row of an HTTP response could not be written"));
    };
    void ended.then(recordOutcome);
    next();
  };
}
