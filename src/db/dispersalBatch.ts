// THE dispersal transaction of the healing rounds (DESIGN.md §3, §4), top to bottom, in the caller's
// transaction: lock the obligation rows in id order and authorize each round; allocate (read the
// journal after the lock, split, write the entries); record the failed attempts and resolve the
// healing rows (reversals of SUSPENSE, audit); post every entry last. A job alone is a batch of one.
// Each step ends at its failpoint (src/failpoint.ts: dispersal.after-lock, .after-allocate,
// .after-record, .before-commit), where the crash test kills the worker.
import { DomainError } from "../domain/errors.js";
import { failpoint } from "../failpoint.js";
import type { Tx } from "./client.js";
import { allocateObligations, type DispersalResult } from "./dispersals.js";
import { authorizeDispersalRounds, recordFailedAttempts, resolveHealings, type FailedAttempt, type ResolutionRequest } from "./healing.js";
import { postEntries } from "./ledger.js";

export interface DispersalRequest {
  obligationId: string;
  /** The job's attempt number (attemptsMade + 1), recorded on the healing row. */
  attempt: number;
  jobId?: string;
}

export type DispersalOutcome =
  | { kind: "dispersed"; dispersal: DispersalResult; resolvedEscalation: boolean }
  /** Failed with this error, exactly as alone (its failed attempt already written when `attemptRecorded`). */
  | { kind: "failed"; error: unknown; attemptRecorded?: boolean };

/** One request per obligation (the caller keeps a second job of one obligation for another batch). */
export async function disperseBatch(tx: Tx, requests: readonly DispersalRequest[]): Promise<Map<string, DispersalOutcome>> {
  const results = new Map<string, DispersalOutcome>();
  const ids = requests.map((r) => r.obligationId);
  // Locks the rows in id order and reads who asked for each round: a job of an escalation nobody
  // requeued is refused (db/healing.ts authorizeDispersalRounds).
  const authority = await authorizeDispersalRounds(tx, ids);
  failpoint("dispersal.after-lock");
  const { outcomes: dispersals, postings } = await allocateObligations(tx, ids.filter((id) => !(authority.get(id) instanceof DomainError)));
  failpoint("dispersal.after-allocate");

  // Each obligation's bookkeeping, set-based, before the postings lock the shared account rows.
  const failures: FailedAttempt[] = [];
  const resolving: Array<ResolutionRequest & { dispersal: DispersalResult }> = [];
  for (const request of requests) {
    const round = authority.get(request.obligationId)!;
    if (round instanceof DomainError) {
      results.set(request.obligationId, { kind: "failed", error: round });
      continue;
    }
    const dispersal = dispersals.get(request.obligationId)!;
    const jobId = request.jobId ? { jobId: request.jobId } : {};
    if (dispersal.outcome === "rejected") {
      // A retryable failure uses an attempt: written here, in the batch's commit, instead of a
      // transaction of its own per job (an escalation storm is 3 of them per obligation).
      const attemptRecorded = dispersal.error.retryable;
      if (attemptRecorded) failures.push({ obligationId: request.obligationId, attempt: request.attempt, error: dispersal.error.message, ...jobId });
      results.set(request.obligationId, { kind: "failed", error: dispersal.error, attemptRecorded });
      continue;
    }
    resolving.push({
      obligationId: request.obligationId,
      attempt: request.attempt,
      context: { actor: round.actor, requeueRequestId: round.requeueRequestId, approvedBy: round.approvedBy, ...jobId },
      dispersal: dispersal.dispersal,
    });
  }
  await recordFailedAttempts(tx, failures);
  const resolutions = await resolveHealings(tx, resolving);
  failpoint("dispersal.after-record");
  for (const { obligationId, dispersal } of resolving) {
    results.set(obligationId, { kind: "dispersed", dispersal, resolvedEscalation: resolutions.get(obligationId)!.reversals.length > 0 });
  }
  // postEntries takes the account rows in a fixed order, so concurrent batches cannot deadlock.
  await postEntries(tx, postings);
  failpoint("dispersal.before-commit");
  return results;
}
