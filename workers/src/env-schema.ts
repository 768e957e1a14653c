import { z } from 'zod';
import { IceUrlEnvSchema, LogLevelSchema, PositiveIntSchema, SecretSchema } from '../../shared/src/config.ts';
import { isTransportAllowed } from '../../shared/src/media-node-trust.ts';

/** MEDIA_NODE_URL lists at most this many nodes (more belong in the registry). */
const MAX_STATIC_MEDIA_NODES = 16;

/** The edge's variables and secrets, as wrangler hands them over: config.ts parses them once. */
export const EdgeEnvSchema = z
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
    /**
     * The static media nodes, when there is no registry (or it cannot be read): one URL, or several
     * separated by commas (`MEDIA_NODES=2 npm start` passes its two). Participants fill them in order.
     */
    MEDIA_NODE_URL: z
      .string()
      .transform((list) =>
        list
          .split(',')
          .map((url) => url.trim())
          .filter(Boolean),
      )
      .pipe(
        z
          .array(z.url({ protocol: /^https?$/ }))
          .min(1)
          .max(MAX_STATIC_MEDIA_NODES),
      )
      .optional(),
    MEDIA_NODE_SECRET: SecretSchema.optional(),
    /** `true`: plain http to a media node on a public address is allowed (else https, or loopback/private). */
    MEDIA_NODE_ALLOW_HTTP: z.stringbool().default(false),
    MAX_PARTICIPANTS: PositiveIntSchema(100, 10_000),
    RECONNECT_GRACE_SECONDS: PositiveIntSchema(20, 3600),
    WEBHOOK_URL: z.url().optional(),
    /** Standard Webhooks secret: `whsec_` and base64 of at least 24 random bytes. */
    WEBHOOK_SECRET: z
      .string()
      .regex(/^whsec_[A-Za-z0-9+/]{32,}={0,2}$/, 'must be whsec_ followed by base64 (at least 24 bytes)')
      .optional(),
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
    if (Boolean(env.WEBHOOK_URL) !== Boolean(env.WEBHOOK_SECRET)) {
      ctx.addIssue({
        code: 'custom',
        path: ['WEBHOOK_SECRET'],
        message: 'WEBHOOK_URL and WEBHOOK_SECRET must be set together',
      });
    }
    if (env.MEDIA_NODE_URL && !env.MEDIA_NODE_SECRET) {
      ctx.addIssue({ code: 'custom', path: ['MEDIA_NODE_SECRET'], message: 'is required when MEDIA_NODE_URL is set' });
    }
    // Refinements run on a list whose own check failed too: only URLs that parse are judged here.
    if (env.MEDIA_NODE_URL?.some((url) => URL.canParse(url) && !isTransportAllowed(url, env.MEDIA_NODE_ALLOW_HTTP))) {
      ctx.addIssue({
        code: 'custom',
        path: ['MEDIA_NODE_URL'],
        message: 'must be https unless on loopback or a private network (or set MEDIA_NODE_ALLOW_HTTP=true)',
      });
    }
  });

/** The variables the edge reads; scripts/stack.ts passes exactly these to wrangler. */
export type EdgeVariable = keyof z.input<typeof EdgeEnvSchema>;
export const EDGE_VARIABLES = Object.keys(EdgeEnvSchema.shape) as EdgeVariable[];
