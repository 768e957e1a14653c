import type { WebhookMessage } from '../../shared/src/webhooks.ts';
import type { EdgeVariable } from './env-schema.ts';

/**
 * The Worker's bindings as wrangler provides them: Durable Object namespaces, rate limiters, and the
 * string vars and secrets of the config schema (config.ts), which parses them once into EdgeConfig;
 * nothing else reads them.
 */
export interface Env extends Partial<Record<EdgeVariable, string>> {
  ROOMS: DurableObjectNamespace;
  STORE: DurableObjectNamespace;
  /** Per-client rate limiter of the REST routes and /health (wrangler.toml `ratelimits`); absent, they are not limited. */
  API_RATE_LIMITER?: RateLimit;
  /** Per-client rate limiter of `/ws` upgrades (wrangler.toml `ratelimits`); absent, upgrades are not limited. */
  WS_RATE_LIMITER?: RateLimit;
  /** Webhook deliveries (wrangler.toml `queues`): rooms produce, the Worker's `queue` handler POSTs. */
  WEBHOOKS?: Queue<WebhookMessage>;
}
