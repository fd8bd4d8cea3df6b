// The throttle of search per user (rate-limiter-flexible on our Redis, so every server process
// shares the counts): a viewer looping on search cannot keep the readers' pool busy for everyone.
// Once a user is over the limit, the refusals come from memory (inMemoryBlockOnConsumed), not Redis.
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import type { PipelineContext } from "../jobs/context.js";
import { HttpError } from "./httpErrors.js";

const WINDOW_SECONDS = 60;
/**
 * A refused search is answered this long later (never past its Retry-After): a client that loops
 * on search without honouring Retry-After then costs the server a handful of refusals a second
 * instead of hundreds, each of them answered from memory. At most MAX_HELD refusals wait at once
 * per process; past that they are answered at once, so held answers cannot pile up.
 */
export const REFUSAL_DELAY_MS = 1000;
const MAX_HELD = 256;

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
    // A user who has used up the window is refused from this process's memory until the window
    // ends: a client looping on search past its limit costs no Redis round trip per refusal.
    inMemoryBlockOnConsumed: points,
    // Redis away: each process counts on its own rather than letting searches through uncounted.
    insuranceLimiter: new RateLimiterMemory({ keyPrefix: "search:user", points, duration: WINDOW_SECONDS }),
  });
  let held = 0;
  return {
    async take(userName) {
      try {
        await limiter.consume(userName.toLowerCase());
      } catch (error) {
        if (!(error instanceof RateLimiterRes)) throw error;
        const delay = held < MAX_HELD ? Math.min(REFUSAL_DELAY_MS, error.msBeforeNext) : 0;
        if (delay > 0) {
          held++;
          await new Promise((resolve) => setTimeout(resolve, delay)).finally(() => held--);
        }
        // Counted from when the answer is sent, after the delay.
        const retryAfterSeconds = Math.max(1, Math.ceil((error.msBeforeNext - delay) / 1000));
        throw new HttpError(429, `too many searches: at most ${points} a minute per user; try again in ${retryAfterSeconds} s`, {
          code: "SEARCH_THROTTLED",
          retryAfterSeconds,
        });
      }
    },
  };
}
