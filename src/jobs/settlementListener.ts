// The fast path (DESIGN.md §4): a dedicated Postgres connection LISTENs for obligations that became
// settled (the trigger of drizzle/0005_settlement_notify.sql) and enqueues their retrigger jobs at
// once, through enqueueRetriggers: the same job and deduplication as the scan, so any number of
// listening processes give one live job. Notifications are coalesced into pages. Whatever the
// listener does not enqueue itself (a burst statement, more ids than it holds in memory, ids the
// backlog cap refused, a Redis error, anything settled while it was not connected) it hands to a
// catch-up scan, which pages through the orphans; the scheduled scan stays the net for the rest.
import { hostname } from "node:os";
import postgres from "postgres";
import { normaliseId } from "../domain/ids.js";
import { publishHeartbeat, removeHeartbeat } from "../queues/listenerHeartbeats.js";
import { JOB } from "../queues/names.js";
import { enqueueRetriggers } from "../queues/retriggerJobs.js";
import { failpoint } from "../failpoint.js";
import { logNotice } from "../db/client.js";
import type { PipelineContext } from "./context.js";
import { withinDeadline } from "../deadline.js";
import { paymentTraceparents } from "../db/paymentTraces.js";
import { continueTrace, tracingActive } from "../telemetry.js";

// Both names are the migration's (drizzle/0005_settlement_notify.sql): change them together.
export const SETTLEMENT_CHANNEL = "dispersal_obligation_settled";
/** Sent instead of ids by a statement that settles more than 100 obligations. */
export const BURST_PAYLOAD = "burst";

const CATCH_UP_DEDUPLICATION_ID = "settlement-catch-up";

export type ListenerState = "connecting" | "listening" | "reconnecting" | "stopped";

export interface ListenerStatus {
  /** host:pid of the listening process. */
  process: string;
  state: ListenerState;
  up: boolean;
  /** When the state last changed (ISO 8601). */
  since: string;
  /** Successful LISTENs, the first one included. */
  connects: number;
  lastError: string | null;
  notifications: number;
  enqueued: number;
  /** Ids the listener did not enqueue itself (overflow, backlog full, Redis error): a catch-up scan picks them up. */
  handedToScan: number;
  catchUpScans: number;
}

export interface ListenerOptions {
  databaseUrl: string;
  /** First reconnect delay; doubles up to maxReconnectMs, jittered. (Default: SETTLEMENT_LISTENER_RECONNECT_MS) */
  reconnectMs: number;
  /** (Default: 30,000) */
  maxReconnectMs?: number;
  /** How long ids are gathered before one addBulk. (Default: 5 ms) */
  flushMs?: number;
  /** Ids held in memory at most; beyond, they are handed to a catch-up scan. (Default: 10,000) */
  maxPending?: number;
  /** How often the connection is probed (select 1) and the state published to Redis. (Default: 5,000) */
  heartbeatMs?: number;
}

const running = new Set<SettlementListener>();

/** The listeners running in this process (for /readyz and /metrics). */
export function localListenerStatuses(): ListenerStatus[] {
  return [...running].map((listener) => listener.status());
}

export function startSettlementListener(ctx: PipelineContext, options: ListenerOptions): SettlementListener {
  const listener = new SettlementListener(ctx, options);
  listener.start();
  return listener;
}

export class SettlementListener {
  readonly process = `${hostname()}:${process.pid}`;
  private state: ListenerState = "connecting";
  private since = new Date();
  private lastError: string | null = null;
  private readonly counts = { connects: 0, notifications: 0, enqueued: 0, handedToScan: 0, catchUpScans: 0 };
  private readonly pending = new Set<string>();
  private flushTimer: NodeJS.Timeout | undefined;
  private draining: Promise<void> | undefined;
  private catchUpReason: string | undefined;
  private catchingUp: Promise<void> | undefined;
  private connecting: Promise<void> | undefined;
  private generation = 0;
  private lost: (() => void) | undefined;
  private readonly stopping = new AbortController();
  private readonly settings: Required<ListenerOptions>;

