// The append-only audit log: who did what to which resource.
import { sql } from "drizzle-orm";
import type { Executor } from "./client.js";
import type { AuditSeverity } from "./schema.js";

export interface AuditRecord {
  action: string;
  actor: string;
  resourceType: string;
  resourceId?: string | null;
  severity?: AuditSeverity;
  metadata?: Record<string, unknown>;
}

export async function writeAudit(db: Executor, record: AuditRecord): Promise<void> {
  await db.execute(sql`
    insert into audit_log (action, actor, resource_type, resource_id, severity, metadata)
    values (${record.action}, ${record.actor}, ${record.resourceType}, ${record.resourceId ?? null},
            ${record.severity ?? "info"}, ${JSON.stringify(record.metadata ?? {})}::jsonb)`);
}
