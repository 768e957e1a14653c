import { randomBytes } from 'node:crypto';
import { Redis } from '@upstash/redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectReply } from '../../client/src/signaling-connection.ts';
import type { RunningStack } from '../../scripts/stack.ts';
import { startUpstashCompatServer, type UpstashCompatServer } from '../../scripts/upstash-compat-server.ts';
import { ErrorEnvelopeSchema } from '../../shared/src/errors.ts';
import { createRoom, joinParticipant, publishFrom, startLoopbackStack } from '../support/e2e-stack.ts';
import { type RedisServer, redisAvailableOrSkip, startRedisServer } from '../support/redis-server.ts';
import { waitFor } from '../support/werift-peers.ts';

/**
 * Redis stalled mid-call (SIGSTOP: connections stay open, nothing answers), through the real stack
 * (#12 faults): REST answers 503 with the JSON envelope, /health says why, the live room keeps
 * signaling, and once Redis runs again the store's counts are right, with no ghost participant or
 * publisher. (Redis refusing connections is `store-mirror.test.ts`.)
 */
describe.runIf(redisAvailableOrSkip())('Redis stalled mid-call', () => {
  let redis: RedisServer;
  let endpoint: UpstashCompatServer;
  let stack: RunningStack;
  let direct: Redis;
  const token = randomBytes(32).toString('base64url');

  beforeAll(async () => {
    redis = await startRedisServer();
    endpoint = await startUpstashCompatServer({ redisUrl: redis.url, token, logLevel: 'error' });
    stack = await startLoopbackStack({ UPSTASH_REDIS_REST_URL: endpoint.url, UPSTASH_REDIS_REST_TOKEN: token });
    direct = new Redis({ url: endpoint.url, token, automaticDeserialization: false, enableTelemetry: false });
  }, 120_000);

  afterAll(async () => {
    redis?.resume();
    await stack?.stop();
    await endpoint?.close();
    await redis?.stop();
  });

  it('REST 503 with the envelope, /health says why, signaling goes on, counts right afterwards', {
    timeout: 90_000,
  }, async () => {
    const room = await createRoom(stack, 'stall');
    const ann = await joinParticipant(stack, room.id, 'Ann');
    const bob = await joinParticipant(stack, room.id, 'Bob');
    const publisher = await publishFrom(ann);
    await waitFor(() => bob.frames.some((frame) => frame.type === 'publisher_joined'), {
      timeoutMs: 20_000,
      message: 'publisher_joined',
    });
    const mirrored = async (kind: 'participants' | 'publishers') =>
      ((await direct.hvals(`room:{${room.id}}:${kind}`)) as string[])
        .map((entry) => (JSON.parse(entry) as { id: string }).id)
        .sort();
    await waitFor(
      async () => (await mirrored('participants')).length === 2 && (await mirrored('publishers')).length === 1,
      {
        message: 'the mirror before the stall',
      },
    );

    redis.pause();
    const details = await fetch(`${stack.edgeUrl}/api/v1/rooms/${room.id}`);
    expect(details.status).toBe(503);
    expect(ErrorEnvelopeSchema.parse(await details.json()).error.code).toBe('service_unavailable');
    const create = await fetch(`${stack.edgeUrl}/api/v1/rooms`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'during the stall' }),
    });
    expect(create.status).toBe(503);
    ErrorEnvelopeSchema.parse(await create.json());
    // /health checks the store at most every 5 s: it turns within that.
    const health = await waitFor(
      async () => {
        const response = await fetch(`${stack.edgeUrl}/health`);
        return response.status === 503 ? ((await response.json()) as { checks: { store: { detail: string } } }) : false;
      },
      { timeoutMs: 15_000, message: '/health to report the store down' },
    );
    expect(health.checks.store.detail).toMatch(/timed out|unreachable/);

    // The live room keeps signaling: Ann stops publishing, Bob leaves; each is told at once.
    expectReply(await ann.connection.request('unpublish', {}), 'ack');
    await waitFor(() => bob.frames.some((frame) => frame.type === 'publisher_left'), { message: 'publisher_left' });
    expectReply(await bob.connection.request('leave', {}), 'ack');
    await waitFor(() => ann.frames.some((frame) => frame.type === 'participant_left'), {
      message: 'participant_left',
    });

    redis.resume();
    // No ghost: the mirror converges to Ann alone, not publishing.
    await waitFor(
      async () =>
        JSON.stringify(await mirrored('participants')) === JSON.stringify([ann.id]) &&
        (await mirrored('publishers')).length === 0,
      { timeoutMs: 45_000, message: 'the mirror to converge after the stall' },
    );
    const recovered = await fetch(`${stack.edgeUrl}/api/v1/rooms/${room.id}`);
    expect(await recovered.json()).toMatchObject({ id: room.id, participants: 1, publishers: [] });
    await publisher.close();
    ann.connection.close();
  });
});