  constructor(private readonly ctx: PipelineContext, options: ListenerOptions) {
    this.settings = { maxReconnectMs: 30_000, flushMs: 5, maxPending: 10_000, heartbeatMs: 5_000, ...options };
  }

  start(): void {
    running.add(this);
    this.connecting = this.connectLoop();
  }

  status(): ListenerStatus {
    return {
      process: this.process,
      state: this.state,
      up: this.state === "listening",
      since: this.since.toISOString(),
      lastError: this.lastError,
      ...this.counts,
    };
  }

  /** Resolves when the listener is listening (for tests and start-up ordering). */
  async listening(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.state !== "listening") {
      if (this.state === "stopped" || Date.now() > deadline) throw new Error(`settlement listener is ${this.state}: ${this.lastError ?? "no error"}`);
      await delay(20);
    }
  }

  /** Stops listening, hands what it holds to Redis (bounded), and removes its heartbeat. */
  async stop(): Promise<void> {
    if (this.stopping.signal.aborted) return;
    this.stopping.abort();
    this.lost?.();
    await this.connecting;
    clearTimeout(this.flushTimer);
    await atMost(this.drain(true), 5_000);
    this.setState("stopped");
    running.delete(this);
    await atMost(removeHeartbeat(this.ctx.queues, this.process), 1_000);
  }

  private get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  private setState(state: ListenerState, error?: unknown): void {
    if (error !== undefined) this.lastError = error instanceof Error ? error.message : String(error);
    if (state === this.state) return;
    this.state = state;
    this.since = new Date();
    void this.publish();
  }

  private async connectLoop(): Promise<void> {
    let backoff = this.settings.reconnectMs;
    while (!this.stopped) {
      const generation = ++this.generation;
      const lost = new Promise<void>((resolve) => (this.lost = resolve));
      // onnotify is a postgres.js option its type definitions leave out (sql.listen uses it inside).
      const onnotify = (channel: string, payload: string) => {
        if (channel === SETTLEMENT_CHANNEL && generation === this.generation) this.onNotification(payload);
      };
      const sql = postgres(this.settings.databaseUrl, {
        ...({ onnotify } as object),
        max: 1,
        idle_timeout: 0,
        max_lifetime: null,
        connect_timeout: 10,
        fetch_types: false,
        onnotice: logNotice,
        connection: { application_name: "dispersal-settlement-listener" },
        onclose: () => {
          if (generation === this.generation) this.lost?.();
        },
      });
      let heartbeat: NodeJS.Timeout | undefined;
      try {
        // A stop does not wait for a connect attempt against an unreachable Postgres.
        await Promise.race([withinDeadline(sql.unsafe(`listen ${SETTLEMENT_CHANNEL}`), 15_000, "LISTEN"), delay(20_000, this.stopping.signal)]);
        if (this.stopped) break;
        this.counts.connects++;
        this.setState("listening");
        this.ctx.log.info({ channel: SETTLEMENT_CHANNEL, connects: this.counts.connects }, "settlement listener listening");
        backoff = this.settings.reconnectMs;
        // NOTIFY is delivered only to sessions listening at commit: whatever was settled while this
        // listener was not connected it never hears of, so it asks for a catch-up scan, now that
        // LISTEN is in place (anything committed after the scan's start is notified).
        this.askForCatchUp(this.counts.connects === 1 ? "listener connected" : "listener reconnected");
        heartbeat = setInterval(() => void this.probe(sql, generation), this.settings.heartbeatMs);
        await lost;
        if (this.stopped) break;
        this.setState("reconnecting", this.lastError ?? "connection closed");
        this.ctx.log.warn({ error: this.lastError }, "settlement listener lost its connection: reconnecting");
      } catch (error) {
        if (this.stopped) break;
        this.setState("reconnecting", error);
        this.ctx.log.warn({ error: this.lastError, retryInMs: backoff }, "settlement listener could not listen: retrying");
      } finally {
        clearInterval(heartbeat);
        this.generation++; // late notifications and closes of this connection are ignored
        await sql.end({ timeout: 0 }).catch(() => {});
      }
      await delay(backoff * (0.75 + Math.random() / 2), this.stopping.signal);
      backoff = Math.min(backoff * 2, this.settings.maxReconnectMs);
    }
  }

  /** A connection that went silent (no RST, a dead proxy) is found by its heartbeat query. */
  private async probe(sql: postgres.Sql, generation: number): Promise<void> {
    void this.publish();
    try {
      // Generous: on a saturated machine a slow answer is not a dead connection (a reconnect costs a scan).
      await withinDeadline(sql`select 1`, Math.max(10_000, 2 * this.settings.heartbeatMs), "listener heartbeat");
    } catch (error) {
      if (generation !== this.generation) return;
      this.lastError = (error as Error).message;
      this.lost?.();
    }
  }

  private publishing = false;
  private async publish(): Promise<void> {
    if (this.publishing || this.ctx.queues.connection.status !== "ready") return;
    this.publishing = true;
    try {
      const { process, state, up } = this.status();
      await withinDeadline(publishHeartbeat(this.ctx.queues, { process, state, up, at: Date.now() }), 2_000, "listener status");
    } catch {
      // Redis is down: its own alerts say so; the heartbeat turns stale and the metric disappears.
    } finally {
      this.publishing = false;
    }
  }

  private onNotification(payload: string): void {
    this.counts.notifications++;
    if (payload === BURST_PAYLOAD) {
      this.askForCatchUp("burst settlement");
      return;
    }
    const obligationId = normaliseId(payload);
    if (!obligationId) {
      this.ctx.log.warn({ payload: payload.slice(0, 100) }, "settlement listener: notification without an obligation id ignored");
      return;
    }
    if (this.pending.size >= this.settings.maxPending) {
      // Memory stays bounded whatever arrives: the scan pages through these orphans instead.
      this.counts.handedToScan++;
      this.askForCatchUp("listener overflow");
      return;
    }
    this.pending.add(obligationId);
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = undefined;
      // enqueue() hands its own failures to a catch-up scan; anything else thrown here is logged, not left unhandled.
      this.drain(false).catch((error: unknown) => this.ctx.log.error({ error: (error as Error).message }, "settlement listener drain failed"));
    }, this.settings.flushMs);
  }

  /** Enqueues the pending ids in pages of HEALING_SCAN_PAGE_SIZE, one page at a time, one drain at a time. */
  private drain(final: boolean): Promise<void> {
    if (!this.draining) {
      // Cleared in a .finally (never synchronously inside the run): a run that finds nothing to do
      // must not leave itself behind as "the drain in progress", or no later id is ever enqueued.
      const run = this.drainPending(final).finally(() => {
        if (this.draining === run) this.draining = undefined;
      });
      this.draining = run;
    }
    return this.draining;
  }

  private async drainPending(final: boolean): Promise<void> {
    while (this.pending.size > 0 && (final || !this.stopped)) {
      const ids = [...this.pending].slice(0, this.ctx.settings.HEALING_SCAN_PAGE_SIZE);
      for (const id of ids) this.pending.delete(id);
      failpoint("listener.after-drain");
      await this.enqueue(ids);
      failpoint("listener.after-enqueue");
    }
  }

  private async enqueue(ids: string[]): Promise<void> {
    const traces = await this.continuePaymentTraces(ids);
    try {
      const jobs = await enqueueRetriggers(this.ctx.queues, this.ctx.settings, ids, traces.jobParents);
      // Ids the backlog cap did not take are left to the scan, which continues as the backlog drains.
      const taken = new Set(jobs.map((job) => job.obligationId));
      const refused = ids.filter((id) => !taken.has(id)).length;
      this.counts.enqueued += ids.length - refused;
      if (refused > 0) {
        this.counts.handedToScan += refused;
        this.askForCatchUp("backlog full");
      }
    } catch (error) {
      this.counts.handedToScan += ids.length;
      this.ctx.log.warn({ ids: ids.length, error: (error as Error).message }, "settlement listener could not enqueue: handing the ids to a catch-up scan");
      this.askForCatchUp("enqueue failed");
    } finally {
      traces.end();
    }
  }

  /**
   * With tracing on: a "settlement notification" span in the trace of each obligation's payment
   * (its traceparent is in the payment's audit row, committed with the settlement), the parent of
   * the obligation's retrigger job. Traces never hold up or fail an enqueue.
   */
  private async continuePaymentTraces(ids: string[]): Promise<{ jobParents?: Map<string, string>; end(): void }> {
    if (!tracingActive()) return { end: () => {} };
    let traceparents: Map<string, string>;
    try {
      traceparents = await withinDeadline(paymentTraceparents(this.ctx.database.db, ids), 1000, "payment traces");
    } catch (error) {
      this.ctx.log.debug({ error: (error as Error).message }, "settlement listener: payment traces unreadable, jobs start their own");
      return { end: () => {} };
    }
    const spans = [...traceparents].flatMap(([obligationId, traceparent]) => {
      const span = continueTrace("settlement notification", traceparent, {
        "messaging.system": "postgresql",
        "messaging.destination.name": SETTLEMENT_CHANNEL,
        "dispersal.obligation_id": obligationId,
      });
      return span ? [[obligationId, span] as const] : [];
    });
    return {
      jobParents: new Map(spans.map(([obligationId, span]) => [obligationId, span.jobMetadata])),
      end: () => spans.forEach(([, span]) => span.end()),
    };
  }

  private askForCatchUp(reason: string): void {
    this.catchUpReason ??= reason;
    if (!this.catchingUp) {
      const run = this.requestCatchUps().finally(() => {
        if (this.catchingUp === run) this.catchingUp = undefined;
      });
      this.catchingUp = run;
    }
  }

  /**
   * One scan job on the healing queue, deduplicated while it waits: every listening process asks at
   * once after a restart or a burst, and one scan serves them all. A scan already running may have
   * paged past the ids just settled, so joining a running one is not enough: ask again after it.
   */
  private async requestCatchUps(): Promise<void> {
    let backoff = 1_000;
    while (this.catchUpReason && !this.stopped) {
      const reason = this.catchUpReason;
      this.catchUpReason = undefined;
      try {
        const jobId = `catch-up-scan.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
        const job = await this.ctx.queues.healing.add(
          JOB.scan,
          { requestedBy: `settlement-listener: ${reason}` },
          { jobId, deduplication: { id: CATCH_UP_DEDUPLICATION_ID }, removeOnComplete: { count: 200 }, removeOnFail: { count: 200 } },
        );
        failpoint("listener.after-catch-up-request");
        if (job.id === jobId) {
          this.counts.catchUpScans++;
          this.ctx.log.info({ reason, jobId }, "settlement listener asked for a catch-up scan");
        } else if ((await this.ctx.queues.healing.getJobState(job.id!)) === "active") {
          this.catchUpReason ??= reason;
          await delay(500, this.stopping.signal);
        }
        backoff = 1_000;
      } catch (error) {
        this.catchUpReason ??= reason;
        this.ctx.log.warn({ reason, error: (error as Error).message, retryInMs: backoff }, "settlement listener could not ask for a catch-up scan");
        await delay(backoff, this.stopping.signal);
        backoff = Math.min(backoff * 2, this.settings.maxReconnectMs);
      }
    }
  }
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Waits for the work, or `ms` at most; its outcome does not matter. */
async function atMost(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([work.catch(() => {}), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
