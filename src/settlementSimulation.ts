// `dispersal simulate`: a load generator and live demo. Pays open obligations of a data set through
// the payments intake API at a steady rate (a share of them in two parts, some on mortgages nobody
// holds units in, which can only escalate), then reports what happened, with settle→dispersed
// latencies taken from the database's own timestamps (settled_at of the obligation, created_at of
// its first dispersal entry or of its fee entry when the fee took everything).
import { sql } from "drizzle-orm";
import type { PipelineContext } from "./jobs/context.js";

export interface SimulationOptions {
  /** Base URL of a running server, e.g. http://127.0.0.1:3000 */
  baseUrl: string;
  credentials: { name: string; secret: string };
  /** Payment requests a second. */
  ratePerSecond: number;
  durationSeconds: number;
  /** Share of the obligations paid in two parts (default 0.15). */
  partShare?: number;
  /** After the last payment, how long to wait for the fixable ones to be dispersed (default 30 s). */
  waitSeconds?: number;
  /** Requests in flight at most; beyond, the generator falls behind and says so (default 64). */
  maxInFlight?: number;
  onProgress?: (line: string) => void;
}

export interface Percentiles {
  count: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
}

export interface SimulationSummary {
  ratePerSecond: number;
  durationSeconds: number;
  /** behind: most requests the generator was ever late by (requests in flight at the cap). */
  payments: { sent: number; byStatus: Record<string, number>; networkErrors: number; behind: number; achievedPerSecond: number; httpMs: Percentiles };
  obligations: { paid: number; settled: number; partiallySettled: number; unfixable: number; dispersed: number; escalated: number; notDispersed: number; fixableNotDispersed: number };
  /** From the payment's settled_at to the dispersal's created_at, both Postgres timestamps. */
  settleToDispersedMs: Percentiles;
  backlog: { max: number; last: number; samples: number };
  /** Present when the run sent its last payment before its duration was up, and why. */
  stoppedEarly?: { afterSeconds: number; reason: string };
}

/** With no answer at all for this long (every request a network error), the run stops and says so. */
export const SILENT_SERVER_STOP_MS = 5_000;

interface Candidate {
  id: string;
  outstanding: bigint;
  unfixable: boolean;
}

interface Payment {
  obligationId: string;
  reference: string;
  amount: bigint;
}

export class NoOpenObligationsError extends Error {
  readonly code = "NO_OPEN_OBLIGATIONS";
}

