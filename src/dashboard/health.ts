// /healthz (the process answers) and /readyz (Redis and Postgres both answer within the deadline),
// without credentials: load balancers and orchestrators call them. /readyz also lists the states of
// the settlement listeners (this process's and those other processes report through Redis; no host
// names or pids, which are for the authenticated /metrics and the logs); a listener
// that is down degrades latency, not correctness (the scan is the net), so it does not make 503.
import { Router } from "express";
import type { PipelineContext } from "../jobs/context.js";
import { localListenerStatuses } from "../jobs/settlementListener.js";
import { readHeartbeats } from "../queues/listenerHeartbeats.js";
import { schedulesPresent } from "../queues/schedulers.js";
import { DeadlineExceededError, withinDeadline } from "../deadline.js";

export const READINESS_DEADLINE_MS = 2000;

type Probe = { up: true; ms: number } | { up: false; error: string };

export function healthRoutes(ctx: PipelineContext): Router {
  const router = Router();
  router.get("/healthz", (_req, res) => void res.json({ status: "ok" }));
  router.get("/readyz", async (_req, res) => {
    const [redis, postgres] = await Promise.all([probeRedis(ctx), probePostgres(ctx)]);
    const down = [...(redis.up ? [] : ["redis"]), ...(postgres.up ? [] : ["postgres"])];
    // Reported, not a reason to take this process out of service: every process puts a missing schedule back.
    const schedules = redis.up ? await readSchedules(ctx) : undefined;
    const missingSchedules = schedules ? Object.entries(schedules).flatMap(([id, present]) => (present ? [] : [id])) : [];
    // Bull Board cannot pause a queue any more, but redis-cli can: say so rather than stall silently.
    const pausedQueues = redis.up ? await readPausedQueues(ctx) : undefined;
    // Public answer: each listener's state, not which host and pid it runs as (/metrics, behind credentials, names them).
    const settlementListeners = (await listenerStates(ctx, redis.up)).map(({ state, up }) => ({ state, up }));
    res
      .status(down.length === 0 ? 200 : 503)
      .json({ status: down.length === 0 ? "ready" : "unavailable", down, redis, postgres, schedules, missingSchedules, pausedQueues, settlementListeners });
  });
  return router;
}

export interface ListenerState {
  process: string;
  state: string;
  up: boolean;
}

/** This process's listeners, then the fresh heartbeats of the others (no error text: the answer is public). */
export async function listenerStates(ctx: PipelineContext, redisUp = ctx.queues.connection.status === "ready"): Promise<ListenerState[]> {
  const local = localListenerStatuses().map(({ process, state, up }) => ({ process, state, up }));
  if (!redisUp) return local;
  const reported = await withinDeadline(readHeartbeats(ctx.queues), READINESS_DEADLINE_MS, "listener heartbeats").catch(() => []);
  const seen = new Set(local.map((l) => l.process));
  return [...local, ...reported.filter((h) => !seen.has(h.process)).map(({ process, state, up }) => ({ process, state, up }))];
}

async function readSchedules(ctx: PipelineContext): Promise<Record<string, boolean> | undefined> {
  try {
    return await withinDeadline(schedulesPresent(ctx.queues), READINESS_DEADLINE_MS, "schedules");
  } catch (error) {
    ctx.log.warn({ error: (error as Error).message }, "readiness: schedules unreadable");
    return undefined;
  }
}

async function readPausedQueues(ctx: PipelineContext): Promise<string[] | undefined> {
  try {
    const paused = await withinDeadline(Promise.all(ctx.queues.all.map((q) => q.isPaused())), READINESS_DEADLINE_MS, "paused queues");
    return ctx.queues.all.filter((_q, i) => paused[i]).map((q) => q.name);
  } catch (error) {
    ctx.log.warn({ error: (error as Error).message }, "readiness: paused queues unreadable");
    return undefined;
  }
}

async function probeRedis(ctx: PipelineContext): Promise<Probe> {
  const connection = ctx.queues.connection;
  // A reconnecting client would queue the PING until Redis is back: report it down at once instead.
  if (connection.status !== "ready") return { up: false, error: `connection is ${connection.status}` };
  return timed(ctx, () => connection.ping(), "redis PING");
}

function probePostgres(ctx: PipelineContext): Promise<Probe> {
  return timed(ctx, () => ctx.database.sql`select 1`, "postgres select 1");
}

/** The answer is public (no credentials): it names what is down, the log says why (hosts, codes). */
async function timed(ctx: PipelineContext, work: () => Promise<unknown>, what: string): Promise<Probe> {
  const started = performance.now();
  try {
    await withinDeadline(work(), READINESS_DEADLINE_MS, what);
    return { up: true, ms: Math.round(performance.now() - started) };
  } catch (error) {
    ctx.log.warn({ probe: what, error: (error as Error).message }, "readiness probe failed");
    return { up: false, error: error instanceof DeadlineExceededError ? error.message : `${what} failed` };
  }
}
