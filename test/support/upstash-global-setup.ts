import { randomBytes } from 'node:crypto';
import type { TestProject } from 'vitest/node';
import { startUpstashCompatServer } from '../../scripts/upstash-compat-server.ts';
import { startRedisServer } from './redis-server.ts';

declare module 'vitest' {
  interface ProvidedContext {
    /** Base URL of the local Upstash-compatible endpoint in front of this run's redis-server. */
    upstashUrl: string;
    upstashToken: string;
  }
}

/**
 * For the `workers-upstash` project: a real redis-server on a free port behind the local
 * Upstash-compatible endpoint, whose URL and token become the Worker's UPSTASH_* bindings.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const redis = await startRedisServer();
  const token = randomBytes(32).toString('base64url');
  const endpoint = await startUpstashCompatServer({ redisUrl: redis.url, token, logLevel: 'error' });
  project.provide('upstashUrl', endpoint.url);
  project.provide('upstashToken', token);
  return async () => {
    await endpoint.close();
    await redis.stop();
  };
}
