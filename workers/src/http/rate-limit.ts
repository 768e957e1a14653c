import type { Context, MiddlewareHandler } from 'hono';
import type { Logger } from '../../../shared/src/log.ts';
import type { AppEnv } from './app-env.ts';
import { HttpError } from './errors.ts';

/** The limiters' period (wrangler.toml `ratelimits.simple.period`): when a refused client may retry. */
const RETRY_AFTER_SECONDS = 60;

/** Every kind of route that is limited; each has its own count per client. */
export type RateLimitedRoute = 'create' | 'join' | 'leave' | 'token' | 'room' | 'admin' | 'ws' | 'health';

/**
 * The bucket of clients the edge cannot tell apart (no address header at all): they share one count
 * per route, so leaving the header out never escapes the limit.
 */
export const UNIDENTIFIED_CLIENT = 'unidentified';

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
 * The client's address, as far as the edge can trust it:
 * - `CLIENT_IP_HEADER`, when configured: a header that the reverse proxy in front of a self-hosted
 *   edge sets (and overwrites); for a list such as X-Forwarded-For, its last entry, the one that
 *   proxy appended. CF-Connecting-IP is then ignored: behind such a proxy a client could set it.
 * - otherwise CF-Connecting-IP: Cloudflare sets it to the peer address, and so does `wrangler dev`
 *   (from the TCP peer) when the client sent none.
 * - neither: the shared unidentified bucket.
 */
export function clientAddress(c: Context<AppEnv>): string {
  const trustedHeader = c.get('config').clientIpHeader;
  const raw = trustedHeader ? c.req.header(trustedHeader)?.split(',').at(-1) : c.req.header('cf-connecting-ip');
  const address = raw?.trim().slice(0, 64);
  return address ? address : UNIDENTIFIED_CLIENT;
}

/**
 * Refuses a client that sent too many requests to one kind of route with 429 `rate_limited`, before
 * any work (key check, body parsing, token check, store access) is done. A route whose limiter
 * binding (API_RATE_LIMITER, or WS_RATE_LIMITER for upgrades) is absent is not limited.
 */
export function rateLimit(route: RateLimitedRoute): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    // Upgrades have their own, larger allowance: every participant behind one NAT opens a socket.
    const limiter = route === 'ws' ? c.env.WS_RATE_LIMITER : c.env.API_RATE_LIMITER;
    if (limiter && !(await allowed(limiter, `${route}:${clientAddress(c)}`, c.get('logger')))) {
      c.header('Retry-After', String(RETRY_AFTER_SECONDS));
      throw new HttpError(429, 'rate_limited', 'too many requests from this client; retry later');
    }
    await next();
  };
}
