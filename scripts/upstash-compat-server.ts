/**
 * A local Upstash-compatible REST endpoint in front of a real redis-server, so the edge's Upstash
 * adapter runs unchanged (the real `@upstash/redis` client, over HTTP) against a local Redis: in
 * tests, and under `npm start` when REDIS_URL is set.
 *
 * What it implements (see the Upstash REST API): `POST /` one command, `POST /pipeline` a batch run
 * in order on one connection, `POST /multi-exec` a transaction; `Authorization: Bearer <token>` on
 * every route; `Upstash-Encoding: base64` replies. Replies are RESP2, read raw, so their shape is
 * Redis's own. Usage as a CLI:
 *
 *   REDIS_URL=redis://127.0.0.1:6379 UPSTASH_REDIS_REST_TOKEN=<≥32 bytes> \
 *     node scripts/upstash-compat-server.ts [--host 127.0.0.1] [--port 8079]
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { createClientPool, ErrorReply, RESP_TYPES } from 'redis';
import { z } from 'zod';
import {
  type LogLevel,
  LogLevelSchema,
  PositiveIntSchema,
  parseEnvironment,
  SecretSchema,
} from '../shared/src/config.ts';
import { createLogger } from '../shared/src/log.ts';

export interface UpstashCompatServerOptions {
  redisUrl: string;
  /** The bearer token clients must send; at least 32 bytes. */
  token: string;
  host?: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  logLevel?: LogLevel;
}

export interface UpstashCompatServer {
  /** Base URL for UPSTASH_REDIS_REST_URL, e.g. `http://127.0.0.1:41234`. */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Upstash caps requests too; this bounds how much one request can make us buffer. */
const MAX_BODY_BYTES = 10 * 1024 * 1024;
const POOL = { minimum: 1, maximum: 16, acquireTimeout: 5000 } as const;

/** Bulk and status strings as Buffers: base64 must encode the exact bytes Redis holds. */
const RAW_REPLIES = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer, [RESP_TYPES.SIMPLE_STRING]: Buffer } };

/**
 * The only commands served: what the edge's store, the media node's registry heartbeat and the test
 * suites send through `@upstash/redis` (its `createScript` uses EVALSHA, then EVAL on NOSCRIPT).
 * Everything else is refused before it reaches Redis: admin commands (CONFIG, FLUSHALL, REPLICAOF,
 * MODULE, DEBUG, SHUTDOWN…), commands that change or take over the pooled connection they run on
 * (MULTI, SELECT, SUBSCRIBE, MONITOR, CLIENT…; transactions go through /multi-exec), and blocking
 * commands (BLPOP … 0 would hold a pooled connection for as long as it likes). A Lua script can
 * still call any command Redis allows in scripts (blocking ones never block there): the token is
 * as powerful as the Redis user in REDIS_URL, which is where a tighter ACL belongs (SECURITY.md).
 */
const ALLOWED_COMMANDS = new Set([
  // strings and keys
  'GET',
  'SET',
  'MGET',
  'DEL',
  'EXISTS',
  'INCR',
  'INCRBY',
  'EXPIRE',
  'PEXPIRE',
  'PEXPIREAT',
  'TTL',
  'PTTL',
  // hashes
  'HSET',
  'HGET',
  'HGETALL',
  'HVALS',
  'HDEL',
  'HEXISTS',
  'HLEN',
  // sets
  'SADD',
  'SREM',
  'SMEMBERS',
  // scripts
  'EVAL',
  'EVALSHA',
  'EVAL_RO',
  'EVALSHA_RO',
  'SCRIPT',
  // liveness (/health)
  'PING',
]);

/** Subcommands of allowed container commands: SCRIPT KILL or SCRIPT DEBUG stay out. */
const ALLOWED_SUBCOMMANDS: Record<string, Set<string>> = {
  SCRIPT: new Set(['LOAD', 'EXISTS', 'FLUSH']),
};

const CommandSchema = z.array(z.union([z.string(), z.number(), z.boolean()])).min(1);
const PipelineSchema = z.array(CommandSchema).min(1);

type Command = string[];
type Reply = string | number | null | Reply[];
type Result = { result: Reply } | { error: string };

/** An answer with a status: Upstash's error bodies are always `{"error": string}`. */
class EndpointError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

