// Every state-changing HTTP request of an authenticated user goes to audit_log with the user's name
// and the outcome, including refused ones: Bull Board's clean, pause and retry buttons leave no
// other trace.
import type { RequestHandler } from "express";
import { writeAudit } from "../db/audit.js";
import type { AuditSeverity } from "../db/schema.js";
import type { PipelineContext } from "../jobs/context.js";
import { isMutating, operatorOf } from "./auth.js";

export const HTTP_AUDIT_ACTION = "ops.http_request";

export function auditStateChanges(ctx: PipelineContext): RequestHandler {
  return (req, res, next) => {
    if (!isMutating(req.method)) return next();
    const operator = operatorOf(res);
    const path = req.originalUrl.split("?")[0]!.slice(0, 500);
    res.on("finish", () => {
      const severity: AuditSeverity = res.statusCode >= 500 ? "error" : res.statusCode >= 400 ? "warning" : "info";
      const record = {
        action: HTTP_AUDIT_ACTION,
        actor: operator.name,
        resourceType: "http",
        resourceId: `${req.method} ${path}`,
        severity,
        metadata: { method: req.method, path, status: res.statusCode, role: operator.role },
      };
      writeAudit(ctx.database.db, record).catch((error: Error) =>
        ctx.log.error({ ...record, error: error.message }, "audit row of an HTTP request could not be written"),
      );
    });
    next();
  };
}
