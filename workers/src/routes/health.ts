import { createRoute, OpenAPIHono } from '@hono/zod-openapi';
import { type HealthCheck, type HealthResponse, HealthResponseSchema } from '../../../shared/src/rest.ts';
import type { AppEnv } from '../http/app-env.ts';
import { roomRepository, storeKind } from '../store/index.ts';
import { documented, registerSchema } from './documented.ts';

/** A store that does not answer within this is reported down: /health must answer fast. */
const STORE_PING_TIMEOUT_MS = 2000;

export const healthRoutes = new OpenAPIHono<AppEnv>();
const HealthResponseComponent = registerSchema(healthRoutes, 'HealthResponse', HealthResponseSchema);

const healthRoute = createRoute({
  method: 'get',
  path: '/health',
  summary: 'Liveness and the state of the room store',
  responses: {
    200: { description: 'Everything answers', content: { 'application/json': { schema: HealthResponseComponent } } },
    503: { description: 'A dependency is down', content: { 'application/json': { schema: HealthResponseComponent } } },
  },
});

async function pingWithin(ping: () => Promise<void>, timeoutMs: number): Promise<'ok' | 'timeout' | 'error'> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  try {
    return await Promise.race([
      ping().then(
        () => 'ok' as const,
        () => 'error' as const,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

healthRoutes.get(documented(healthRoutes, healthRoute), async (c) => {
  const config = c.get('config');
  const kind = storeKind(config);
  const started = Date.now();
  const outcome = await pingWithin(() => roomRepository(c.env, config).ping(), STORE_PING_TIMEOUT_MS);
  const latency_ms = Date.now() - started;
  const store: HealthCheck =
    outcome === 'ok'
      ? { status: 'ok', latency_ms, detail: kind }
      : { status: 'down', latency_ms, detail: `${kind}: ${outcome === 'timeout' ? 'timed out' : 'unreachable'}` };
  if (outcome !== 'ok') c.get('logger').warn('health: room store is down', { store: kind, outcome });
  const body: HealthResponse = { status: store.status === 'ok' ? 'ok' : 'degraded', checks: { store } };
  return c.json(body, store.status === 'ok' ? 200 : 503);
});