const digest = (text: string) => createHash('sha256').update(text).digest();

function parseCommand(raw: z.infer<typeof CommandSchema>): Command {
  const command = raw.map(String);
  const name = command[0]!.toUpperCase();
  const subcommands = ALLOWED_SUBCOMMANDS[name];
  const allowed = ALLOWED_COMMANDS.has(name) && (!subcommands || subcommands.has(command[1]?.toUpperCase() ?? ''));
  if (!allowed) {
    // Upstash's own shape for a command it does not offer: 400 {"error": "ERR …"}.
    const shown = (subcommands ? `${command[0]} ${command[1] ?? ''}`.trim() : command[0]!).slice(0, 64);
    throw new EndpointError(400, `ERR Command is not available: '${shown}'`);
  }
  return command;
}

function parseBody<T>(schema: z.ZodType<T>, body: string): T {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    throw new EndpointError(400, 'ERR request body is not valid JSON');
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new EndpointError(400, 'ERR request body must be a command array like ["SET","k","v"]');
  return parsed.data;
}

/** RESP2 reply → JSON: strings as text or base64 of their bytes, integers, nulls and arrays as they are. */
function encodeReply(reply: unknown, base64: boolean): Reply {
  if (reply === null || reply === undefined) return null;
  if (typeof reply === 'number') return reply;
  if (Buffer.isBuffer(reply)) return reply.toString(base64 ? 'base64' : 'utf8');
  if (typeof reply === 'string') return base64 ? Buffer.from(reply).toString('base64') : reply;
  if (Array.isArray(reply)) return reply.map((item) => encodeReply(item, base64));
  if (reply instanceof ErrorReply) throw reply;
  throw new Error(`unexpected reply type ${typeof reply}`);
}

/** A command's outcome as a pipeline entry: Redis errors go inside it; lost connections fail the request. */
function toResult(outcome: PromiseSettledResult<unknown>, base64: boolean): Result {
  if (outcome.status === 'rejected') {
    if (outcome.reason instanceof ErrorReply) return { error: outcome.reason.message };
    throw outcome.reason;
  }
  try {
    return { result: encodeReply(outcome.value, base64) };
  } catch (error) {
    if (error instanceof ErrorReply) return { error: error.message };
    throw error;
  }
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > MAX_BODY_BYTES) throw new EndpointError(413, 'ERR request body is too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function send(response: ServerResponse, status: number, body: unknown): void {
  const json = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
  response.end(json);
}

