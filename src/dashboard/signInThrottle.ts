// Throttling of failed sign-ins (rate-limiter-flexible on our Redis, so every server process shares
// the counts): per client address, and per user name across addresses. A successful sign-in is
// never counted or slowed. Failures are audited aggregated: the first failure of an address in a
// window and the moment an address or a user name becomes throttled, not every probe.
import { createHash } from "node:crypto";
import { RateLimiterMemory, RateLimiterRedis, type RateLimiterAbstract, type RateLimiterRes } from "rate-limiter-flexible";
import type { Config } from "../config.js";
import { writeAudit } from "../db/audit.js";
import type { PipelineContext } from "../jobs/context.js";

export const SIGN_IN_AUDIT_ACTION = "ops.sign_in_failed";

export type ThrottleSettings = Pick<Config, "SIGN_IN_FAILURES_PER_ADDRESS" | "SIGN_IN_FAILURES_PER_USER" | "SIGN_IN_WINDOW_SECONDS" | "QUEUE_PREFIX">;

export interface SignInThrottle {
  /** Before credentials are checked: the milliseconds this attempt must wait, or undefined to go ahead. */
  waitBeforeTrying(address: string, userName: string | undefined): Promise<number | undefined>;
  /** After wrong credentials: counts them; the milliseconds to wait if this failure crossed a limit. */
  recordFailure(address: string, userName: string | undefined): Promise<number | undefined>;
}

/**
 * A user name that has had too many failures is throttled only for addresses that failed for it:
 * an attacker's addresses get 429 before their guess is even checked, while the user, signing in
 * from an address that never failed, still gets in (no lock-out of the real owner).
 */
export function signInThrottle(ctx: PipelineContext, settings: ThrottleSettings): SignInThrottle {
  const duration = settings.SIGN_IN_WINDOW_SECONDS;
  const limiter = (name: string, points: number): RateLimiterAbstract =>
    new RateLimiterRedis({
      storeClient: ctx.queues.forRequests.connection,
      keyPrefix: `${settings.QUEUE_PREFIX}:sign-in:${name}`,
      points,
      duration,
      rejectIfRedisNotReady: true,
      // Redis away: each process keeps counting on its own rather than letting guesses through uncounted.
      insuranceLimiter: new RateLimiterMemory({ keyPrefix: `sign-in:${name}`, points, duration }),
    });
  const byAddress = limiter("address", settings.SIGN_IN_FAILURES_PER_ADDRESS);
  const byUser = limiter("user", settings.SIGN_IN_FAILURES_PER_USER);
  const byUserAtAddress = limiter("user-at-address", settings.SIGN_IN_FAILURES_PER_USER);
  const addressLimit = settings.SIGN_IN_FAILURES_PER_ADDRESS;
  const userLimit = settings.SIGN_IN_FAILURES_PER_USER;

  const audit = (event: "first_failure" | "address_throttled" | "user_throttled", address: string, userName: string | undefined, failures: number) =>
    writeAudit(ctx.database.db, {
      action: SIGN_IN_AUDIT_ACTION,
      actor: "unauthenticated",
      resourceType: "sign-in",
      resourceId: event === "user_throttled" ? `user:${userName ?? ""}`.slice(0, 120) : `address:${address}`,
      severity: event === "first_failure" ? "info" : "warning",
      metadata: { event, address, userName: userName?.slice(0, 100), failuresInWindow: failures, windowSeconds: duration },
    }).catch((error: Error) => ctx.log.error({ event, address, error: error.message }, "audit row of a failed sign-in could not be written"));

  return {
    async waitBeforeTrying(address, userName) {
      try {
        const [atAddress, forUser, forUserHere] = await Promise.all([
          byAddress.get(address),
          userName === undefined ? null : byUser.get(userKey(userName)),
          userName === undefined ? null : byUserAtAddress.get(`${userKey(userName)}@${address}`),
        ]);
        if (atAddress && atAddress.consumedPoints >= addressLimit) return atAddress.msBeforeNext;
        if (forUser && forUserHere && forUser.consumedPoints >= userLimit && forUserHere.consumedPoints > 0) return forUser.msBeforeNext;
        return undefined;
      } catch (error) {
        ctx.log.warn({ error: (error as Error).message }, "sign-in throttle unavailable: credentials checked without it");
        return undefined;
      }
    },

    async recordFailure(address, userName) {
      try {
        const [atAddress, forUser] = await Promise.all([
          byAddress.penalty(address, 1),
          userName === undefined ? null : byUser.penalty(userKey(userName), 1),
          userName === undefined ? null : byUserAtAddress.penalty(`${userKey(userName)}@${address}`, 1),
        ]);
        if (atAddress.consumedPoints === 1) void audit("first_failure", address, userName, 1);
        if (atAddress.consumedPoints === addressLimit) void audit("address_throttled", address, userName, atAddress.consumedPoints);
        if (forUser && forUser.consumedPoints === userLimit) void audit("user_throttled", address, userName, forUser.consumedPoints);
        if (atAddress.consumedPoints >= addressLimit) return atAddress.msBeforeNext;
        if (forUser && forUser.consumedPoints >= userLimit) return (forUser as RateLimiterRes).msBeforeNext;
        return undefined;
      } catch (error) {
        ctx.log.warn({ error: (error as Error).message }, "sign-in throttle unavailable: failure not counted");
        return undefined;
      }
    },
  };
}

/** User names are attacker-chosen text: a fixed-size key, whatever was sent. */
function userKey(userName: string): string {
  return createHash("sha256").update(userName, "utf8").digest("hex").slice(0, 32);
}
