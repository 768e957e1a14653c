import type { OpenAPIHono } from '@hono/zod-openapi';
import type { AppEnv } from '../http/app-env.ts';

/** The document's header; `servers` is added per request (the origin it was asked from). */
export const OPENAPI_DOCUMENT_BASE = {
  openapi: '3.1.0',
  info: {
    title: 'TrueGather Edge REST API',
    version: '1.0.0',
    description:
      'Rooms, join and leave for TrueGather video conferencing. Errors are `{error: {code, message, details?}}`; ' +
      'signaling runs over the WebSocket returned by join (`ws_url`).',
  },
} as const;

/**
 * Serves `/openapi.json`: an OpenAPI 3.1 document generated from the routes' definitions, which are
 * built from the wire contract's zod schemas (shared/src), so it cannot drift from what is validated.
 * The server SDK's types are generated from the same document (`app.getOpenAPI31Document`).
 */
export function serveOpenApiDocument(app: OpenAPIHono<AppEnv>): void {
  app.doc31('/openapi.json', (c) => ({ ...OPENAPI_DOCUMENT_BASE, servers: [{ url: new URL(c.req.url).origin }] }));
}