export async function runSimulation(ctx: PipelineContext, options: SimulationOptions): Promise<SimulationSummary> {
  const partShare = options.partShare ?? 0.15;
  const wanted = Math.ceil(options.ratePerSecond * options.durationSeconds);
  // One candidate per payment wanted: fewer than that only when the data set has run out (each candidate is paid at least once).
  const candidates = await openObligations(ctx, wanted);
  if (candidates.length === 0) throw new NoOpenObligationsError("no open obligation to pay: seed a data set first (`dispersal seed --demo`)");
  const payments = planPayments(candidates, partShare, wanted);
  let stopReason: string | undefined;
  if (payments.length < wanted) {
    stopReason = `ran out of open obligations to pay: ${payments.length} payments for ${wanted} wanted (${options.ratePerSecond}/s × ${options.durationSeconds} s); seed more with \`dispersal seed --demo\``;
    options.onProgress?.(`simulate: ${stopReason}; the run ends after about ${Math.ceil(payments.length / options.ratePerSecond)} s`);
  }
  const paidIds = [...new Set(payments.map((p) => p.obligationId))];
  const unfixable = new Set(candidates.filter((c) => c.unfixable).map((c) => c.id));

  const authorization = `Basic ${Buffer.from(`${options.credentials.name}:${options.credentials.secret}`).toString("base64")}`;
  const byStatus: Record<string, number> = {};
  const httpMs: number[] = [];
  let networkErrors = 0;
  let lastAnswerAt = performance.now();
  let lastNetworkError = "";
  let behind = 0;
  let inFlight = 0;
  const maxInFlight = options.maxInFlight ?? 64;
  const backlog = { max: 0, last: 0, samples: 0 };

  const send = async (payment: Payment) => {
    inFlight++;
    const started = performance.now();
    try {
      const response = await fetch(`${options.baseUrl}/api/obligations/${payment.obligationId}/payments`, {
        method: "POST",
        headers: { authorization, "content-type": "application/json" },
        body: JSON.stringify({ reference: payment.reference, amount: payment.amount.toString() }),
      });
      await response.arrayBuffer();
      byStatus[response.status] = (byStatus[response.status] ?? 0) + 1;
      httpMs.push(performance.now() - started);
      lastAnswerAt = performance.now();
    } catch (error) {
      networkErrors++;
      lastNetworkError = String((error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message);
    } finally {
      inFlight--;
    }
  };

  const sampleBacklog = async () => {
    const counts = await ctx.queues.retrigger.getJobCounts("waiting", "active", "delayed", "prioritized").catch(() => undefined);
    if (!counts) return;
    backlog.last = Object.values(counts).reduce((a, b) => a + b, 0);
    backlog.max = Math.max(backlog.max, backlog.last);
    backlog.samples++;
  };

  const started = performance.now();
  lastAnswerAt = started;
  const requests = new Set<Promise<void>>();
  let next = 0;
  let lastProgress = started;
  // Payments of one obligation go in order: its second part is sent only after its first answered.
  const previousOf = new Map<string, Promise<void>>();
  while (next < payments.length) {
    if (next > 0 && performance.now() - lastAnswerAt > SILENT_SERVER_STOP_MS) {
      stopReason = `the server at ${options.baseUrl} gave no answer for ${SILENT_SERVER_STOP_MS / 1000} s (${lastNetworkError || "requests pending"}); ${payments.length - next} payments not sent`;
      options.onProgress?.(`simulate: stopping: ${stopReason}`);
      break;
    }
    const due = Math.min(payments.length, Math.floor(((performance.now() - started) / 1000) * options.ratePerSecond) + 1);
    while (next < due) {
      if (inFlight >= maxInFlight) break;
      const payment = payments[next++]!;
      const request = (previousOf.get(payment.obligationId) ?? Promise.resolve()).then(() => send(payment));
      previousOf.set(payment.obligationId, request);
      requests.add(request);
      void request.finally(() => requests.delete(request));
    }
    behind = Math.max(behind, due - next);
    if (performance.now() - lastProgress >= 1000) {
      lastProgress = performance.now();
      await sampleBacklog();
      options.onProgress?.(await progressLine(ctx, paidIds, started, options, byStatus, backlog.last));
    }
    await sleep(5);
  }
  await Promise.all(requests);
  const sendSeconds = (performance.now() - started) / 1000;
  const stoppedEarly = stopReason && sendSeconds < options.durationSeconds ? { afterSeconds: Math.round(sendSeconds * 10) / 10, reason: stopReason } : undefined;

  // Wait for the fast path to finish the fixable ones (bounded): unfixable ones escalate later.
  const fixable = paidIds.filter((id) => !unfixable.has(id));
  const waitUntil = performance.now() + (options.waitSeconds ?? 30) * 1000;
  for (;;) {
    await sampleBacklog();
    const open = await countNotDispersed(ctx, fixable);
    if (open === 0 || performance.now() > waitUntil) break;
    options.onProgress?.(await progressLine(ctx, paidIds, started, options, byStatus, backlog.last));
    await sleep(500);
  }

  const outcome = await outcomes(ctx, paidIds, unfixable);
  return {
    ratePerSecond: options.ratePerSecond,
    durationSeconds: options.durationSeconds,
    payments: {
      sent: Object.values(byStatus).reduce((a, b) => a + b, 0) + networkErrors,
      byStatus,
      networkErrors,
      behind,
      achievedPerSecond: Math.round((Object.values(byStatus).reduce((a, b) => a + b, 0) / sendSeconds) * 10) / 10,
      httpMs: percentiles(httpMs),
    },
    obligations: outcome.obligations,
    settleToDispersedMs: outcome.latency,
    backlog,
    ...(stoppedEarly ? { stoppedEarly } : {}),
  };
}

/** Share of the paid obligations taken from mortgages nobody holds units in, when the data set has them. */
const UNFIXABLE_SHARE = 0.03;

/**
 * Open obligations in random order, with what is still outstanding on each; about 3 % of them (when
 * there are any) on mortgages whose positions are all zero, so that the demo shows escalations too.
 */
async function openObligations(ctx: PipelineContext, limit: number): Promise<Candidate[]> {
  const pick = (unfixable: boolean, n: number) =>
    ctx.database.db.execute<{ id: string; outstanding: bigint }>(sql`
      select o.id, o.amount - coalesce(r.received, 0) as outstanding
        from obligations o
        left join lateral (select sum(j.amount) as received from cash_journal_entries j
                            where j.obligation_id = o.id and j.entry_type = 'CASH_RECEIVED') r on true
       where o.status in ('upcoming', 'due', 'overdue', 'partially_settled')
         and o.amount - coalesce(r.received, 0) > 0
         and ${unfixable ? sql`not` : sql``} exists (select 1 from mortgage_positions p where p.mortgage_id = o.mortgage_id and p.units > 0)
       order by random()
       limit ${n}`);
  const unfixable = await pick(true, Math.ceil(limit * UNFIXABLE_SHARE));
  const fixable = await pick(false, limit - unfixable.length);
  const candidates = [
    ...fixable.map((r) => ({ id: r.id, outstanding: BigInt(r.outstanding), unfixable: false })),
    ...unfixable.map((r) => ({ id: r.id, outstanding: BigInt(r.outstanding), unfixable: true })),
  ];
  // Shuffled, so that the unfixable ones are spread over the run.
  for (let i = candidates.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [candidates[i], candidates[j]] = [candidates[j]!, candidates[i]!];
  }
  return candidates;
}

function planPayments(candidates: Candidate[], partShare: number, wanted: number): Payment[] {
  const run = Date.now().toString(36);
  const payments: Payment[] = [];
  for (const [i, c] of candidates.entries()) {
    if (payments.length >= wanted) break;
    const reference = `sim-${run}-${i}`;
    const inParts = c.outstanding >= 2n && payments.length + 2 <= wanted && Math.random() < partShare;
    if (inParts) {
      const first = c.outstanding / 3n || 1n;
      payments.push({ obligationId: c.id, reference: `${reference}-a`, amount: first });
      payments.push({ obligationId: c.id, reference: `${reference}-b`, amount: c.outstanding - first });
    } else {
      payments.push({ obligationId: c.id, reference, amount: c.outstanding });
    }
  }
  return payments;
}

async function countNotDispersed(ctx: PipelineContext, ids: string[]): Promise<number> {
  if (ids.length === 0) return 0;
  const [row] = await ctx.database.db.execute<{ n: bigint }>(sql`
    select count(*) as n from obligations
     where id = any(${`{${ids.join(",")}}`}::uuid[]) and status = 'settled' and not dispersed`);
  return Number(row!.n);
}

async function progressLine(
  ctx: PipelineContext,
  ids: string[],
  started: number,
  options: SimulationOptions,
  byStatus: Record<string, number>,
  backlog: number,
): Promise<string> {
  const [row] = await ctx.database.db.execute<{ settled: bigint; dispersed: bigint }>(sql`
    select count(*) filter (where status = 'settled') as settled, count(*) filter (where dispersed) as dispersed
      from obligations where id = any(${`{${ids.join(",")}}`}::uuid[])`);
  const seconds = Math.round((performance.now() - started) / 1000);
  const answered = Object.entries(byStatus).map(([status, n]) => `${status}:${n}`).join(" ");
  return `simulate ${seconds}/${options.durationSeconds}s  answers ${answered || "-"}  settled ${row!.settled}  dispersed ${row!.dispersed}  backlog ${backlog}`;
}

async function outcomes(ctx: PipelineContext, ids: string[], unfixable: Set<string>) {
  const idArray = `{${ids.join(",")}}`;
  const [counts] = await ctx.database.db.execute<Record<string, bigint>>(sql`
    select count(*) filter (where o.status = 'settled') as settled,
           count(*) filter (where o.status = 'partially_settled') as partially_settled,
           count(*) filter (where o.dispersed) as dispersed,
           count(*) filter (where o.status = 'settled' and not o.dispersed and h.status = 'escalated') as escalated,
           count(*) filter (where o.status = 'settled' and not o.dispersed) as not_dispersed
      from obligations o left join dispersal_healing_attempts h on h.obligation_id = o.id
     where o.id = any(${idArray}::uuid[])`);
  const [latency] = await ctx.database.db.execute<{ n: bigint; p50: number | null; p90: number | null; p99: number | null; max: number | null }>(sql`
    with l as (
      select extract(epoch from (coalesce(d.first_at, f.created_at) - o.settled_at)) * 1000 as ms
        from obligations o
        left join lateral (select min(e.created_at) as first_at from dispersal_entries e where e.obligation_id = o.id) d on true
        left join servicing_fee_entries f on f.obligation_id = o.id
       where o.id = any(${idArray}::uuid[]) and o.status = 'settled' and o.dispersed and o.settled_at is not null)
    select count(*) as n,
           percentile_cont(0.5) within group (order by ms) as p50,
           percentile_cont(0.9) within group (order by ms) as p90,
           percentile_cont(0.99) within group (order by ms) as p99,
           max(ms) as max
      from l`);
  const notDispersedRows = await ctx.database.db.execute<{ id: string }>(sql`
    select id from obligations where id = any(${idArray}::uuid[]) and status = 'settled' and not dispersed`);
  const round = (v: number | null) => (v === null ? null : Math.round(Number(v) * 10) / 10);
  return {
    obligations: {
      paid: ids.length,
      settled: Number(counts!.settled),
      partiallySettled: Number(counts!.partially_settled),
      unfixable: ids.filter((id) => unfixable.has(id)).length,
      dispersed: Number(counts!.dispersed),
      escalated: Number(counts!.escalated),
      notDispersed: Number(counts!.not_dispersed),
      fixableNotDispersed: notDispersedRows.filter((r) => !unfixable.has(r.id)).length,
    },
    latency: { count: Number(latency!.n), p50: round(latency!.p50), p90: round(latency!.p90), p99: round(latency!.p99), max: round(latency!.max) },
  };
}

export function percentiles(values: number[]): Percentiles {
  if (values.length === 0) return { count: 0, p50: null, p90: null, p99: null, max: null };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! * 10) / 10;
  return { count: sorted.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: Math.round(sorted.at(-1)! * 10) / 10 };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
