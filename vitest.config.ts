import { randomBytes } from 'node:crypto';
import { cloudflareTest } from '@cloudflare/vitest-plugin';
import { defineConfig, type TestProjectInlineConfiguration } from 'vitest/config';
import { redisServerInstalled } from './test/support/redis-server.ts';

/** A fresh secret per test run: the suite never depends on a secret stored in the repo. */
const testSecret = () => randomBytes(32).toString('base64url');

const workerBindings = {
  JWT_SECRET: testSecret(),
  MEDIA_NODE_SECRET: testSecret(),
  LOG_LEVEL: 'error',
};

/**
 * Requests from the test pool carry no client address, so they all share the limiter's unidentified
 * bucket: the suites get a limit they never reach. The rate-limit suite runs the edge against
 * STRICT_RATE_LIMITER (100 per minute, wrangler.toml's REST limit) in place of both.
 */
const ratelimits = {
  API_RATE_LIMITER: { namespace_id: '1001', simple: { limit: 1_000_000, period: 60 as const } },
  WS_RATE_LIMITER: { namespace_id: '1002', simple: { limit: 1_000_000, period: 60 as const } },
  STRICT_RATE_LIMITER: { namespace_id: '1003', simple: { limit: 100, period: 60 as const } },
};

/** The edge's Worker, with fake media nodes for the rooms whose tests give one (no seam in the product). */
const TEST_WORKER = './test/workers/support/test-worker.ts';

/** Upstash-only test files; the embedded project leaves them out. */
const UPSTASH_ONLY = 'test/workers/**/*-upstash.test.ts';

/**
 * The REST and store suites run a second time against Upstash: a real redis-server behind the local
 * Upstash-compatible endpoint (globalSetup), wired in through the UPSTASH_* bindings. Without
 * redis-server the project is left out, unless REQUIRE_REDIS=1 (CI), where its setup then fails.
 */
const withRedis = redisServerInstalled() || process.env.REQUIRE_REDIS === '1';
if (!withRedis) console.warn('redis-server is not installed: skipping the workers-upstash project');

const workersUpstash: TestProjectInlineConfiguration = {
  plugins: [
    cloudflareTest(({ inject }) => ({
      main: TEST_WORKER,
      wrangler: { configPath: './wrangler.toml' },
      miniflare: {
        bindings: {
          ...workerBindings,
          UPSTASH_REDIS_REST_URL: inject('upstashUrl'),
          UPSTASH_REDIS_REST_TOKEN: inject('upstashToken'),
        },
        ratelimits,
      },
    })),
  ],
  test: {
    name: 'workers-upstash',
    include: [
      'test/workers/rest*.test.ts',
      'test/workers/store*.test.ts',
      'test/workers/signaling*.test.ts',
      UPSTASH_ONLY,
    ],
    exclude: ['test/workers/**/*-embedded.test.ts'],
    globalSetup: ['test/support/upstash-global-setup.ts'],
  },
};

export default defineConfig({
  test: {
    projects: [
      {
        plugins: [
          cloudflareTest({
            main: TEST_WORKER,
            wrangler: { configPath: './wrangler.toml' },
            miniflare: { bindings: workerBindings, ratelimits },
          }),
        ],
        test: {
          name: 'workers',
          include: ['test/workers/**/*.test.ts'],
          exclude: [UPSTASH_ONLY],
        },
      },
      ...(withRedis ? [workersUpstash] : []),
      {
        test: {
          name: 'node',
          environment: 'node',
          include: ['test/**/*.test.ts'],
          exclude: ['test/workers/**', 'node_modules/**'],
          testTimeout: 30_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
