import { type LogLevel, parseEnvironment } from '../../shared/src/config.ts';
import type { Env } from './env.ts';
import { EdgeEnvSchema } from './env-schema.ts';

export interface EdgeConfig {
  /** `maxSessionSeconds`: how long refreshes may extend one session (one join) in all. */
  jwt: { secret: Uint8Array; expirySeconds: number; maxSessionSeconds: number };
  roomTtlSeconds: number;
  /** Absent: the embedded Durable Object store is used. */
  upstash?: { url: string; token: string };
  ice: { stunUrl?: string; turn?: { url: string; secret?: string; ttlSeconds: number } };
  logLevel: LogLevel;
  apiKey?: string;
  /** `'*'` or an explicit list of origins. */
  allowedOrigins: '*' | string[];
  /**
   * Absent: no media node is configured (signaling without media). `allowHttp`: plain http to a node
   * on a public address is accepted (MEDIA_NODE_ALLOW_HTTP); otherwise only loopback/private ones.
   */
  /** `urls`: MEDIA_NODE_URL's static nodes (none when only the registry names them). */
  mediaNode?: { urls: string[]; secret: Uint8Array; allowHttp: boolean };
  maxParticipants: number;
  reconnectGraceSeconds: number;
  /** Absent: no webhooks are produced. */
  webhooks?: { url: string; secret: string };
  /** The header a trusted reverse proxy sets to the client's address (rate limiting); absent: CF-Connecting-IP. */
  clientIpHeader?: string;
}

const encoder = new TextEncoder();

export function parseEdgeConfig(env: Env): EdgeConfig {
  const parsed = parseEnvironment(EdgeEnvSchema, { ...env });
  const origins = parsed.ALLOWED_ORIGINS.split(',')
    .map((origin) => origin.trim())
    .filter(Boolean);
  return {
    jwt: {
      secret: encoder.encode(parsed.JWT_SECRET),
      expirySeconds: parsed.JWT_EXPIRY_SECONDS,
      maxSessionSeconds: parsed.MAX_SESSION_SECONDS,
    },
    roomTtlSeconds: parsed.ROOM_TTL_SECONDS,
    upstash:
      parsed.UPSTASH_REDIS_REST_URL && parsed.UPSTASH_REDIS_REST_TOKEN
        ? { url: parsed.UPSTASH_REDIS_REST_URL, token: parsed.UPSTASH_REDIS_REST_TOKEN }
        : undefined,
    ice: {
      stunUrl: parsed.STUN_SERVER,
      turn: parsed.TURN_SERVER
        ? { url: parsed.TURN_SERVER, secret: parsed.TURN_SECRET, ttlSeconds: parsed.TURN_TTL_SECONDS }
        : undefined,
    },
    logLevel: parsed.LOG_LEVEL,
    apiKey: parsed.API_KEY,
    allowedOrigins: origins.length === 0 || origins.includes('*') ? '*' : origins,
    mediaNode: parsed.MEDIA_NODE_SECRET
      ? {
          urls: parsed.MEDIA_NODE_URL ?? [],
          secret: encoder.encode(parsed.MEDIA_NODE_SECRET),
          allowHttp: parsed.MEDIA_NODE_ALLOW_HTTP,
        }
      : undefined,
    maxParticipants: parsed.MAX_PARTICIPANTS,
    reconnectGraceSeconds: parsed.RECONNECT_GRACE_SECONDS,
    clientIpHeader: parsed.CLIENT_IP_HEADER?.toLowerCase(),
    webhooks:
      parsed.WEBHOOK_URL && parsed.WEBHOOK_SECRET
        ? { url: parsed.WEBHOOK_URL, secret: parsed.WEBHOOK_SECRET }
        : undefined,
  };
}

const cache = new WeakMap<object, EdgeConfig>();

/**
 * The config for this isolate's env object, parsed on first use. Workers hand the same env object to
 * every request of an isolate, so this parses once per isolate; a bad env throws ConfigError each time.
 */
export function edgeConfig(env: Env): EdgeConfig {
  let config = cache.get(env);
  if (!config) {
    config = parseEdgeConfig(env);
    cache.set(env, config);
  }
  return config;
}
