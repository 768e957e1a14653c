import { cors } from 'hono/cors';
import type { AppEnv } from './app-env.ts';

/**
 * CORS from ALLOWED_ORIGINS: `*` (the default, for development) or a comma-separated list of exact
 * origins; other origins get no Access-Control-Allow-Origin. Tokens travel in Authorization headers,
 * never cookies, so credentials stay off.
 */
export const corsFromConfig = cors({
  origin: (origin, c) => {
    const allowed = (c.var as AppEnv['Variables']).config.allowedOrigins;
    if (allowed === '*') return '*';
    return allowed.includes(origin) ? origin : null;
  },
  allowMethods: ['GET', 'HEAD', 'POST', 'OPTIONS'],
  allowHeaders: ['Authorization', 'Content-Type', 'X-Request-Id'],
  exposeHeaders: ['X-Request-Id', 'Location', 'Allow'],
  maxAge: 600,
});
