// Redis connections for BullMQ (ioredis): a single node or a Cluster, the options BullMQ needs, and a
// start-up check that names the URL that failed.
import { Cluster, Redis, type ClusterNode } from "ioredis";
import { InfrastructureError } from "../domain/errors.js";
import { redactUrl } from "../redactUrl.js";

export type RedisConnection = Redis | Cluster;

export interface RedisSettings {
  REDIS_URL: string;
  REDIS_CLUSTER_NODES?: string | undefined;
}

/** BullMQ requires maxRetriesPerRequest: null so that blocking commands and reconnects are not cut short. */
export function createRedisConnection(settings: RedisSettings, name = "dispersal"): RedisConnection {
  const common = { maxRetriesPerRequest: null, enableReadyCheck: true, connectionName: name } as const;
  if (settings.REDIS_CLUSTER_NODES) {
    const nodes: ClusterNode[] = settings.REDIS_CLUSTER_NODES.split(",").map((hostPort) => {
      const [host, port] = hostPort.split(":");
      return { host: host!, port: Number(port) };
    });
    return new Cluster(nodes, { redisOptions: common, enableReadyCheck: true });
  }
  return new Redis(settings.REDIS_URL, { ...common, lazyConnect: false });
}

/**
 * A second connection like `connection` whose commands fail instead of waiting for Redis: no offline
 * queue (refused at once while Redis is away), nothing resent after a reconnect, each command bounded
 * by `commandTimeoutMs`. For work a request waits on: a command the request gave up on must never
 * arrive later, when Redis is back, and act after the request was answered as failed.
 */
export function createBoundedConnection(connection: RedisConnection, commandTimeoutMs: number, name: string): RedisConnection {
  const bounded = { enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 0, commandTimeout: commandTimeoutMs, connectionName: name } as const;
  if (connection instanceof Cluster) {
    return connection.duplicate(undefined, { enableOfflineQueue: false, redisOptions: { ...connection.options.redisOptions, ...bounded } });
  }
  return connection.duplicate(bounded);
}

export function describeRedis(settings: RedisSettings): string {
  const url = settings.REDIS_CLUSTER_NODES ? `cluster ${settings.REDIS_CLUSTER_NODES}` : settings.REDIS_URL;
  return redactUrl(url);
}

/** Fails fast at start-up with the URL and how to start a Redis, instead of retrying forever. */
export async function assertRedisReachable(settings: RedisSettings, timeoutMs = 5000): Promise<void> {
  const probe = settings.REDIS_CLUSTER_NODES
    ? new Cluster(settings.REDIS_CLUSTER_NODES.split(",").map((n) => ({ host: n.split(":")[0]!, port: Number(n.split(":")[1]) })), {
        clusterRetryStrategy: () => null,
        redisOptions: { connectTimeout: timeoutMs, maxRetriesPerRequest: 0 },
      })
    : new Redis(settings.REDIS_URL, { lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null });
  let lastError: Error | undefined;
  probe.on("error", (error: Error) => (lastError = error));
  try {
    if (probe instanceof Redis) await probe.connect();
    await withTimeout(probe.ping(), timeoutMs);
  } catch (error) {
    throw new InfrastructureError(
      `Cannot reach Redis at ${describeRedis(settings)} (${(lastError ?? (error as Error)).message}). ` +
        "Start one with `docker compose up -d redis`, or point REDIS_URL at a running server.",
      { cause: error },
    );
  } finally {
    probe.disconnect();
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    promise.then(
      (v) => (clearTimeout(timer), resolve(v)),
      (e) => (clearTimeout(timer), reject(e)),
    );
  });
}
