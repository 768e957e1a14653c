import type { MiddlewareHandler } from 'hono';
import { bearerToken } from '../../../shared/src/service-token.ts';
import type { AppEnv } from './app-env.ts';
import { HttpError } from './errors.ts';

const encoder = new TextEncoder();

/** Equal strings, compared in constant time: hashing first hides the lengths as well. */
export async function constantTimeEqual(a: string, b: string): Promise<boolean> {
  const [digestA, digestB] = await Promise.all([
    crypto.subtle.digest('SHA-256', encoder.encode(a)),
    crypto.subtle.digest('SHA-256', encoder.encode(b)),
  ]);
  return crypto.subtle.timingSafeEqual(digestA, digestB);
}

/**
 * With API_KEY set, the route requires `Authorization: Bearer <API_KEY>` (server-to-server, like
 * LiveKit's room service); without it the route is open, as in the seed.
 */
export const requireApiKey: MiddlewareHandler<AppEnv> = async (c, next) => {
  const { apiKey } = c.get('config');
  if (apiKey) {
    const presented = bearerToken(c.req.header('authorization'));
    if (!presented || !(await constantTimeEqual(presented, apiKey))) {
      c.header('WWW-Authenticate', 'Bearer realm="truegather"');
      throw new HttpError(401, 'unauthorized', 'a valid API key is required (Authorization: Bearer <API_KEY>)');
    }
  }
  await next();
};
