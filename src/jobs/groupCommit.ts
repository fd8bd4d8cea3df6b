// Group commit: what one process is asked to do within a few milliseconds is gathered into batches
// that each run in one transaction. The mechanism shared by batched dispersal (dispersalBatches.ts)
// and batched escalation (escalate.ts); what a batch does is theirs.

export interface GroupCommitOptions {
  /** Items per batch at most (HEALING_BATCH_SIZE). */
  maxSize: number;
  /** A batch closes when nothing has joined it for this long: a pause means the burst is over. */
  lingerMs: number;
  /** …or this long after its first item at the latest. */
  maxWaitMs: number;
}

export class GroupCommit<T> {
  private waiting: T[] = [];
  private timer: NodeJS.Timeout | undefined;
  private firstArrival = 0;
  private readonly running = new Set<Promise<void>>();

  /** `runBatch` must settle every item of its batch itself and never reject. */
  constructor(
    private readonly options: GroupCommitOptions,
    private readonly runBatch: (batch: T[]) => Promise<void>,
  ) {}

  add(item: T): void {
    if (this.waiting.length === 0) this.firstArrival = Date.now();
    this.waiting.push(item);
    if (this.waiting.length >= this.options.maxSize) return this.flush();
    clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(this.options.lingerMs, this.firstArrival + this.options.maxWaitMs - Date.now()));
    this.timer = setTimeout(() => this.flush(), wait);
  }

  /** Resolves when every batch started so far has finished (for shutdown). */
  async drained(): Promise<void> {
    this.flush();
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    while (this.waiting.length > 0) {
      const batch = this.waiting.splice(0, this.options.maxSize);
      const run = this.runBatch(batch).finally(() => this.running.delete(run));
      this.running.add(run);
    }
  }
}
