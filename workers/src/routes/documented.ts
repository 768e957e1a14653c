import type { OpenAPIHono, RouteConfig } from '@hono/zod-openapi';
import type { AppEnv } from '../http/app-env.ts';

/**
 * Adds a route's definition to the OpenAPI document and returns its Hono path (`{id}` → `:id`).
 * Handlers are mounted with plain Hono and validate bodies with readJsonBody, whose size and error
 * rules the zod-openapi validator would not follow; the definition is still the one source of the
 * method, path and schemas.
 */
export function documented(app: OpenAPIHono<AppEnv>, route: RouteConfig): string {
  app.openAPIRegistry.registerPath(route);
  return route.path.replace(/\{(\w+)\}/g, ':$1');
}
