// Open escalations grouped by cause (mortgage and last error, ids and numbers normalised), and the
// escalations an operator's filter names. Both use one normalisation, so a group's count is its filter's.
import { sql, type SQL } from "drizzle-orm";
import { EscalationCountMismatchError, SelectionTooLargeError } from "../domain/requeueErrors.js";
import type { Db, Executor } from "./client.js";

export interface EscalationGroup {
  mortgageId: string;
  mortgageReference: string;
  /** The healing row's last error with uuids as `<id>` and numbers as `<n>`; null when none was recorded. */
  error: string | null;
  count: number;
  /** Σ the obligations' amounts, summed as numeric (a group may pass bigint's range). */
  amount: bigint;
  oldestEscalatedAt: string | null;
}

export interface EscalationSelection {
  mortgageId?: string;
  /** A normalised error exactly as the groups give it; null selects escalations with no recorded error. */
  error?: string | null;
  /** Escalated strictly before this time (timestamptz text). */
  escalatedBefore?: string;
}

export interface SelectedEscalation {
  obligationId: string;
  mortgageId: string;
  mortgageReference: string;
  amount: bigint;
  error: string | null;
  escalatedAt: string | null;
}

/** Keyset page of the selection; the whole selection is read in pages of this size. */
export const SELECTION_PAGE = 500;
/** Escalations one filter may act on in one request. (Default: 5,000) */
export const MAX_SELECTION = 5_000;

// uuids first, so their digits do not become <n>; the ops page and the filter compare this text.
function normalisedError(column: SQL): SQL {
  return sql`regexp_replace(regexp_replace(${column}, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<id>', 'gi'), '[0-9]+', '<n>', 'g')`;
}

/** Open escalations by (mortgage, normalised error), largest amount first. */
export async function groupEscalations(db: Executor, options: { limit: number }): Promise<EscalationGroup[]> {
  const rows = await db.execute<{ mortgage_id: string; reference: string; error: string | null; count: number; amount: string; oldest: string | null }>(sql`
    select o.mortgage_id::text, m.reference, ${normalisedError(sql`h.last_error`)} as error,
           count(*)::int as count, sum(o.amount::numeric)::text as amount, min(h.escalated_at) as oldest
      from dispersal_healing_attempts h
      join obligations o on o.id = h.obligation_id
      join mortgages m on m.id = o.mortgage_id
     where h.status = 'escalated'
     group by o.mortgage_id, m.reference, 3
     order by sum(o.amount::numeric) desc, min(h.escalated_at), o.mortgage_id, 3
     limit ${options.limit}`);
  return rows.map((r) => ({
    mortgageId: r.mortgage_id,
    mortgageReference: r.reference,
    error: r.error,
    count: r.count,
    amount: BigInt(r.amount),
    oldestEscalatedAt: r.oldest ? new Date(r.oldest).toISOString() : null,
  }));
}

async function selectionPage(db: Executor, selection: EscalationSelection, after: string | null): Promise<SelectedEscalation[]> {
  const error = normalisedError(sql`h.last_error`);
  const rows = await db.execute<{ obligation_id: string; mortgage_id: string; reference: string; amount: bigint; error: string | null; escalated_at: string | null }>(sql`
    select h.obligation_id::text, o.mortgage_id::text, m.reference, o.amount, ${error} as error, h.escalated_at
      from dispersal_healing_attempts h
      join obligations o on o.id = h.obligation_id
      join mortgages m on m.id = o.mortgage_id
     where h.status = 'escalated'
       ${selection.mortgageId ? sql`and o.mortgage_id = ${selection.mortgageId}::uuid` : sql``}
       ${selection.error === null ? sql`and h.last_error is null` : selection.error !== undefined ? sql`and ${error} = ${selection.error}` : sql``}
       ${selection.escalatedBefore ? sql`and h.escalated_at < ${selection.escalatedBefore}::timestamptz` : sql``}
       ${after ? sql`and h.obligation_id > ${after}::uuid` : sql``}
     order by h.obligation_id
     limit ${SELECTION_PAGE}`);
  return rows.map(selectedEscalation);
}

/**
 * Every open escalation the filter matches, read in keyset pages inside one repeatable-read snapshot
 * (so the count is of one moment). With `expectedCount`, a different count is refused before
 * anything acts: the operator confirmed a number, and the filter now means something else.
 */
export async function selectEscalations(db: Db, selection: EscalationSelection, options: { expectedCount?: number } = {}): Promise<SelectedEscalation[]> {
  const selected = await db.transaction(
    async (tx) => {
      const all: SelectedEscalation[] = [];
      for (let after: string | null = null; ; ) {
        const page = await selectionPage(tx, selection, after);
        all.push(...page);
        if (page.length < SELECTION_PAGE || all.length > MAX_SELECTION) return all;
        after = page[page.length - 1]!.obligationId;
      }
    },
    { isolationLevel: "repeatable read", accessMode: "read only" },
  );
  if (selected.length > MAX_SELECTION) throw new SelectionTooLargeError(MAX_SELECTION);
  if (options.expectedCount !== undefined && selected.length !== options.expectedCount) throw new EscalationCountMismatchError(options.expectedCount, selected.length);
  return selected;
}

/** The newest `perGroup` escalations of every group, for the ops page's expanded groups. */
export async function listGroupMembers(db: Executor, options: { perGroup: number }): Promise<SelectedEscalation[]> {
  const rows = await db.execute<{ obligation_id: string; mortgage_id: string; reference: string; amount: bigint; error: string | null; escalated_at: string | null }>(sql`
    select obligation_id::text, mortgage_id::text, reference, amount, error, escalated_at from (
      select h.obligation_id, o.mortgage_id, m.reference, o.amount, e.error, h.escalated_at,
             row_number() over (partition by o.mortgage_id, e.error order by h.escalated_at desc, h.obligation_id) as n
        from dispersal_healing_attempts h
        join obligations o on o.id = h.obligation_id
        join mortgages m on m.id = o.mortgage_id
        cross join lateral (select ${normalisedError(sql`h.last_error`)} as error) e
       where h.status = 'escalated') ranked
     where n <= ${options.perGroup}
     order by escalated_at desc, obligation_id`);
  return rows.map(selectedEscalation);
}

function selectedEscalation(r: { obligation_id: string; mortgage_id: string; reference: string; amount: bigint; error: string | null; escalated_at: string | null }): SelectedEscalation {
  return {
    obligationId: r.obligation_id,
    mortgageId: r.mortgage_id,
    mortgageReference: r.reference,
    amount: BigInt(r.amount),
    error: r.error,
    escalatedAt: r.escalated_at ? new Date(r.escalated_at).toISOString() : null,
  };
}
