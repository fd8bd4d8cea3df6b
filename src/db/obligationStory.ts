// The whole story of one obligation in one round trip: the obligation, its mortgage and the
// mortgage's positions, every cash journal posting naming it (with both accounts), its dispersal
// entries and fees by allocation, its amounts (DESIGN.md §3, from db/obligationAmounts.ts), its
// healing row, its requeue requests and every audit row about it. Amounts leave Postgres as text so no cent is lost to a
// JSON number. Also the search behind /ops and GET /api/search.
import { sql } from "drizzle-orm";
import type { Executor } from "./client.js";
import { allocatedOf, netCashOf, netReceivedOf, suspenseOf } from "./obligationAmounts.js";
import type { HealingStatus } from "./schema.js";

export interface StoryAccount {
  id: string;
  family: string;
  subaccount: string | null;
  mortgageId: string | null;
  obligationId: string | null;
  lenderId: string | null;
}

export interface StoryPosting {
  id: string;
  sequence: string;
  entryType: string;
  amount: string;
  effectiveDate: string;
  debit: StoryAccount;
  credit: StoryAccount;
  idempotencyKey: string;
  /** A payment's reference as it was sent (the intake keeps it in the posting's metadata); null otherwise. */
  paymentReference: string | null;
  reversesEntryId: string | null;
  reason: string | null;
  actor: string | null;
  channel: string | null;
  createdAt: string;
}

export interface StoryPosition {
  lenderId: string;
  lenderName: string;
  units: string;
}

export interface StoryDispersalEntry {
  id: string;
  allocation: number;
  lenderId: string;
  lenderName: string;
  amount: string;
  ownershipUnits: string;
  totalUnits: string;
  dispersalDate: string;
  status: string;
  createdAt: string;
}

export interface StoryServicingFee {
  id: string;
  allocation: number;
  amount: string;
  annualRateBps: number;
  principalBasis: string;
  status: string;
  createdAt: string;
}

export interface StoryRequeueRequest {
  id: string;
  requestedBy: string;
  channel: string;
  reason: string;
  status: "pending" | "carried_out" | "withdrawn";
  approvedBy: string | null;
  withdrawnBy: string | null;
  decidedAt: string | null;
  round: number | null;
  createdAt: string;
}

export interface StoryAudit {
  id: string;
  action: string;
  actor: string;
  severity: string;
  metadata: Record<string, unknown>;
  createdAt: string;
}

