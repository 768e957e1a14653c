import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from './app-env.ts';
import { HttpError } from './errors.ts';

/** The limiter's period (wrangler.toml `ratelimits.simple.period`): when a refused client may retry. */
const RETRY_AFTER_SECONDS = 60;

/**
 * Refuses a client that sent too many requests to one kind of route with 429 `rate_limited`, before
 * any work (key check, body parsing, store access) is done. Clients are told apart by
 * CF-Connecting-IP, which Cloudflare always sets; a request without it (tests, a bare workerd) is not
 * limited, and neither is any request when the API_RATE_LIMITER binding is absent.
 */
export function rateLimit(route: 'create' | 'join' | 'leave'): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const limiter = c.env.API_RATE_LIMITER;
    const client = c.req.header('cf-connecting-ip');
    if (limiter && client) {
      const { success } = await limiter.limit({ key: `${route}:${client}` });
      if (!success) {
        c.header('Retry-After', String(RETRY_AFTER_SECONDS));
        throw new HttpError(429, 'rate_limited', 'too many requests from this client; retry later');
      }
    }
    await next();
  };
}
