import type { OpenAPIHono } from '@hono/zod-openapi';
import type { AppEnv } from '../http/app-env.ts';

/**
 * Serves `/openapi.json`: an OpenAPI 3.1 document generated from the routes' definitions, which are
 * built from the wire contract's zod schemas (shared/src), so it cannot drift from what is validated.
 */
export function serveOpenApiDocument(app: OpenAPIHono<AppEnv>): void {
  app.doc31('/openapi.json', (c) => ({
    openapi: '3.1.0',
    info: {
      title: 'TrueGather Edge REST API',
      version: '1.0.0',
      description:
        'Rooms, join and leave for TrueGather video conferencing. Errors are `{error: {code, message, details?}}`; ' +
        'signaling runs over the WebSocket returned by join (`ws_url`).',
    },
    servers: [{ url: new URL(c.req.url).origin }],
  }));
}
