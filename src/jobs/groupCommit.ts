// Group commit: what one process is asked to do within a few milliseconds is gathered into batches
// that each run in one transaction. The mechanism shared by batched dispersal (dispersalBatches.ts)
// and batched escalation (escalate.ts); what a batch does is theirs.
//
// At most `maxInFlight` batches of one process run at once: while they commit, the next batch keeps
// gathering, and it starts the moment one of them finishes. Under load the batches therefore grow
// to `maxSize` by themselves (the jobs a commit completes come back as the next batch), and the
// transactions that meet on Postgres stay few — more of them only queue on the same two cores and
// on the same account rows (docs/performance.md: the batched ceiling peaks at 2 at a time).

export interface GroupCommitOptions {
  /** Items per batch at most (HEALING_BATCH_SIZE). */
  maxSize: number;
  /** A batch closes when nothing has joined it for this long: a pause means the burst is over. */
  lingerMs: number;
  /** …or this long after its first item at the latest. */
  maxWaitMs: number;
  /** Batches of this process running at once at most; a closed batch waits for a slot. Unbounded when omitted. */
  maxInFlight?: number;
}

export class GroupCommit<T> {
  private waiting: T[] = [];
  private timer: NodeJS.Timeout | undefined;
  private firstArrival = 0;
  /** The linger or the wait has run out (or the batch is full): start as soon as a slot is free. */
  private due = false;
  private readonly running = new Set<Promise<void>>();

  /** `runBatch` must settle every item of its batch itself and never reject. */
  constructor(
    private readonly options: GroupCommitOptions,
    private readonly runBatch: (batch: T[]) => Promise<void>,
  ) {}

  add(item: T): void {
    if (this.waiting.length === 0) this.firstArrival = Date.now();
    this.waiting.push(item);
    if (this.waiting.length >= this.options.maxSize) {
      this.due = true;
      return this.startDue();
    }
    if (this.due) return; // already waiting for a slot: nothing to time
    clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(this.options.lingerMs, this.firstArrival + this.options.maxWaitMs - Date.now()));
    this.timer = setTimeout(() => {
      this.due = true;
      this.startDue();
    }, wait);
  }

  /** Resolves when every batch started so far has finished (for shutdown). */
  async drained(): Promise<void> {
    this.due = true;
    this.startDue();
    while (this.running.size > 0 || this.waiting.length > 0) {
      await Promise.allSettled([...this.running]);
      this.startDue();
    }
  }

  /** Starts what is due while slots are free. A gathering that is not due yet keeps its timer. */
  private startDue(): void {
    if (!this.due) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    const slots = () => (this.options.maxInFlight ?? Infinity) - this.running.size;
    while (this.due && this.waiting.length > 0 && slots() > 0) {
      const batch = this.waiting.splice(0, this.options.maxSize);
      const run = this.runBatch(batch).finally(() => {
        this.running.delete(run);
        this.startDue();
      });
      this.running.add(run);
      // What is left (more than one batch's worth) is due as well; a fresh gathering starts when empty.
      if (this.waiting.length === 0) this.due = false;
    }
  }
}
