import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Redis } from '@upstash/redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpstashCompatServer, type UpstashCompatServer } from '../../scripts/upstash-compat-server.ts';
import { freePort } from '../support/ports.ts';
import { type RedisServer, redisAvailableOrSkip, startRedisServer } from '../support/redis-server.ts';

/**
 * The local Upstash-compatible endpoint, exercised with the real @upstash/redis client (the one the
 * edge uses in production) against a real redis-server, plus raw HTTP for what the client hides.
 */
const script = fileURLToPath(new URL('../../scripts/upstash-compat-server.ts', import.meta.url));

describe.runIf(redisAvailableOrSkip())('upstash-compat-server', () => {
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

  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${endpoint.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });

  it('round-trips strings byte for byte, including non-ASCII text and numeric-looking values', async () => {
    await redis.set('text', 'Ma Réunion ✓ 会議');
    expect(await redis.get('text')).toBe('Ma Réunion ✓ 会議');
    const raw = new Redis({ url: endpoint.url, token, enableTelemetry: false, automaticDeserialization: false });
    await raw.set('numeric', '0123');
    expect(await raw.get('numeric')).toBe('0123');
    expect(await raw.get('missing')).toBeNull();
  });

  it('stores JSON values, hashes, sets and counters', async () => {
    await redis.set('json', { a: 1, b: ['x'] });
    expect(await redis.get('json')).toEqual({ a: 1, b: ['x'] });
    await redis.hset('hash', { name: 'Alice', n: 2 });
    expect(await redis.hgetall('hash')).toEqual({ name: 'Alice', n: 2 });
    expect(await redis.hget('hash', 'name')).toBe('Alice');
    await redis.sadd('set', 'a', 'b');
    expect((await redis.smembers('set')).sort()).toEqual(['a', 'b']);
    expect(await redis.incr('counter')).toBe(1);
    expect(await redis.incrby('counter', 41)).toBe(42);
  });

  it('applies expiry', async () => {
    await redis.set('ephemeral', 'v', { ex: 100 });
    const ttl = await redis.ttl('ephemeral');
    expect(ttl).toBeGreaterThan(90);
    expect(ttl).toBeLessThanOrEqual(100);
    await redis.pexpire('ephemeral', 1);
    await expect.poll(() => redis.exists('ephemeral'), { timeout: 2000 }).toBe(0);
  });

  it('runs Lua with eval and createScript (EVALSHA falls back to EVAL on NOSCRIPT)', async () => {
    expect(await redis.eval('return {KEYS[1], ARGV[1], 7}', ['k'], ['v'])).toEqual(['k', 'v', 7]);
    await redis.scriptFlush();
    const script = redis.createScript<number>("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    expect(await script.exec(['scripted'], ['5'])).toBe(5);
    expect(await script.exec(['scripted'], ['5'])).toBe(10);
  });

  it('serves concurrent commands through auto-pipelining in order', async () => {
    const values = Array.from({ length: 20 }, (_, i) => `v${i}`);
    await Promise.all(values.map((value, i) => redis.set(`auto:${i}`, value)));
    expect(await Promise.all(values.map((_, i) => redis.get(`auto:${i}`)))).toEqual(values);
  });

  it('runs explicit pipelines with per-command errors inside a 200 answer', async () => {
    const results = await redis.pipeline().set('p', 'x').incr('p').get('p').exec({ keepErrors: true });
    expect(results[0]).toEqual({ result: 'OK', error: undefined });
    expect(results[1]?.error).toMatch(/not an integer/);
    expect(results[2]).toEqual({ result: 'x', error: undefined });
  });

  it('runs multi() transactions atomically and answers EXECABORT as a 400', async () => {
    expect(await redis.multi().set('m', '1').incr('m').get('m').exec()).toEqual(['OK', 2, 2]);
    const aborted = await post('/multi-exec', [['SET', 'm', '9'], ['GET']]);
    expect(aborted.status).toBe(400);
    expect(((await aborted.json()) as { error: string }).error).toMatch(/EXECABORT/);
    expect(await redis.get('m')).toBe(2);
  });

  it('passes Redis error text through unchanged', async () => {
    await redis.set('str', 'x');
    await expect(redis.hget('str', 'f')).rejects.toThrow(/WRONGTYPE/);
    const response = await post('/', ['INCR', 'str']);
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: 'ERR value is not an integer or out of range' });
  });

  it('answers every reply with a result key, null included, base64-encoding strings when asked', async () => {
    const plain = await post('/', ['GET', 'nothing-here']);
    expect(await plain.json()).toEqual({ result: null });
    await redis.set('enc', 'héllo');
    const encoded = await post('/', ['GET', 'enc'], { 'upstash-encoding': 'base64' });
    expect(await encoded.json()).toEqual({ result: Buffer.from('héllo').toString('base64') });
  });

  it('refuses connection-state commands', async () => {
    for (const command of [['MULTI'], ['SELECT', '1'], ['SUBSCRIBE', 'c'], ['WATCH', 'k'], ['CLIENT', 'KILL']]) {
      const response = await post('/', command);
      expect(response.status).toBe(400);
      expect(((await response.json()) as { error: string }).error).toMatch(/not available/);
    }
    const pipeline = await post('/pipeline', [['PING'], ['MONITOR']]);
    expect(pipeline.status).toBe(400);
  });

  it('requires the token on every route, compared in full', async () => {
    for (const path of ['/', '/pipeline', '/multi-exec', '/nope']) {
      const missing = await fetch(`${endpoint.url}${path}`, { method: 'POST', body: '["PING"]' });
      expect(missing.status).toBe(401);
      expect(await missing.json()).toEqual({ error: 'Unauthorized' });
      const wrong = await post(path, ['PING'], { authorization: `Bearer ${token.slice(0, -1)}x` });
      expect(wrong.status).toBe(401);
    }
    const wrongClient = new Redis({ url: endpoint.url, token: 'x'.repeat(43), enableTelemetry: false });
    await expect(wrongClient.ping()).rejects.toThrow(/Unauthorized/);
  });

  it('answers bad requests with JSON errors and the right status', async () => {
    const cases: [Promise<Response>, number][] = [
      [post('/', 'not json'), 400],
      [post('/', ''), 400],
      [post('/', []), 400],
      [post('/', [{ nested: true }]), 400],
      [post('/pipeline', ['PING']), 400],
      [post('/get/key', ['PING']), 404],
      [fetch(`${endpoint.url}/`, { headers: { authorization: `Bearer ${token}` } }), 405],
      [post('/', ['SET', 'big', 'x'.repeat(11 * 1024 * 1024)]), 413],
    ];
    for (const [request, status] of cases) {
      const response = await request;
      expect(response.status).toBe(status);
      expect(response.headers.get('content-type')).toBe('application/json');
      expect(await response.json()).toHaveProperty('error');
    }
  });

  it('runs as a CLI configured from the environment, and stops on SIGTERM', async () => {
    const port = await freePort();
    const cli = spawn(process.execPath, [script, '--port', String(port)], {
      env: { PATH: process.env.PATH, REDIS_URL: redisServer.url, UPSTASH_REDIS_REST_TOKEN: token },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const [line] = (await once(createInterface({ input: cli.stdout! }), 'line')) as [string];
      expect(JSON.parse(line)).toMatchObject({ message: 'listening', url: `http://127.0.0.1:${port}` });
      const client = new Redis({ url: `http://127.0.0.1:${port}`, token, enableTelemetry: false });
      expect(await client.ping()).toBe('PONG');
    } finally {
      const exited = once(cli, 'exit');
      cli.kill('SIGTERM');
      expect(await exited).toEqual([0, null]);
    }
  });

  it('refuses to start as a CLI with a short token, naming the variable', async () => {
    const cli = spawn(process.execPath, [script], {
      env: { PATH: process.env.PATH, REDIS_URL: redisServer.url, UPSTASH_REDIS_REST_TOKEN: 'short' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    cli.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const [code] = await once(cli, 'exit');
    expect(code).toBe(1);
    expect(stderr).toMatch(/UPSTASH_REDIS_REST_TOKEN: must be at least 32 bytes/);
    expect(stderr).not.toContain('short');
  });

  it('answers 500 at once while Redis is down, and recovers when it is back', async () => {
    await redisServer.stop();
    const started = Date.now();
    const down = await post('/', ['PING']);
    expect(down.status).toBe(500);
    expect(((await down.json()) as { error: string }).error).toMatch(/redis is unavailable/);
    expect(Date.now() - started).toBeLessThan(1000);
    await redisServer.restart();
    await expect.poll(async () => (await post('/', ['PING'])).status, { timeout: 10_000, interval: 100 }).toBe(200);
    expect(await redis.ping()).toBe('PONG');
  });
});
