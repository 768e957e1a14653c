import { OpenAPIHono } from '@hono/zod-openapi';
import { requestId } from 'hono/request-id';
import { newId } from '../../shared/src/ids.ts';
import { LIMITS } from '../../shared/src/limits.ts';
import type { AppEnv } from './http/app-env.ts';
import { corsFromConfig } from './http/cors.ts';
import { handleError, notFoundOrMethodNotAllowed } from './http/error-handler.ts';
import { accessLog, loadConfig } from './http/request-context.ts';
import { healthRoutes } from './routes/health.ts';
import { internalRoutes } from './routes/internal.ts';
import { serveOpenApiDocument } from './routes/openapi.ts';
import { roomAdminRoutes } from './routes/room-admin.ts';
import { roomRoutes } from './routes/rooms.ts';
import { wsRoutes } from './routes/ws.ts';

/**
 * The edge's HTTP surface. Order matters: the request id comes first so that every response, errors
 * included, carries `x-request-id` (a well-formed incoming one is kept); the config is parsed before
 * any route so that a misconfigured edge refuses everything with one clear 500.
 */
export const app = new OpenAPIHono<AppEnv>();

app.use(requestId({ limitLength: LIMITS.requestIdMaxChars, generator: () => newId() }));
app.use(accessLog);
app.use(loadConfig);
app.use(corsFromConfig);

app.route('/', healthRoutes);
app.route('/', roomRoutes);
app.route('/', roomAdminRoutes);
app.route('/', wsRoutes);
app.route('/', internalRoutes);
serveOpenApiDocument(app);

app.notFound(notFoundOrMethodNotAllowed(app));
app.onError(handleError);
