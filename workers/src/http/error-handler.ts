import type { Context, Hono, NotFoundHandler } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { ConfigError } from '../../../shared/src/config.ts';
import { StoreUnavailableError } from '../store/index.ts';
import type { AppEnv } from './app-env.ts';
import { HttpError } from './errors.ts';

const envelope = (status: number, code: HttpError['code'], message: string) =>
  new HttpError(status, code, message).toEnvelope();

/** Seconds a client should wait before retrying when the room store is down. */
const STORE_RETRY_AFTER_SECONDS = 5;

/**
 * Every error becomes the contract's JSON envelope: never a stack trace, never a non-JSON body.
 * Expected errors (HttpError) pass through; the rest are logged with their kind only, since their
 * messages may quote stored data (a store error quotes the command, display names included).
 */
export function handleError(error: Error, c: Context<AppEnv>): Response {
  const logger = c.get('logger');
  if (error instanceof HttpError) return c.json(error.toEnvelope(), error.status as ContentfulStatusCode);
  if (error instanceof ConfigError) {
    // Names the variables and what is wrong with them; never their values.
    logger.error('refusing to serve: invalid configuration', {
      variables: error.variables.join(','),
      detail: error.message,
    });
    return c.json(envelope(500, 'internal_error', 'the server is misconfigured; see its logs'), 500);
  }
  if (error instanceof StoreUnavailableError) {
    const cause = error.cause instanceof Error ? error.cause.name : typeof error.cause;
    logger.error('room store unavailable', { cause });
    c.header('Retry-After', String(STORE_RETRY_AFTER_SECONDS));
    return c.json(envelope(503, 'service_unavailable', 'the room store is unavailable; retry shortly'), 503);
  }
  logger.error('unhandled error', { error: error.name });
  return c.json(envelope(500, 'internal_error', 'internal error'), 500);
}

/** Turns a Hono route pattern (`/api/v1/rooms/:id/join`, `/static/*`) into an anchored RegExp. */
function routePattern(path: string): RegExp {
  const segments = path.split('/').map((segment) => {
    if (segment.startsWith(':')) return '[^/]+';
    if (segment === '*') return '.*';
    return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  });
  return new RegExp(`^${segments.join('/')}/?$`);
}

/**
 * Unmatched requests: 405 with an `Allow` header when the path exists under other methods, else 404.
 * The routes are read from the app itself, so the answer cannot drift from what is registered.
 */
export function notFoundOrMethodNotAllowed(app: Hono<AppEnv>): NotFoundHandler<AppEnv> {
  let table: { method: string; pattern: RegExp }[] | undefined;
  return (c) => {
    table ??= app.routes
      .filter((route) => route.method !== 'ALL')
      .map((route) => ({ method: route.method, pattern: routePattern(route.path) }));
    const methods = new Set(table.filter((route) => route.pattern.test(c.req.path)).map((route) => route.method));
    if (methods.size === 0) return c.json(envelope(404, 'not_found', 'no such route'), 404);
    if (methods.has('GET')) methods.add('HEAD');
    methods.add('OPTIONS');
    const allow = [...methods].join(', ');
    c.header('Allow', allow);
    return c.json(
      envelope(405, 'method_not_allowed', `method ${c.req.method} is not allowed here; allowed: ${allow}`),
      405,
    );
  };
}
