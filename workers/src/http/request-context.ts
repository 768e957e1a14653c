import type { MiddlewareHandler } from 'hono';
import { createLogger } from '../../../shared/src/log.ts';
import { edgeConfig } from '../config.ts';
import type { AppEnv } from './app-env.ts';

/**
 * Gives the request a logger carrying its id and writes one access-log line once the response
 * (error responses included) is known. Lines carry method, path, status and timing only: never
 * headers or bodies, which hold tokens and display names.
 */
export const accessLog: MiddlewareHandler<AppEnv> = async (c, next) => {
  const started = Date.now();
  // Until the config is parsed the level is info, so that a misconfiguration reaches the logs.
  c.set('logger', createLogger('info', { request_id: c.get('requestId') }));
  await next();
  const fields = { method: c.req.method, path: c.req.path, status: c.res.status, duration_ms: Date.now() - started };
  const logger = c.get('logger');
  if (c.res.status >= 500) logger.error('request', fields);
  else logger.info('request', fields);
};

/**
 * Parses the config (once per isolate, see edgeConfig). A bad config throws ConfigError here, before
 * any route runs, and the error handler refuses to serve: every request gets the same 500.
 */
export const loadConfig: MiddlewareHandler<AppEnv> = async (c, next) => {
  const config = edgeConfig(c.env);
  c.set('config', config);
  c.set('logger', createLogger(config.logLevel, { request_id: c.get('requestId') }));
  await next();
};
