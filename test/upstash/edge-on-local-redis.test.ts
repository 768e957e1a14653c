import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSecret, type RunningStack, startStack } from '../../scripts/stack.ts';
import { startUpstashCompatServer, type UpstashCompatServer } from '../../scripts/upstash-compat-server.ts';
import { ErrorEnvelopeSchema } from '../../shared/src/errors.ts';
import { HealthResponseSchema, JoinRoomResponseSchema, RoomSchema } from '../../shared/src/rest.ts';
import { freePort } from '../support/ports.ts';
import { type RedisServer, redisAvailableOrSkip, startRedisServer } from '../support/redis-server.ts';

/**
 * The edge as `npm start` runs it with REDIS_URL: `wrangler dev` talking to a real redis-server
 * through the local Upstash-compatible endpoint, checked over HTTP as a client would.
 */
describe.runIf(redisAvailableOrSkip())('the edge on a local Redis', () => {
  let redis: RedisServer;
  let endpoint: UpstashCompatServer;
  const stacks: RunningStack[] = [];
  const token = randomBytes(32).toString('base64url');
  const secrets = { JWT_SECRET: generateSecret(), MEDIA_NODE_SECRET: generateSecret() };

  const startEdge = async (roomTtlSeconds: number) => {
    const stack = await startStack({
      edgeHost: '127.0.0.1',
      edgePort: await freePort(),
      mediaHost: '127.0.0.1',
      mediaPort: await freePort(),
      withMediaNode: false,
      env: {
        ...secrets,
        UPSTASH_REDIS_REST_URL: endpoint.url,
        UPSTASH_REDIS_REST_TOKEN: token,
        ROOM_TTL_SECONDS: String(roomTtlSeconds),
        LOG_LEVEL: 'warn',
      },
    });
    stacks.push(stack);
    return stack;
  };

  beforeAll(async () => {
    redis = await startRedisServer();
    endpoint = await startUpstashCompatServer({ redisUrl: redis.url, token, logLevel: 'error' });
  });

  afterAll(async () => {
    await Promise.all(stacks.map((stack) => stack.stop()));
    await endpoint?.close();
    await redis?.stop();
  });

  it('keeps rooms across a restart of the edge and expires them after ROOM_TTL_SECONDS', {
    timeout: 120_000,
  }, async () => {
    const first = await startEdge(3600);
    // The seed's curl examples, byte for byte.
    const created = await fetch(`${first.edgeUrl}/api/v1/rooms`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"name": "Ma Réunion", "max_publishers": 10}',
    });
    expect(created.status).toBe(201);
    const room = RoomSchema.parse(await created.json());
    const joined = await fetch(`${first.edgeUrl}/api/v1/rooms/${room.id}/join`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"display": "Alice"}',
    });
    expect(joined.status).toBe(200);
    const { token: participantToken } = JoinRoomResponseSchema.parse(await joined.json());
    const claims = JSON.parse(Buffer.from(participantToken.split('.')[1]!, 'base64url').toString());
    expect(claims.exp - claims.iat).toBeLessThanOrEqual(900);
    await first.stop();

    const second = await startEdge(2);
    const survived = await fetch(`${second.edgeUrl}/api/v1/rooms/${room.id}`);
    expect(survived.status).toBe(200);
    expect(await survived.json()).toMatchObject({ id: room.id, name: 'Ma Réunion', max_publishers: 10 });

    const shortLived = RoomSchema.parse(
      await (
        await fetch(`${second.edgeUrl}/api/v1/rooms`, { method: 'POST', body: JSON.stringify({ name: 'brief' }) })
      ).json(),
    );
    expect(Date.parse(shortLived.expires_at) - Date.parse(shortLived.created_at)).toBe(2000);
    await expect
      .poll(async () => (await fetch(`${second.edgeUrl}/api/v1/rooms/${shortLived.id}`)).status, {
        timeout: 10_000,
        interval: 200,
      })
      .toBe(404);

    // Redis down: /health says so with a 503 (once its cached check, ≤ 5 s old, has expired) and the
    // API answers 503 in the envelope; back up: healthy.
    await redis.stop();
    await expect
      .poll(async () => (await fetch(`${second.edgeUrl}/health`)).status, { timeout: 10_000, interval: 200 })
      .toBe(503);
    const health = await fetch(`${second.edgeUrl}/health`);
    expect(health.status).toBe(503);
    expect(HealthResponseSchema.parse(await health.json())).toMatchObject({
      status: 'degraded',
      checks: { store: { status: 'down', detail: 'upstash: unreachable' } },
    });
    const refused = await fetch(`${second.edgeUrl}/api/v1/rooms/${room.id}`);
    expect(refused.status).toBe(503);
    expect(ErrorEnvelopeSchema.parse(await refused.json()).error.code).toBe('service_unavailable');

    await redis.restart();
    await expect
      .poll(async () => (await fetch(`${second.edgeUrl}/health`)).status, { timeout: 15_000, interval: 200 })
      .toBe(200);
  });
});