export interface StoryHealing {
  status: HealingStatus;
  attemptCount: number;
  requeueCount: number;
  lastError: string | null;
  lastAttemptAt: string | null;
  escalatedAt: string | null;
  resolvedAt: string | null;
  lastJobId: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface ObligationStoryRecord {
  obligation: {
    id: string;
    type: string;
    amount: string;
    status: string;
    dueDate: string;
    settledAt: string | null;
    dispersed: boolean;
    createdAt: string;
  };
  mortgage: { id: string; reference: string; principal: string; servicingFeeBps: number; paymentFrequency: string };
  /** The mortgage's positions now (units ≥ 0), largest first. */
  positions: StoryPosition[];
  postings: StoryPosting[];
  /** By allocation, then largest amount first. */
  dispersalEntries: StoryDispersalEntry[];
  /** One per allocation that carried a fee. */
  servicingFees: StoryServicingFee[];
  healing: StoryHealing | null;
  /** Oldest first; at most one is pending. */
  requeueRequests: StoryRequeueRequest[];
  audit: StoryAudit[];
  /** Cents as text: net settled cash, cash received net of returns, what the journal allocates. */
  amounts: { netCash: string; netReceived: string; allocated: string };
  /** SUSPENSE balance of the obligation now (over every account it is filed under), cents as text. */
  suspenseBalance: string;
}

const account = (alias: string) => sql.raw(`json_build_object('id', ${alias}.id, 'family', ${alias}.family, 'subaccount', ${alias}.subaccount,
  'mortgageId', ${alias}.mortgage_id, 'obligationId', ${alias}.obligation_id, 'lenderId', ${alias}.lender_id)`);

/** Every time is ISO 8601 in UTC with microseconds, so the timeline sorts as text and as time alike. */
const iso = (column: string) => sql.raw(`to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`);

/** The story, or undefined when no obligation has this id. One statement, every part by index. */
export async function loadObligationStory(db: Executor, obligationId: string): Promise<ObligationStoryRecord | undefined> {
  const [row] = await db.execute<{ story: ObligationStoryRecord }>(sql`
    select json_build_object(
      'obligation', json_build_object('id', o.id, 'type', o.type, 'amount', o.amount::text, 'status', o.status,
                                      'dueDate', o.due_date::text, 'settledAt', ${iso("o.settled_at")}, 'dispersed', o.dispersed,
                                      'createdAt', ${iso("o.created_at")}),
      'mortgage', json_build_object('id', m.id, 'reference', m.reference, 'principal', m.principal::text,
                                    'servicingFeeBps', m.servicing_fee_bps, 'paymentFrequency', m.payment_frequency),
      'positions', coalesce((
        select json_agg(json_build_object('lenderId', p.lender_id, 'lenderName', l.name, 'units', p.units::text)
               order by p.units desc, l.name, p.lender_id)
          from mortgage_positions p join lenders l on l.id = p.lender_id
         where p.mortgage_id = o.mortgage_id), '[]'::json),
      'postings', coalesce((
        select json_agg(json_build_object(
                 'id', j.id, 'sequence', j.sequence::text, 'entryType', j.entry_type, 'amount', j.amount::text,
                 'effectiveDate', j.effective_date::text, 'debit', ${account("d")}, 'credit', ${account("c")},
                 'idempotencyKey', j.idempotency_key, 'paymentReference', j.metadata->>'reference', 'reversesEntryId', j.reverses_entry_id, 'reason', j.reason,
                 'actor', j.actor, 'channel', j.channel, 'createdAt', ${iso("j.created_at")}) order by j.sequence)
          from cash_journal_entries j
          join cash_accounts d on d.id = j.debit_account_id
          join cash_accounts c on c.id = j.credit_account_id
         where j.obligation_id = o.id), '[]'::json),
      'dispersalEntries', coalesce((
        select json_agg(json_build_object(
                 'id', e.id, 'allocation', e.allocation, 'lenderId', e.lender_id, 'lenderName', l.name, 'amount', e.amount::text,
                 'ownershipUnits', e.ownership_units::text, 'totalUnits', e.total_units::text,
                 'dispersalDate', e.dispersal_date::text, 'status', e.status, 'createdAt', ${iso("e.created_at")})
               order by e.allocation, e.amount desc, l.name, e.lender_id)
          from dispersal_entries e join lenders l on l.id = e.lender_id
         where e.obligation_id = o.id), '[]'::json),
      'servicingFees', coalesce((
        select json_agg(json_build_object('id', f.id, 'allocation', f.allocation, 'amount', f.amount::text, 'annualRateBps', f.annual_rate_bps,
                                          'principalBasis', f.principal_basis::text, 'status', f.status, 'createdAt', ${iso("f.created_at")})
               order by f.allocation)
          from servicing_fee_entries f where f.obligation_id = o.id), '[]'::json),
      'healing', (
        select json_build_object('status', h.status, 'attemptCount', h.attempt_count, 'requeueCount', h.requeue_count,
                                 'lastError', h.last_error, 'lastAttemptAt', ${iso("h.last_attempt_at")},
                                 'escalatedAt', ${iso("h.escalated_at")}, 'resolvedAt', ${iso("h.resolved_at")},
                                 'lastJobId', h.last_job_id, 'createdAt', ${iso("h.created_at")}, 'updatedAt', ${iso("h.updated_at")})
          from dispersal_healing_attempts h where h.obligation_id = o.id),
      'requeueRequests', coalesce((
        select json_agg(json_build_object('id', r.id, 'requestedBy', r.requested_by, 'channel', r.channel, 'reason', r.reason,
                                          'status', r.status, 'approvedBy', r.approved_by, 'withdrawnBy', r.withdrawn_by,
                                          'decidedAt', ${iso("r.decided_at")}, 'round', r.round, 'createdAt', ${iso("r.created_at")})
               order by r.created_at, r.id)
          from requeue_requests r where r.obligation_id = o.id), '[]'::json),
      'audit', coalesce((
        select json_agg(json_build_object('id', a.id, 'action', a.action, 'actor', a.actor, 'severity', a.severity,
                                          'metadata', coalesce(a.metadata, '{}'::jsonb), 'createdAt', ${iso("a.created_at")})
               order by a.created_at, a.id)
          from audit_log a where a.resource_type = 'obligation' and a.resource_id = o.id::text), '[]'::json),
      'amounts', json_build_object('netCash', (${netCashOf(sql`o.id`)})::text, 'netReceived', (${netReceivedOf(sql`o.id`)})::text,
                                   'allocated', (${allocatedOf(sql`o.id`)})::text),
      'suspenseBalance', (${suspenseOf(sql`o.id`)})::text
    ) as story
      from obligations o join mortgages m on m.id = o.mortgage_id
     where o.id = ${obligationId}::uuid`);
  return row?.story;
}

export interface ObligationMatch {
  obligationId: string;
  mortgageId: string;
  mortgageReference: string;
  obligationType: string;
  amount: bigint;
  status: string;
  dispersed: boolean;
  settledAt: string | null;
  healingStatus: HealingStatus | null;
  /** Why it matched: the obligation id, the mortgage reference, or a lender's name (which one). */
  matchedBy: "obligation" | "mortgage" | "lender";
  lenderName: string | null;
}

/**
 * An obligation id, whole or its first 8 or more hexadecimal digits (as /ops shows it), as the range
 * of ids it stands for: a primary-key range scan, however many obligations there are.
 */
function obligationIdRange(text: string): { from: string; to: string } | undefined {
  if (!/^[0-9a-f]{8}(-?[0-9a-f]){0,24}-?$/i.test(text) || text.replaceAll("-", "").length > 32) return undefined;
  const digits = text.replaceAll("-", "").toLowerCase();
  const asId = (hex: string) => `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  return { from: asId(digits.padEnd(32, "0")), to: asId(digits.padEnd(32, "f")) };
}

/** Mortgages a reference or lender name may match before their obligations are ranked. */
const MAX_MORTGAGES = 200;

/** Fewer characters than this match too much to be worth a search: refused at the edge (400). */
export const SEARCH_MIN_CHARACTERS = 3;

/**
 * Characters of the query the trigram indexes are probed with. A GIN probe reads one posting list
 * per trigram: a 200-character query whose trigrams every reference shares read ~200 lists of the
 * whole table (0.6–0.9 s each, issue 20). The probe reads at most this many lists' worth; the
 * whole query then filters the capped candidates.
 */
const PROBE_CHARACTERS = 16;

/** LIKE's own wildcards in what a person typed are meant literally. */
function likePattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/**
 * Obligations matching `q`: an obligation id (whole, or its first 8+ hexadecimal characters as
 * shown on /ops), a mortgage reference, or a lender's name (case-insensitive, any part). Open
 * escalations first, then the most recently settled. The cost is bounded whatever `q` is: an id
 * is a primary-key range, a reference or name is one of the first MAX_MORTGAGES candidates whose
 * first PROBE_CHARACTERS match. Run it on the readers' pool (statement timeout).
 */
export async function searchObligations(db: Executor, q: string, limit: number): Promise<ObligationMatch[]> {
  const text = q.trim();
  if (text === "") return [];
  const idRange = obligationIdRange(text);
  const pattern = likePattern(text);
  const probe = likePattern(text.slice(0, PROBE_CHARACTERS));
  const rows = await db.execute<{
    id: string;
    mortgage_id: string;
    reference: string;
    type: string;
    amount: bigint;
    status: string;
    dispersed: boolean;
    settled_at: string | null;
    healing_status: HealingStatus | null;
    matched_by: ObligationMatch["matchedBy"];
    lender_name: string | null;
  }>(sql`
    with hit_mortgages as (
      -- The probe in a subquery with its own limit: the whole pattern is not pushed into the index scan.
      (select c.id, 'mortgage'::text as matched_by, null::text as lender_name
         from (select m.id, m.reference from mortgages m where m.reference ilike ${probe} limit ${MAX_MORTGAGES}) c
        where c.reference ilike ${pattern})
      union all
      (select p.mortgage_id, 'lender', c.name
         from (select l.id, l.name from lenders l where l.name ilike ${probe} limit ${MAX_MORTGAGES}) c
         join mortgage_positions p on p.lender_id = c.id
        where c.name ilike ${pattern} limit ${MAX_MORTGAGES})
    ),
    matches as (
      ${idRange
        ? sql`(select o.id, 'obligation'::text as matched_by, null::text as lender_name from obligations o
                where o.id between ${idRange.from}::uuid and ${idRange.to}::uuid order by o.id limit ${limit})
              union all`
        : sql``}
      select o.id, hm.matched_by, hm.lender_name from hit_mortgages hm join obligations o on o.mortgage_id = hm.id
    ),
    one_each as (select distinct on (id) id, matched_by, lender_name from matches order by id, matched_by desc)
    select o.id, o.mortgage_id, m.reference, o.type, o.amount, o.status, o.dispersed, o.settled_at,
           h.status as healing_status, x.matched_by, x.lender_name
      from one_each x
      join obligations o on o.id = x.id
      join mortgages m on m.id = o.mortgage_id
      left join dispersal_healing_attempts h on h.obligation_id = o.id
     order by (h.status = 'escalated') desc nulls last, o.settled_at desc nulls last, o.id
     limit ${limit}`);
  return rows.map((r) => ({
    obligationId: r.id,
    mortgageId: r.mortgage_id,
    mortgageReference: r.reference,
    obligationType: r.type,
    amount: BigInt(r.amount),
    status: r.status,
    dispersed: r.dispersed,
    settledAt: r.settled_at,
    healingStatus: r.healing_status,
    matchedBy: r.matched_by,
    lenderName: r.lender_name,
  }));
}
