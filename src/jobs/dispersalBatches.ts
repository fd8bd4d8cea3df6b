// The one dispersal path of retrigger jobs: the jobs one worker process runs at the same moment are
// gathered for a few milliseconds and dispersed in one Postgres transaction of up to
// HEALING_BATCH_SIZE obligations (db/dispersalBatch.ts disperseBatch), each job still completing or
// failing on its own. A job alone is a batch of one (HEALING_BATCH_SIZE=1: batches of one, as many
// in flight as the worker's concurrency). Postgres CPU per obligation is the bound (docs/performance.md): a batch shares the round trips, the statements and the commit's WAL flush.
//
// Isolation: an obligation that cannot be dispersed is left out and fails alone, exactly as it
// would in a batch of one; an unexpected error rolls the batch back and every job runs again as a
// batch of one (one bad row never fails or delays its neighbours); an outage puts every job back
// without using an attempt (retrigger.ts putBackForOutage).
import { isOutage } from "../db/client.js";
import { disperseBatch, type DispersalOutcome, type DispersalRequest } from "../db/dispersalBatch.js";
import { failpoint } from "../failpoint.js";
import type { PipelineContext } from "./context.js";
import { GroupCommit, type GroupCommitOptions } from "./groupCommit.js";

export type BatchRequest = DispersalRequest;
export type BatchOutcome = DispersalOutcome;

interface Waiting {
  request: BatchRequest;
  resolve(outcome: BatchOutcome): void;
}

export class DispersalBatches {
  private readonly group: GroupCommit<Waiting>;
  /** Batches committed and the obligations in them, since start (the average batch size shows whether batching happens). */
  readonly committed = { batches: 0, obligations: 0 };

  /**
   * maxSize: HEALING_BATCH_SIZE. A batch closes when it is full, when no job has joined it for
   * `lingerMs` (the worker fetches the jobs of a deep queue back to back, a fraction of a millisecond
   * apart, so a pause means the burst is over), or `maxWaitMs` after its first job at the latest.
   */
  constructor(
    private readonly ctx: PipelineContext,
    options: GroupCommitOptions,
  ) {
    this.group = new GroupCommit(options, (batch) => this.run(batch));
  }

  /** Resolves when the batch holding this obligation has committed or given up; never rejects. */
  disperse(request: BatchRequest): Promise<BatchOutcome> {
    return new Promise((resolve) => this.group.add({ request, resolve }));
  }

  /** Resolves when every batch started so far has finished (for shutdown). */
  drained(): Promise<void> {
    return this.group.drained();
  }

  /**
   * Runs a gathered batch. Two jobs of one obligation at once (a stalled job taken over while its
   * first worker still runs it) cannot share a transaction: the second runs after, as a batch of one,
   * and replays. A batch that cannot commit for a reason that is not an outage runs again member by
   * member, each a batch of one through the same transaction, so one bad row never fails its neighbours.
   */
  private async run(batch: Waiting[]): Promise<void> {
    const seen = new Set<string>();
    const members: Waiting[] = [];
    const repeats: Waiting[] = [];
    for (const w of batch) {
      if (seen.has(w.request.obligationId)) repeats.push(w);
      else {
        seen.add(w.request.obligationId);
        members.push(w);
      }
    }
    const outcome = await this.commit(members);
    if (outcome === "one by one") {
      for (const m of members) m.resolve(await this.alone(m));
    } else {
      for (const m of members) m.resolve(outcome.get(m.request.obligationId)!);
    }
    for (const r of repeats) r.resolve(await this.alone(r));
  }

  /** One member as a batch of one: its own outcome, or the error its transaction threw. */
  private async alone(member: Waiting): Promise<BatchOutcome> {
    const outcome = await this.commit([member], { last: true });
    return outcome === "one by one" ? { kind: "failed", error: new Error("unreachable") } : outcome.get(member.request.obligationId)!;
  }

  /**
   * The dispersal transaction of one batch (db/dispersalBatch.ts disperseBatch), committed; then
   * the outcomes. An outage fails every member (the
   * retrigger processor puts the jobs back without using an attempt); any other error answers
   * "one by one", or for a batch of one (`last`) fails the member with it.
   */
  private async commit(members: Waiting[], options: { last?: boolean } = {}): Promise<Map<string, BatchOutcome> | "one by one"> {
    const started = performance.now();
    let outcomes: Map<string, BatchOutcome>;
    try {
      outcomes = await this.ctx.database.db.transaction(async (tx) => {
        // Ends at its dispersal.before-commit failpoint.
        return disperseBatch(tx, members.map((m) => m.request));
      });
      failpoint("dispersal.after-commit");
    } catch (error) {
      if (isOutage(error) || options.last) return new Map(members.map((m) => [m.request.obligationId, { kind: "failed", error } as BatchOutcome]));
      this.ctx.log.warn({ obligations: members.length, error: (error as Error).message }, "dispersal batch rolled back: each obligation runs alone");
      return "one by one";
    }
    this.ctx.log.debug({ obligations: members.length, ms: Math.round(performance.now() - started) }, "dispersal batch committed");
    this.committed.batches++;
    this.committed.obligations += members.length;
    try {
      failpoint("dispersal.before-complete");
    } catch (error) {
      // Committed: each job fails this attempt and its retry replays the dispersal (idempotent).
      return new Map(members.map((m) => [m.request.obligationId, { kind: "failed", error } as BatchOutcome]));
    }
    return outcomes;
  }
}
