import type { MiddlewareHandler } from 'hono';
import type { Logger } from '../../../shared/src/log.ts';
import type { AppEnv } from './app-env.ts';
import { HttpError } from './errors.ts';

/** The limiter's period (wrangler.toml `ratelimits.simple.period`): when a refused client may retry. */
const RETRY_AFTER_SECONDS = 60;

/** The limiter is a brake, not a gate: when it fails (local dev: its storage is busy), let the request through. */
async function allowed(limiter: RateLimit, key: string, logger: Logger): Promise<boolean> {
  try {
    return (await limiter.limit({ key })).success;
  } catch (error) {
    logger.warn('rate limiter failed; request allowed', { error: error instanceof Error ? error.name : typeof error });
    return true;
  }
}

/**
 * Refuses a client that sent too many requests to one kind of route with 429 `rate_limited`, before
 * any work (key check, body parsing, store access) is done. Clients are told apart by
 * CF-Connecting-IP, which Cloudflare always sets; a request without it (tests, a bare workerd) is not
 * limited, and neither is any request when the API_RATE_LIMITER binding is absent.
 */
export function rateLimit(route: 'create' | 'join' | 'leave' | 'token'): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const limiter = c.env.API_RATE_LIMITER;
    const client = c.req.header('cf-connecting-ip');
    if (limiter && client) {
      if (!(await allowed(limiter, `${route}:${client}`, c.get('logger')))) {
        c.header('Retry-After', String(RETRY_AFTER_SECONDS));
        throw new HttpError(429, 'rate_limited', 'too many requests from this client; retry later');
      }
    }
    await next();
  };
}
