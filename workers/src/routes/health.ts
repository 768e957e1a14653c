import { createRoute, OpenAPIHono } from '@hono/zod-openapi';
import { type HealthCheck, type HealthResponse, HealthResponseSchema } from '../../../shared/src/rest.ts';
import type { AppEnv } from '../http/app-env.ts';
import { rateLimit } from '../http/rate-limit.ts';
import { roomRepository, storeKind } from '../store/index.ts';
import { documented, registerSchema } from './documented.ts';

/** A store that does not answer within this is reported down: /health must answer fast. */
const STORE_PING_TIMEOUT_MS = 2000;

/**
 * How long one store check answers /health: every hit would otherwise cost an Upstash command (and
 * an open endpoint is an easy way to run up that bill). A change of state shows within this long.
 */
export const STORE_CHECK_CACHE_MS = 5000;

type PingOutcome = 'ok' | 'timeout' | 'error';

interface StoreCheck {
  outcome: PingOutcome;
  latency_ms: number;
}

/**
 * The last store check per store (kind and URL) in this isolate. Results only, never a pending
 * check: a Worker must not await a promise that another request's I/O resolves. Isolate memory is
 * the right place: it is a cost brake, not state anyone relies on.
 */
const storeChecks = new Map<string, StoreCheck & { expiresAt: number }>();

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

async function pingWithin(ping: () => Promise<void>, timeoutMs: number): Promise<PingOutcome> {
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

async function checkStore(key: string, ping: () => Promise<void>): Promise<StoreCheck> {
  const started = Date.now();
  const cached = storeChecks.get(key);
  if (cached && cached.expiresAt > started) return cached;
  const outcome = await pingWithin(ping, STORE_PING_TIMEOUT_MS);
  const check = { outcome, latency_ms: Date.now() - started };
  storeChecks.set(key, { ...check, expiresAt: Date.now() + STORE_CHECK_CACHE_MS });
  return check;
}

healthRoutes.get(documented(healthRoutes, healthRoute), rateLimit('health'), async (c) => {
  const config = c.get('config');
  const kind = storeKind(config);
  const { outcome, latency_ms } = await checkStore(`${kind}:${config.upstash?.url ?? ''}`, () =>
    roomRepository(c.env, config).ping(),
  );
  const store: HealthCheck =
    outcome === 'ok'
      ? { status: 'ok', latency_ms, detail: kind }
      : { status: 'down', latency_ms, detail: `${kind}: ${outcome === 'timeout' ? 'timed out' : 'unreachable'}` };
  if (outcome !== 'ok') c.get('logger').warn('health: room store is down', { store: kind, outcome });
  const body: HealthResponse = { status: store.status === 'ok' ? 'ok' : 'degraded', checks: { store } };
  return c.json(body, store.status === 'ok' ? 200 : 503);
});
