import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Redis } from '@upstash/redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningStack, terminate } from '../../scripts/stack.ts';
import { startUpstashCompatServer, type UpstashCompatServer } from '../../scripts/upstash-compat-server.ts';
import { MEDIA_NODE_REGISTRY_KEY_PREFIX } from '../../shared/src/media-control.ts';
import { suspectNodeKey } from '../../workers/src/store/upstash-room-repository.ts';
import {
  createRoom,
  framesSince,
  gotPublisherLeft,
  hasPublisherJoined,
  joinParticipant,
  launchRegisteredMediaNode,
  publishFrom,
  receiveFrom,
  startLoopbackStack,
} from '../support/e2e-stack.ts';
import { freePort } from '../support/ports.ts';
import { type RedisServer, redisAvailableOrSkip, startRedisServer } from '../support/redis-server.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';
import { waitFor } from '../support/werift-peers.ts';

/**
 * A media node that keeps heartbeating while its control API hangs (#12 item 10), through the real
 * stack: two real nodes in the registry (Redis behind the local Upstash endpoint), the edge reaching
 * one of them through a proxy that stops forwarding — the node itself runs on and keeps its registry
 * entry fresh, as a node behind a black-holed path or with a hung control API would. The room on it
 * leaves it as a dead node (everyone hears publisher_left, the publisher publishes again on the
 * healthy node), and a new room's publish_offer lands on the healthy node at the first try, although
 * the hung node is the least loaded in the registry.
 */

interface Node {
  id: string;
  /** Where the node really listens (its health, for the test). */
  directUrl: string;
  health(): Promise<{ rooms: number }>;
}

describe.runIf(redisAvailableOrSkip())('a media node whose calls time out while it heartbeats', () => {
  let redis: RedisServer;
  let endpoint: UpstashCompatServer;
  let stack: RunningStack;
  let store: Redis;
  const launched: ChildProcess[] = [];
  const token = randomBytes(32).toString('base64url');
  let proxy: Awaited<ReturnType<typeof startTcpProxy>>;

  async function launchNode(id: string, env: Record<string, string>, publicPort?: number): Promise<Node> {
    const port = publicPort ?? (await freePort());
    const child = launchRegisteredMediaNode(stack, { id, port, upstash: { url: endpoint.url, token }, env });
    launched.push(child);
    const directUrl = `http://127.0.0.1:${port}`;
    const node: Node = {
      id,
      directUrl,
      health: async () => (await (await fetch(`${directUrl}/health`)).json()) as { rooms: number },
    };
    await waitFor(async () => (await store.get(`${MEDIA_NODE_REGISTRY_KEY_PREFIX}${id}`)) !== null, {
      timeoutMs: 30_000,
      message: `media node ${id} in the registry`,
    });
    return node;
  }

  /** When the node last heartbeat into the registry. */
  const heartbeatOf = async (node: Node) => {
    const entry = await store.get<{ updated_at: string }>(`${MEDIA_NODE_REGISTRY_KEY_PREFIX}${node.id}`);
    return entry ? Date.parse(entry.updated_at) : undefined;
  };

  beforeAll(async () => {
    redis = await startRedisServer();
    endpoint = await startUpstashCompatServer({ redisUrl: redis.url, token, logLevel: 'error' });
    store = new Redis({ url: endpoint.url, token, enableTelemetry: false });
    stack = await startLoopbackStack(
      { UPSTASH_REDIS_REST_URL: endpoint.url, UPSTASH_REDIS_REST_TOKEN: token },
      { withMediaNode: false },
    );
  }, 120_000);

  afterAll(async () => {
    await Promise.all(launched.map((child) => terminate(child)));
    await proxy?.close();
    await stack?.stop();
    await endpoint?.close();
    await redis?.stop();
  });

  it('its room moves as off a dead node, and a new room goes to the healthy node at once', async () => {
    // The node that will hang: reached through the proxy (its registry URL), with room for far more
    // peers than the healthy node, so that placement by load alone would keep choosing it.
    const hungPort = await freePort();
    proxy = await startTcpProxy({ host: '127.0.0.1', port: hungPort });
    const hung = await launchNode(
      'node-hung',
      { MEDIA_PUBLIC_URL: `http://127.0.0.1:${proxy.port}`, MEDIA_CAPACITY: '1000' },
      hungPort,
    );
    const room = await createRoom(stack, 'hangs');
    const alice = await joinParticipant(stack, room.id, 'Alice');
    const bob = await joinParticipant(stack, room.id, 'Bob');
    const peers: { close(): Promise<void> }[] = [await publishFrom(alice, 20_000)];
    await waitFor(() => hasPublisherJoined(bob.frames), { timeoutMs: 20_000, message: 'publisher_joined' });
    peers.push(await receiveFrom(bob, alice.id));
    expect((await hung.health()).rooms).toBe(1);

    const healthy = await launchNode('node-healthy', { MEDIA_CAPACITY: '20' });
    const marks = { alice: alice.frames.length, bob: bob.frames.length };
    const hungAt = Date.now();
    proxy.stall();

    await waitFor(() => gotPublisherLeft(alice, marks.alice, alice.id) && gotPublisherLeft(bob, marks.bob, alice.id), {
      timeoutMs: 20_000,
      message: 'publisher_left for Alice, to both',
    });
    const noticedAfterMs = Date.now() - hungAt;
    expect(noticedAfterMs).toBeLessThan(15_000);
    console.log(`the room left the hung node ${noticedAfterMs} ms after it stopped answering`);
    expect(await store.exists(suspectNodeKey(`http://127.0.0.1:${proxy.port}`))).toBe(1);
    // The hung node heartbeats on: the registry alone would still offer it, as the least loaded.
    await waitFor(async () => ((await heartbeatOf(hung)) ?? 0) > hungAt, {
      timeoutMs: 15_000,
      message: 'a heartbeat of the hung node after it hung',
    });

    // Alice's SDK publishes again: on the healthy node.
    const healthyRooms = (await healthy.health()).rooms;
    peers.push(await publishFrom(alice, 20_000));
    expect((await healthy.health()).rooms).toBe(healthyRooms + 1);
    await waitFor(() => hasPublisherJoined(framesSince(bob, marks.bob)), {
      timeoutMs: 20_000,
      message: 'publisher_joined again',
    });
    peers.push(await receiveFrom(bob, alice.id));

    // A new room: its first publish_offer is answered, by the healthy node.
    const other = await createRoom(stack, 'elsewhere');
    const carol = await joinParticipant(stack, other.id, 'Carol');
    peers.push(await publishFrom(carol));
    expect((await healthy.health()).rooms).toBe(healthyRooms + 2);
    expect((await hung.health()).rooms).toBe(1);

    for (const participant of [alice, bob]) {
      expect(participant.frames.filter((frame) => frame.type === 'participant_left')).toEqual([]);
    }
    await Promise.all(peers.map((peer) => peer.close()));
    for (const participant of [alice, bob, carol]) participant.connection.close();
  }, 150_000);
});
