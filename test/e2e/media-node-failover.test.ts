import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectReply } from '../../client/src/signaling-connection.ts';
import { launchMediaNode, type RunningStack, terminate } from '../../scripts/stack.ts';
import { startUpstashCompatServer, type UpstashCompatServer } from '../../scripts/upstash-compat-server.ts';
import type { ServerFrame } from '../../shared/src/signaling.ts';
import { createRoom, joinParticipant, startLoopbackStack } from '../support/e2e-stack.ts';
import { freePort } from '../support/ports.ts';
import { type RedisServer, redisAvailableOrSkip, startRedisServer } from '../support/redis-server.ts';
import { TestPublisher, waitFor } from '../support/werift-peers.ts';

/**
 * Two media nodes in the registry (Redis through the local Upstash endpoint), one SIGKILLed mid-call
 * (#12 faults): the room notices, everyone hears publisher_left, the next publish_offer lands on the
 * healthy node, and nobody leaves the room.
 */
describe.runIf(redisAvailableOrSkip())('two media nodes, one killed mid-call', () => {
  let redis: RedisServer;
  let endpoint: UpstashCompatServer;
  let stack: RunningStack;
  let second: { url: string; process: ChildProcess };
  const token = randomBytes(32).toString('base64url');

  beforeAll(async () => {
    redis = await startRedisServer();
    endpoint = await startUpstashCompatServer({ redisUrl: redis.url, token, logLevel: 'error' });
    const upstash = { UPSTASH_REDIS_REST_URL: endpoint.url, UPSTASH_REDIS_REST_TOKEN: token };
    stack = await startLoopbackStack({ ...upstash, MEDIA_NODE_ID: 'node-a' });
    const port = await freePort();
    second = {
      url: `http://127.0.0.1:${port}`,
      process: launchMediaNode(
        {
          ...upstash,
          MEDIA_NODE_ID: 'node-b',
          MEDIA_HOST: '127.0.0.1',
          MEDIA_PORT: String(port),
          MEDIA_NODE_SECRET: stack.secrets.mediaNodeSecret,
          EDGE_URL: stack.edgeUrl,
          MEDIA_RTC_LISTEN_IP: '127.0.0.1',
          MEDIA_WORKERS: '1',
          LOG_LEVEL: 'warn',
        },
        undefined,
      ),
    };
    await waitFor(async () => (await fetch(`${second.url}/health`).catch(() => undefined))?.ok, {
      timeoutMs: 30_000,
      message: 'the second media node',
    });
  }, 120_000);

  afterAll(async () => {
    if (second) await terminate(second.process);
    await stack?.stop();
    await endpoint?.close();
    await redis?.stop();
  });

  const roomsOn = async (url: string) => ((await (await fetch(`${url}/health`)).json()) as { rooms: number }).rooms;

  it('the next publish_offer lands on the healthy node; no participant leaves', async () => {
    const room = await createRoom(stack, 'failover');
    const alice = await joinParticipant(stack, room.id, 'Alice');
    const bob = await joinParticipant(stack, room.id, 'Bob');
    const publish = async () => {
      const publisher = await TestPublisher.create();
      const answer = expectReply(
        await alice.connection.request('publish_offer', { sdp: await publisher.createOffer() }),
        'publish_answer',
      );
      await publisher.setAnswer(answer.payload.sdp);
      return publisher;
    };
    const first = await publish();
    const publisherJoined = (frames: ServerFrame[], from: number) =>
      frames.slice(from).some((frame) => frame.type === 'publisher_joined');
    await waitFor(() => publisherJoined(bob.frames, 0), { timeoutMs: 20_000, message: 'publisher_joined' });

    // Kill the node that holds the room, as a crash would.
    const onFirst = (await roomsOn(stack.mediaUrl)) === 1;
    const [dead, healthy] = onFirst ? [stack.mediaUrl, second.url] : [second.url, stack.mediaUrl];
    const marks = { alice: alice.frames.length, bob: bob.frames.length };
    const killedAt = performance.now();
    if (onFirst) process.kill(stack.mediaNodePid() as number, 'SIGKILL');
    else await terminate(second.process, 'SIGKILL');
    expect(await fetch(`${dead}/health`).catch(() => 'refused')).toBe('refused');

    const leftFor = (frames: ServerFrame[], from: number) =>
      frames.slice(from).some((frame) => frame.type === 'publisher_left' && frame.payload.publisher_id === alice.id);
    await waitFor(() => leftFor(alice.frames, marks.alice) && leftFor(bob.frames, marks.bob), {
      timeoutMs: 10_000,
      message: 'publisher_left for Alice, to both',
    });
    expect(performance.now() - killedAt).toBeLessThan(10_000);

    // The registry still lists the dead node (its entry lives on for seconds), with no load: the room
    // must not go back to it.
    const again = await publish();
    expect(await roomsOn(healthy)).toBe(1);
    await waitFor(() => publisherJoined(bob.frames, marks.bob), {
      timeoutMs: 20_000,
      message: 'publisher_joined again',
    });

    for (const participant of [alice, bob]) {
      expect(participant.frames.filter((frame) => frame.type === 'participant_left')).toEqual([]);
    }
    await Promise.all([first.close(), again.close()]);
    alice.connection.close();
    bob.connection.close();
  }, 90_000);
});
