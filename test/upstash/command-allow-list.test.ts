import { randomBytes } from 'node:crypto';
import { Redis } from '@upstash/redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpstashCompatServer, type UpstashCompatServer } from '../../scripts/upstash-compat-server.ts';
import { type RedisServer, redisAvailableOrSkip, startRedisServer } from '../support/redis-server.ts';

/**
 * The local Upstash-compatible endpoint serves only the commands the project sends through
 * `@upstash/redis`: admin and blocking commands never reach Redis, and are answered in Upstash's
 * error shape (400 `{"error": "ERR …"}`), which the client surfaces as an error.
 */
describe.runIf(redisAvailableOrSkip())('upstash-compat-server command allow-list', () => {
  let redisServer: RedisServer;
  let endpoint: UpstashCompatServer;
  const token = randomBytes(32).toString('base64url');
  let redis: Redis;

  beforeAll(async () => {
    redisServer = await startRedisServer();
    endpoint = await startUpstashCompatServer({ redisUrl: redisServer.url, token, logLevel: 'error' });
    redis = new Redis({ url: endpoint.url, token, enableTelemetry: false });
  });

  afterAll(async () => {
    await endpoint?.close();
    await redisServer?.stop();
  });

  const post = (path: string, body: unknown) =>
    fetch(`${endpoint.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });

  const ADMIN_COMMANDS = [
    ['CONFIG', 'GET', 'dir'],
    ['CONFIG', 'SET', 'dir', '/tmp'],
    ['FLUSHALL'],
    ['FLUSHDB'],
    ['REPLICAOF', '127.0.0.1', '1'],
    ['SLAVEOF', 'NO', 'ONE'],
    ['MODULE', 'LIST'],
    ['DEBUG', 'SLEEP', '0'],
    ['SHUTDOWN', 'NOSAVE'],
    ['KEYS', '*'],
    ['SAVE'],
    ['ACL', 'LIST'],
    ['SCRIPT', 'KILL'],
    ['FUNCTION', 'FLUSH'],
    ['MIGRATE', '127.0.0.1', '1', 'k', '0', '1'],
    ['flushall'],
  ];

  it('refuses admin commands on every route with Upstash’s error shape, and they change nothing', async () => {
    await redis.set('survivor', 'still here');
    for (const command of ADMIN_COMMANDS) {
      for (const [path, body] of [
        ['/', command],
        ['/pipeline', [['SET', 'survivor', 'overwritten'], command]],
        ['/multi-exec', [['SET', 'survivor', 'overwritten'], command]],
      ] as const) {
        const response = await post(path, body);
        expect(response.status, `${command.join(' ')} on ${path}`).toBe(400);
        expect(response.headers.get('content-type')).toBe('application/json');
        expect(await response.json()).toEqual({
          error: expect.stringMatching(/^ERR Command is not available: '/),
        });
      }
    }
    // Nothing ran: neither the admin command nor the commands batched with it.
    expect(await redis.get('survivor')).toBe('still here');
    expect(await redis.exists('survivor')).toBe(1);
  });

  it('surfaces a refused command as an error through @upstash/redis', async () => {
    await expect(redis.flushall()).rejects.toThrow(/Command is not available: 'flushall'/);
    await expect(redis.keys('*')).rejects.toThrow(/not available/);
  });

  it('refuses blocking commands at once, without holding a pooled connection', async () => {
    const blocking = [
      ['BLPOP', 'queue', '0'],
      ['BRPOP', 'queue', '0'],
      ['BLMOVE', 'a', 'b', 'LEFT', 'LEFT', '0'],
      ['BZPOPMIN', 'z', '0'],
      ['XREAD', 'BLOCK', '0', 'STREAMS', 's', '$'],
      ['WAIT', '1', '0'],
    ];
    // More blocking requests at once than the endpoint has pooled connections (16).
    const responses = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        post(i % 2 ? '/' : '/pipeline', i % 2 ? blocking[i % 6] : [blocking[i % 6]]),
      ),
    );
    for (const response of responses) {
      expect(response.status).toBe(400);
      expect(((await response.json()) as { error: string }).error).toMatch(/not available/);
    }
    // The pool is free: ordinary commands are answered right away.
    expect(await redis.ping()).toBe('PONG');
    await redis.set('after-blocking', 'ok');
    expect(await redis.get('after-blocking')).toBe('ok');
  });

  it('still serves everything the project sends: scripts, hashes, sets, expiry, pipelines', async () => {
    const script = redis.createScript<number>("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    await redis.scriptFlush();
    expect(await script.exec(['allowed:n'], ['2'])).toBe(2);
    expect(await script.exec(['allowed:n'], ['2'])).toBe(4);
    await redis.hset('allowed:h', { a: 1 });
    expect(await redis.hvals('allowed:h')).toEqual([1]);
    await redis.sadd('allowed:s', 'x');
    await redis.srem('allowed:s', 'x');
    expect(await redis.smembers('allowed:s')).toEqual([]);
    await redis.set('allowed:k', 'v', { ex: 30 });
    expect(await redis.mget('allowed:k', 'nothing')).toEqual(['v', null]);
    expect(await redis.ttl('allowed:k')).toBeGreaterThan(0);
    expect(await redis.pipeline().del('allowed:k').exists('allowed:k').exec()).toEqual([1, 0]);
  });

  it('echoes at most a short prefix of an unknown command name', async () => {
    const response = await post('/', ['X'.repeat(10_000)]);
    expect(response.status).toBe(400);
    const { error } = (await response.json()) as { error: string };
    expect(error.length).toBeLessThan(120);
  });
});
