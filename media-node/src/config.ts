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

/** The RTC port range unless MEDIA_RTC_MIN_PORT/MAX_PORT say otherwise (the stack splits it between local nodes). */
export const DEFAULT_RTC_MIN_PORT = 40_000;
export const DEFAULT_RTC_MAX_PORT = 49_999;

const PortSchema = (defaultValue: number) => z.coerce.number().int().min(0).max(65_535).default(defaultValue);

const MediaNodeEnvSchema = z
  .object({
    MEDIA_HOST: z.string().default('0.0.0.0'),
    MEDIA_PORT: PortSchema(8081),
    /**
     * Set: /health and /metrics leave the control API's listener for one of their own on
     * MEDIA_OPERATOR_HOST (loopback unless told otherwise), out of reach of whoever reaches the
     * control API. 0 picks a free port.
     */
    MEDIA_OPERATOR_PORT: z.coerce.number().int().min(0).max(65_535).optional(),
    MEDIA_OPERATOR_HOST: z.string().min(1).default('127.0.0.1'),
    MEDIA_NODE_ID: z.string().min(1).max(128).default(hostname()),
    /** The URL the edge uses to reach this node's control API (registered in the registry). */
    MEDIA_PUBLIC_URL: z.url().optional(),
    MEDIA_NODE_SECRET: SecretSchema,
    /** Public IP written into ICE candidates, for a node behind NAT or in a container. */
    MEDIA_ANNOUNCED_IP: z.union([z.ipv4(), z.ipv6()]).optional(),
    /**
     * The one local IPv4 address RTC sockets bind to and gather on (e.g. 127.0.0.1, or the container's
     * address). Unset: every non-loopback IPv4 interface.
     */
    MEDIA_RTC_LISTEN_IP: z
      .ipv4()
      .refine((ip) => ip !== '0.0.0.0', 'must be a concrete address, not 0.0.0.0')
      .optional(),
    MEDIA_RTC_MIN_PORT: PortSchema(DEFAULT_RTC_MIN_PORT),
    MEDIA_RTC_MAX_PORT: PortSchema(DEFAULT_RTC_MAX_PORT),
    MEDIA_WORKERS: PositiveIntSchema(availableParallelism(), 256),
    /**
     * A worker thread whose event-loop utilization over the last 5 s reached this fraction is busy: a
     * room's new participants go to another worker while one is not (a room stays on one thread until
     * then, since a spread room costs a second thread's memory and a relayed copy of every packet).
     */
    MEDIA_WORKER_BUSY_UTILIZATION: z.coerce.number().gt(0).max(1).default(0.7),
    /**
     * However idle its worker, a room's new participant goes to the least-loaded worker once the
     * room's worker holds more than this many participants more than that one: joins that arrive
     * faster than utilization shows them still spread. 1 spreads every room evenly (the benchmark's
     * two-worker placement does).
     */
    MEDIA_ROOM_AFFINITY: PositiveIntSchema(200, 100_000),
    /** Peer connections this node accepts before it reports itself full. */
    MEDIA_CAPACITY: PositiveIntSchema(500, 100_000),
    MEDIA_DRAIN_TIMEOUT_SECONDS: PositiveIntSchema(600, 86_400),
    /** A peer connection that has not connected this long after negotiating is closed and reported. */
    MEDIA_CONNECT_TIMEOUT_SECONDS: PositiveIntSchema(30, 600),
    /**
     * Dynacast: tell simulcast publishers which layers viewers need, so they stop encoding the others.
     * Off by default: with REMB as the publisher's only bandwidth feedback, Chromium's estimate falls to
     * what the one layer left sends, and a layer turned back on reached viewers 15 s or more later.
     */
    MEDIA_DYNACAST: z.stringbool().default(false),
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
    // werift needs a range of at least two ports (it rejects min === max).
    if (env.MEDIA_RTC_MIN_PORT >= env.MEDIA_RTC_MAX_PORT) {
      ctx.addIssue({ code: 'custom', path: ['MEDIA_RTC_MIN_PORT'], message: 'must be below MEDIA_RTC_MAX_PORT' });
    }
    if (env.MEDIA_RTC_MIN_PORT === 0) {
      ctx.addIssue({ code: 'custom', path: ['MEDIA_RTC_MIN_PORT'], message: 'must be a real port (1–65535)' });
    }
    if (env.MEDIA_OPERATOR_PORT !== undefined && env.MEDIA_OPERATOR_PORT !== 0) {
      if (env.MEDIA_OPERATOR_PORT === env.MEDIA_PORT) {
        ctx.addIssue({ code: 'custom', path: ['MEDIA_OPERATOR_PORT'], message: 'must differ from MEDIA_PORT' });
      }
    }
    if (Boolean(env.UPSTASH_REDIS_REST_URL) !== Boolean(env.UPSTASH_REDIS_REST_TOKEN)) {
      ctx.addIssue({
        code: 'custom',
        path: ['UPSTASH_REDIS_REST_TOKEN'],
        message: 'UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN must be set together',
      });
    }
  });

