// The throttle of search per user (rate-limiter-flexible on our Redis, so every server process
// shares the counts): a viewer looping on search cannot keep the readers' pool busy for everyone.
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import type { PipelineContext } from "../jobs/context.js";
import { HttpError } from "./httpErrors.js";

const WINDOW_SECONDS = 60;

export interface SearchThrottle {
  /** Counts one search of `userName`; throws HttpError 429 (with retryAfterSeconds) past the limit. */
  take(userName: string): Promise<void>;
}

export function searchThrottle(ctx: Pick<PipelineContext, "queues" | "settings" | "log">): SearchThrottle {
  const points = ctx.settings.SEARCHES_PER_USER_PER_MINUTE;
  const limiter = new RateLimiterRedis({
    storeClient: ctx.queues.forRequests.connection,
    keyPrefix: `${ctx.queues.prefix}:search:user`,
    points,
    duration: WINDOW_SECONDS,
    rejectIfRedisNotReady: true,
    // Redis away: each process counts on its own rather than letting searches through uncounted.
    insuranceLimiter: new RateLimiterMemory({ keyPrefix: "search:user", points, duration: WINDOW_SECONDS }),
  });
  return {
    async take(userName) {
      try {
        await limiter.consume(userName.toLowerCase());
      } catch (error) {
        if (!(error instanceof RateLimiterRes)) throw error;
        const retryAfterSeconds = Math.max(1, Math.ceil(error.msBeforeNext / 1000));
        throw new HttpError(429, `too many searches: at most ${points} a minute per user; try again in ${retryAfterSeconds} s`, {
          code: "SEARCH_THROTTLED",
          retryAfterSeconds,
        });
      }
    },
  };
}
