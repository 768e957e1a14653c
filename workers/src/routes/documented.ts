import type { OpenAPIHono, RouteConfig, z } from '@hono/zod-openapi';
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

/**
 * Registers a contract schema as a named component (`$ref`) and returns the schema to use in route
 * definitions. zod copies prototype methods onto a schema when it is built, so a contract schema built
 * before @hono/zod-openapi was loaded lacks the `.openapi()` that registering calls: a clone built now has it.
 */
export function registerSchema<S extends z.ZodType>(app: OpenAPIHono<AppEnv>, name: string, schema: S): S {
  return app.openAPIRegistry.register(name, schema.clone() as S);
}
