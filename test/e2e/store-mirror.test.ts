import { randomBytes } from 'node:crypto';
import { Redis } from '@upstash/redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectReply } from '../../client/src/signaling-connection.ts';
import type { RunningStack } from '../../scripts/stack.ts';
import { startUpstashCompatServer, type UpstashCompatServer } from '../../scripts/upstash-compat-server.ts';
import { createRoom, joinParticipant, startLoopbackStack } from '../support/e2e-stack.ts';
import { type RedisServer, redisAvailableOrSkip, startRedisServer } from '../support/redis-server.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';
import { waitFor } from '../support/werift-peers.ts';

/**
 * The room's Durable Object is the authority on who is in the room; Redis holds a mirror of it. The
 * edge reaches Redis (through the local Upstash endpoint) across a proxy that can make it unreachable,
 * as a Redis blip or a network partition would.
 */
describe.runIf(redisAvailableOrSkip())('the store mirror', () => {
  let redis: RedisServer;
  let endpoint: UpstashCompatServer;
  let proxy: Awaited<ReturnType<typeof startTcpProxy>>;
  let stack: RunningStack;
  let direct: Redis;
  const token = randomBytes(32).toString('base64url');

  beforeAll(async () => {
    redis = await startRedisServer();
    endpoint = await startUpstashCompatServer({ redisUrl: redis.url, token, logLevel: 'error' });
    const endpointUrl = new URL(endpoint.url);
    proxy = await startTcpProxy({ host: endpointUrl.hostname, port: Number(endpointUrl.port) });
    stack = await startLoopbackStack(
      { UPSTASH_REDIS_REST_URL: `http://127.0.0.1:${proxy.port}`, UPSTASH_REDIS_REST_TOKEN: token },
      { withMediaNode: false },
    );
    direct = new Redis({ url: endpoint.url, token, automaticDeserialization: false, enableTelemetry: false });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
    await proxy?.close();
    await endpoint?.close();
    await redis?.stop();
  });

  it('converges after the store failed during a leave, through the alarm retrying its outbox', {
    timeout: 60_000,
  }, async () => {
    const room = await createRoom(stack);
    const ann = await joinParticipant(stack, room.id, 'Ann');
    const bob = await joinParticipant(stack, room.id, 'Bob');
    const mirrored = async () => {
      const entries = (await direct.hvals(`room:{${room.id}}:participants`)) as string[];
      return entries.map((entry) => (JSON.parse(entry) as { id: string }).id).sort();
    };
    const sameIds = (expected: string[]) => async () =>
      JSON.stringify(await mirrored()) === JSON.stringify([...expected].sort());
    await waitFor(sameIds([ann.id, bob.id]), { message: 'both participants in the mirror' });

    proxy.refuse();
    expectReply(await bob.connection.request('leave', {}), 'ack');
    // Signaling does not wait for the store: Ann is told at once.
    await waitFor(() => ann.frames.some((frame) => frame.type === 'participant_left'), {
      message: 'participant_left for Bob',
    });
    const details = await fetch(`${stack.edgeUrl}/api/v1/rooms/${room.id}`);
    expect(details.status).toBe(503);
    // The store could not be told: its mirror still lists Bob.
    expect(await mirrored()).toEqual([ann.id, bob.id].sort());

    proxy.accept();
    // Nothing else happens in the room: only the alarm, retrying the outbox, can bring the mirror up to date.
    await waitFor(sameIds([ann.id]), { timeoutMs: 20_000, message: 'the mirror to forget Bob' });
    const recovered = await fetch(`${stack.edgeUrl}/api/v1/rooms/${room.id}`);
    expect(await recovered.json()).toMatchObject({ id: room.id, participants: 1 });
    ann.connection.close();
  });
});
