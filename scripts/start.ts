import { existsSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError, parseEnvironment, SecretSchema } from '../shared/src/config.ts';
import { dialHost, generateSecret, startStack } from './stack.ts';
import { startUpstashCompatServer } from './upstash-compat-server.ts';

/**
 * `npm start`: the edge on SERVER_HOST:SERVER_PORT (default 0.0.0.0:8080) and MEDIA_NODES media nodes
 * (default 1) from MEDIA_PORT on (8081, 8082…), configured from the environment and an optional
 * `.env`. Ctrl-C stops all.
 */
if (existsSync('.env')) process.loadEnvFile('.env');

const StartEnvSchema = z.object({
  SERVER_HOST: z.string().default('0.0.0.0'),
  SERVER_PORT: z.coerce.number().int().min(1).max(65_535).default(8080),
  MEDIA_HOST: z.string().default('0.0.0.0'),
  MEDIA_PORT: z.coerce.number().int().min(1).max(65_535).default(8081),
  /** Media nodes to run, on MEDIA_PORT, MEDIA_PORT + 1…: a room overflows from one to the next (MEDIA_CAPACITY each). */
  MEDIA_NODES: z.coerce.number().int().min(1).max(8).default(1),
  REDIS_URL: z.url().optional(),
  // Checked here too, so that a weak secret stops `npm start` at once with its name, rather than
  // leaving an edge that answers every request with 500.
  JWT_SECRET: SecretSchema.optional(),
  MEDIA_NODE_SECRET: SecretSchema.optional(),
});

function parseStartEnv() {
  try {
    return parseEnvironment(StartEnvSchema, process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`npm start: ${error.message}`);
    process.exit(1);
  }
}

const startEnv = parseStartEnv();
const env: Record<string, string | undefined> = { ...process.env };

let upstash: { close(): Promise<void> } | undefined;
if (startEnv.REDIS_URL && !env.UPSTASH_REDIS_REST_URL) {
  // A local redis-server is reached through the bundled Upstash-compatible endpoint, so the edge runs
  // the same @upstash/redis code path as in production.
  const token = generateSecret();
  const server = await startUpstashCompatServer({ redisUrl: startEnv.REDIS_URL, token, host: '127.0.0.1', port: 0 });
  upstash = server;
  env.UPSTASH_REDIS_REST_URL = server.url;
  env.UPSTASH_REDIS_REST_TOKEN = token;
}

const stack = await startStack({
  edgeHost: startEnv.SERVER_HOST,
  edgePort: startEnv.SERVER_PORT,
  mediaHost: startEnv.MEDIA_HOST,
  mediaPort: startEnv.MEDIA_PORT,
  mediaNodes: startEnv.MEDIA_NODES,
  env,
  output: 'inherit',
  superviseMediaNode: true,
});

const store = env.UPSTASH_REDIS_REST_URL
  ? startEnv.REDIS_URL
    ? `Redis at ${new URL(startEnv.REDIS_URL).host} (via the local Upstash-compatible endpoint)`
    : 'Upstash'
  : 'embedded (Durable Object storage)';
const lines = [
  '',
  'TrueGather Edge is running',
  `  demo & API   http://${dialHost(startEnv.SERVER_HOST)}:${startEnv.SERVER_PORT}/`,
  `  websocket    ws://${dialHost(startEnv.SERVER_HOST)}:${startEnv.SERVER_PORT}/ws?room_id=…`,
  `  openapi      http://${dialHost(startEnv.SERVER_HOST)}:${startEnv.SERVER_PORT}/openapi.json`,
  ...stack.mediaUrls.map(
    (url, index) => `  ${index === 0 ? 'media nodes ' : '            '} ${url}  (metrics: ${url}/metrics)`,
  ),
  `  state        ${store}`,
];
if (stack.secrets.generated.length > 0) {
  lines.push(
    `  secrets      generated ephemeral ${stack.secrets.generated.join(' and ')} for this run:`,
    '               tokens die with the process; set them in .env to keep sessions across restarts',
  );
}
lines.push('Press Ctrl-C to stop.', '');
console.log(lines.join('\n'));

let stopping = false;
const shutdown = async () => {
  if (stopping) return;
  stopping = true;
  console.log('\nstopping…');
  await stack.stop();
  await upstash?.close();
  process.exit(0);
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
// npm does not always pass SIGTERM on to this script (e.g. `timeout 60 npm start`): when the parent is
// gone, stop the children rather than leave them running.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) void shutdown();
}, 1_000).unref();