/** The variables the media node reads; scripts/stack.ts passes exactly these to it. */
export const MEDIA_NODE_VARIABLES = Object.keys(MediaNodeEnvSchema.shape);

export interface MediaNodeConfig {
  host: string;
  port: number;
  /** Absent: /health and /metrics are served next to the control API, on host:port. */
  operator?: { host: string; port: number };
  nodeId: string;
  /** Absent: derived from the address the control API actually listens on (MEDIA_PORT may be 0). */
  publicUrl?: string;
  secret: Uint8Array;
  announcedIp?: string;
  rtcListenIp?: string;
  rtcPortRange: { min: number; max: number };
  workers: number;
  /** MEDIA_WORKER_BUSY_UTILIZATION: see the schema. */
  workerBusyUtilization: number;
  /** MEDIA_ROOM_AFFINITY: see the schema. */
  roomAffinity: number;
  capacity: number;
  drainTimeoutSeconds: number;
  connectTimeoutSeconds: number;
  /** MEDIA_DYNACAST: simulcast publishers are told which layers viewers need. */
  dynacast: boolean;
  edgeUrl?: string;
  ice: { stunUrl?: string; turn?: { url: string; secret?: string } };
  upstash?: { url: string; token: string };
  logLevel: LogLevel;
}

export function parseMediaNodeConfig(env: Record<string, string | undefined>): MediaNodeConfig {
  const parsed = parseEnvironment(MediaNodeEnvSchema, env);
  return {
    host: parsed.MEDIA_HOST,
    port: parsed.MEDIA_PORT,
    operator:
      parsed.MEDIA_OPERATOR_PORT === undefined
        ? undefined
        : { host: parsed.MEDIA_OPERATOR_HOST, port: parsed.MEDIA_OPERATOR_PORT },
    nodeId: parsed.MEDIA_NODE_ID,
    publicUrl: parsed.MEDIA_PUBLIC_URL,
    secret: new TextEncoder().encode(parsed.MEDIA_NODE_SECRET),
    announcedIp: parsed.MEDIA_ANNOUNCED_IP,
    rtcListenIp: parsed.MEDIA_RTC_LISTEN_IP,
    rtcPortRange: { min: parsed.MEDIA_RTC_MIN_PORT, max: parsed.MEDIA_RTC_MAX_PORT },
    workers: parsed.MEDIA_WORKERS,
    workerBusyUtilization: parsed.MEDIA_WORKER_BUSY_UTILIZATION,
    roomAffinity: parsed.MEDIA_ROOM_AFFINITY,
    capacity: parsed.MEDIA_CAPACITY,
    drainTimeoutSeconds: parsed.MEDIA_DRAIN_TIMEOUT_SECONDS,
    connectTimeoutSeconds: parsed.MEDIA_CONNECT_TIMEOUT_SECONDS,
    dynacast: parsed.MEDIA_DYNACAST,
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

/** `0.0.0.0` / `::` listen on every interface: there is no one address to dial. */
export function isWildcardHost(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

/**
 * Without MEDIA_PUBLIC_URL, a node listening on every interface advertises the loopback address it
 * dials itself by: useless to an edge on another host.
 */
export function advertisesLoopbackByDefault(config: Pick<MediaNodeConfig, 'host' | 'publicUrl'>): boolean {
  return !config.publicUrl && isWildcardHost(config.host);
}