/** Starts the endpoint; resolves once it is listening and connected to Redis. */
export async function startUpstashCompatServer(options: UpstashCompatServerOptions): Promise<UpstashCompatServer> {
  parseEnvironment(z.object({ token: SecretSchema }), { token: options.token });
  const expectedToken = digest(options.token);
  const logger = createLogger(options.logLevel ?? 'info', { component: 'upstash-compat' });

  // Offline queue off: while Redis is down, commands fail at once (→ 500) instead of hanging.
  const pool = createClientPool({ url: options.redisUrl, RESP: 2, disableOfflineQueue: true }, POOL);
  let lastRedisError = '';
  pool.on('error', (error: Error) => {
    // Reconnection attempts repeat the same error; log each distinct one once.
    if (error.message === lastRedisError) return;
    lastRedisError = error.message;
    logger.warn('redis connection error', { error: error.message });
  });
  await pool.connect();

  const authorized = (request: IncomingMessage) => {
    const match = request.headers.authorization?.match(/^Bearer\s+(\S+)$/i);
    // Hashing first makes the comparison constant-time whatever the lengths.
    return match !== null && match !== undefined && timingSafeEqual(digest(match[1]!), expectedToken);
  };

  const run = async (path: string, body: string, base64: boolean): Promise<unknown> => {
    if (path === '/') {
      const command = parseCommand(parseBody(CommandSchema, body));
      const [outcome] = await Promise.allSettled([pool.sendCommand(command, RAW_REPLIES)]);
      const result = toResult(outcome!, base64);
      if ('error' in result) throw new EndpointError(400, result.error);
      return result;
    }
    const commands = parseBody(PipelineSchema, body).map(parseCommand);
    if (path === '/pipeline') {
      // Issued together on one borrowed connection: in order, not atomic, one result per command.
      const outcomes = await pool.execute((client) =>
        Promise.allSettled(commands.map((command) => client.sendCommand(command, RAW_REPLIES))),
      );
      return outcomes.map((outcome) => toResult(outcome, base64));
    }
    // /multi-exec: MULTI … EXEC on one borrowed connection, which nothing else uses meanwhile.
    const outcomes = await pool.execute((client) =>
      Promise.allSettled([['MULTI'], ...commands, ['EXEC']].map((command) => client.sendCommand(command, RAW_REPLIES))),
    );
    const exec = outcomes.at(-1)!;
    if (exec.status === 'rejected') {
      // A queue-time error (unknown command, wrong arity) aborts the whole transaction: EXECABORT.
      const queued = outcomes.find((outcome) => outcome.status === 'rejected' && outcome !== exec);
      const reason = queued?.status === 'rejected' ? queued.reason : exec.reason;
      if (exec.reason instanceof ErrorReply) {
        throw new EndpointError(400, `${exec.reason.message} ${reason instanceof Error ? reason.message : ''}`.trim());
      }
      throw exec.reason;
    }
    const replies = exec.value;
    if (!Array.isArray(replies)) throw new EndpointError(400, 'EXECABORT the transaction was aborted');
    return replies.map((reply) =>
      reply instanceof ErrorReply ? { error: reply.message } : { result: encodeReply(reply, base64) },
    );
  };

  const server = createServer(async (request, response) => {
    try {
      if (!authorized(request)) throw new EndpointError(401, 'Unauthorized');
      const path = new URL(request.url ?? '/', 'http://localhost').pathname;
      if (path !== '/' && path !== '/pipeline' && path !== '/multi-exec') {
        throw new EndpointError(404, `ERR no such route ${path}`);
      }
      if (request.method !== 'POST') {
        response.setHeader('allow', 'POST');
        throw new EndpointError(405, 'ERR use POST');
      }
      const base64 = String(request.headers['upstash-encoding']).toLowerCase() === 'base64';
      send(response, 200, await run(path, await readBody(request), base64));
    } catch (error) {
      if (error instanceof EndpointError) {
        send(response, error.status, { error: error.message });
        return;
      }
      // Redis is unreachable (or the connection dropped): the client must not mistake it for a reply.
      logger.warn('redis request failed', { error: error instanceof Error ? error.message : String(error) });
      send(response, 500, { error: `ERR redis is unavailable: ${error instanceof Error ? error.message : error}` });
    }
  });
  server.listen(options.port ?? 0, options.host ?? '127.0.0.1');
  await once(server, 'listening');
  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;

  return {
    url: `http://${host}:${port}`,
    port,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await pool.close();
    },
  };
}

const CliEnvSchema = z.object({
  REDIS_URL: z.url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL' }),
  UPSTASH_REDIS_REST_TOKEN: SecretSchema,
  UPSTASH_COMPAT_HOST: z.string().default('127.0.0.1'),
  UPSTASH_COMPAT_PORT: PositiveIntSchema(8079, 65_535),
  LOG_LEVEL: LogLevelSchema,
});

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { host: { type: 'string' }, port: { type: 'string' } } });
  const env = parseEnvironment(CliEnvSchema, {
    ...process.env,
    ...(values.host ? { UPSTASH_COMPAT_HOST: values.host } : {}),
    ...(values.port ? { UPSTASH_COMPAT_PORT: values.port } : {}),
  });
  const server = await startUpstashCompatServer({
    redisUrl: env.REDIS_URL,
    token: env.UPSTASH_REDIS_REST_TOKEN,
    host: env.UPSTASH_COMPAT_HOST,
    port: env.UPSTASH_COMPAT_PORT,
    logLevel: env.LOG_LEVEL,
  });
  createLogger(env.LOG_LEVEL, { component: 'upstash-compat' }).info('listening', { url: server.url });
  const shutdown = () => {
    server.close().then(() => process.exit(0));
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

if (import.meta.main) {
  main().catch((error: unknown) => {
    createLogger('error', { component: 'upstash-compat' }).error('failed to start', {
      error: error instanceof Error ? error.message : String(error),
    });
    process.exit(1);
  });
}
