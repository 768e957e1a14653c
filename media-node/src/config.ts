import { availableParallelism, hostname } from 'node:os';
import { z } from 'zod';
import {
  IceUrlEnvSchema,
  type LogLevel,
  LogLevelSchema,
  PositiveIntSchema,
  parseEnvironment,
  SecretSchema,
} from '../../shared/src/config.ts';

const PortSchema = (defaultValue: number) => z.coerce.number().int().min(0).max(65_535).default(defaultValue);

const MediaNodeEnvSchema = z
  .object({
    MEDIA_HOST: z.string().default('0.0.0.0'),
    MEDIA_PORT: PortSchema(8081),
    MEDIA_NODE_ID: z.string().min(1).max(128).default(hostname()),
    /** The URL the edge uses to reach this node's control API (registered in the registry). */
    MEDIA_PUBLIC_URL: z.url().optional(),
    MEDIA_NODE_SECRET: SecretSchema,
    /** Public IP written into ICE candidates, for a node behind NAT or in a container. */
    MEDIA_ANNOUNCED_IP: z.union([z.ipv4(), z.ipv6()]).optional(),
    MEDIA_RTC_MIN_PORT: PortSchema(40_000),
    MEDIA_RTC_MAX_PORT: PortSchema(49_999),
    MEDIA_WORKERS: PositiveIntSchema(availableParallelism(), 256),
    /** Peer connections this node accepts before it reports itself full. */
    MEDIA_CAPACITY: PositiveIntSchema(500, 100_000),
    MEDIA_DRAIN_TIMEOUT_SECONDS: PositiveIntSchema(600, 86_400),
    /** Where media events are POSTed: the edge's base URL. */
    EDGE_URL: z.url().optional(),
    STUN_SERVER: IceUrlEnvSchema.optional(),
    TURN_SERVER: IceUrlEnvSchema.optional(),
    TURN_SECRET: SecretSchema.optional(),
    UPSTASH_REDIS_REST_URL: z.url().optional(),
    UPSTASH_REDIS_REST_TOKEN: z.string().min(1).optional(),
    LOG_LEVEL: LogLevelSchema,
  })
  .superRefine((env, ctx) => {
    if (env.MEDIA_RTC_MIN_PORT > env.MEDIA_RTC_MAX_PORT) {
      ctx.addIssue({ code: 'custom', path: ['MEDIA_RTC_MIN_PORT'], message: 'must not exceed MEDIA_RTC_MAX_PORT' });
    }
    if (Boolean(env.UPSTASH_REDIS_REST_URL) !== Boolean(env.UPSTASH_REDIS_REST_TOKEN)) {
      ctx.addIssue({
        code: 'custom',
        path: ['UPSTASH_REDIS_REST_TOKEN'],
        message: 'UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN must be set together',
      });
    }
  });

export interface MediaNodeConfig {
  host: string;
  port: number;
  nodeId: string;
  publicUrl: string;
  secret: Uint8Array;
  announcedIp?: string;
  rtcPortRange: { min: number; max: number };
  workers: number;
  capacity: number;
  drainTimeoutSeconds: number;
  edgeUrl?: string;
  ice: { stunUrl?: string; turn?: { url: string; secret?: string } };
  upstash?: { url: string; token: string };
  logLevel: LogLevel;
}

export function parseMediaNodeConfig(env: Record<string, string | undefined>): MediaNodeConfig {
  const parsed = parseEnvironment(MediaNodeEnvSchema, env);
  const reachableHost = parsed.MEDIA_HOST === '0.0.0.0' || parsed.MEDIA_HOST === '::' ? '127.0.0.1' : parsed.MEDIA_HOST;
  return {
    host: parsed.MEDIA_HOST,
    port: parsed.MEDIA_PORT,
    nodeId: parsed.MEDIA_NODE_ID,
    publicUrl: parsed.MEDIA_PUBLIC_URL ?? `http://${reachableHost}:${parsed.MEDIA_PORT}`,
    secret: new TextEncoder().encode(parsed.MEDIA_NODE_SECRET),
    announcedIp: parsed.MEDIA_ANNOUNCED_IP,
    rtcPortRange: { min: parsed.MEDIA_RTC_MIN_PORT, max: parsed.MEDIA_RTC_MAX_PORT },
    workers: parsed.MEDIA_WORKERS,
    capacity: parsed.MEDIA_CAPACITY,
    drainTimeoutSeconds: parsed.MEDIA_DRAIN_TIMEOUT_SECONDS,
    edgeUrl: parsed.EDGE_URL,
    ice: {
      stunUrl: parsed.STUN_SERVER,
      turn: parsed.TURN_SERVER ? { url: parsed.TURN_SERVER, secret: parsed.TURN_SECRET } : undefined,
    },
    upstash:
      parsed.UPSTASH_REDIS_REST_URL && parsed.UPSTASH_REDIS_REST_TOKEN
        ? { url: parsed.UPSTASH_REDIS_REST_URL, token: parsed.UPSTASH_REDIS_REST_TOKEN }
        : undefined,
    logLevel: parsed.LOG_LEVEL,
  };
}
