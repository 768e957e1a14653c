import { z } from 'zod';
import {
  IceUrlEnvSchema,
  type LogLevel,
  LogLevelSchema,
  PositiveIntSchema,
  parseEnvironment,
  SecretSchema,
} from '../../shared/src/config.ts';
import type { Env } from './env.ts';

const EdgeEnvSchema = z
  .object({
    JWT_SECRET: SecretSchema,
    JWT_EXPIRY_SECONDS: PositiveIntSchema(900, 86_400),
    MAX_SESSION_SECONDS: PositiveIntSchema(86_400, 30 * 86_400),
    ROOM_TTL_SECONDS: PositiveIntSchema(7200, 30 * 86_400),
    UPSTASH_REDIS_REST_URL: z.url().optional(),
    UPSTASH_REDIS_REST_TOKEN: z.string().min(1).optional(),
    STUN_SERVER: IceUrlEnvSchema.optional(),
    TURN_SERVER: IceUrlEnvSchema.optional(),
    TURN_SECRET: SecretSchema.optional(),
    TURN_TTL_SECONDS: PositiveIntSchema(14_400, 7 * 86_400),
    LOG_LEVEL: LogLevelSchema,
    API_KEY: z.string().min(16, 'must be at least 16 characters').optional(),
    ALLOWED_ORIGINS: z.string().default('*'),
    MEDIA_NODE_URL: z.url().optional(),
    MEDIA_NODE_SECRET: SecretSchema.optional(),
    MAX_PARTICIPANTS: PositiveIntSchema(100, 10_000),
    RECONNECT_GRACE_SECONDS: PositiveIntSchema(20, 3600),
    CLIENT_IP_HEADER: z
      .string()
      .regex(/^[A-Za-z0-9-]{1,64}$/, 'must be a header name such as X-Real-IP')
      .optional(),
  })
  .superRefine((env, ctx) => {
    if (Boolean(env.UPSTASH_REDIS_REST_URL) !== Boolean(env.UPSTASH_REDIS_REST_TOKEN)) {
      ctx.addIssue({
        code: 'custom',
        path: ['UPSTASH_REDIS_REST_TOKEN'],
        message: 'UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN must be set together',
      });
    }
    if (env.MEDIA_NODE_URL && !env.MEDIA_NODE_SECRET) {
      ctx.addIssue({ code: 'custom', path: ['MEDIA_NODE_SECRET'], message: 'is required when MEDIA_NODE_URL is set' });
    }
  });

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
  /** Absent: no media node is configured (signaling without media). */
  mediaNode?: { url?: string; secret: Uint8Array };
  maxParticipants: number;
  reconnectGraceSeconds: number;
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
      ? { url: parsed.MEDIA_NODE_URL, secret: encoder.encode(parsed.MEDIA_NODE_SECRET) }
      : undefined,
    maxParticipants: parsed.MAX_PARTICIPANTS,
    reconnectGraceSeconds: parsed.RECONNECT_GRACE_SECONDS,
    clientIpHeader: parsed.CLIENT_IP_HEADER?.toLowerCase(),
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
