/**
 * The Worker's bindings as wrangler provides them: Durable Object namespaces plus string vars and
 * secrets. Strings are parsed once into EdgeConfig (config.ts); nothing else reads them.
 */
export interface Env {
  ROOMS: DurableObjectNamespace;
  STORE: DurableObjectNamespace;
  /** Per-client rate limiter of the REST routes and /health (wrangler.toml `ratelimits`); absent, they are not limited. */
  API_RATE_LIMITER?: RateLimit;
  /** Per-client rate limiter of `/ws` upgrades (wrangler.toml `ratelimits`); absent, upgrades are not limited. */
  WS_RATE_LIMITER?: RateLimit;
  JWT_SECRET?: string;
  JWT_EXPIRY_SECONDS?: string;
  MAX_SESSION_SECONDS?: string;
  ROOM_TTL_SECONDS?: string;
  UPSTASH_REDIS_REST_URL?: string;
  UPSTASH_REDIS_REST_TOKEN?: string;
  STUN_SERVER?: string;
  TURN_SERVER?: string;
  TURN_SECRET?: string;
  TURN_TTL_SECONDS?: string;
  LOG_LEVEL?: string;
  API_KEY?: string;
  ALLOWED_ORIGINS?: string;
  MEDIA_NODE_URL?: string;
  MEDIA_NODE_SECRET?: string;
  MAX_PARTICIPANTS?: string;
  RECONNECT_GRACE_SECONDS?: string;
  CLIENT_IP_HEADER?: string;
}
