import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningStack, terminate } from '../../scripts/stack.ts';
import { startUpstashCompatServer, type UpstashCompatServer } from '../../scripts/upstash-compat-server.ts';
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
import { waitFor } from '../support/werift-peers.ts';

/**
 * Several media nodes in the registry (Redis through the local Upstash endpoint), through the real
 * stack (#12 faults). One SIGKILLed mid-call: the room notices, everyone hears publisher_left, the
 * next publish_offer lands on a healthy node and nobody leaves. One SIGTERMed: it drains, new rooms go
 * elsewhere, its live call goes on until the drain timeout, then moves to another node.
 */

/** Short enough for a test; the drain timeout ends a call that does not end by itself. */
const DRAIN_TIMEOUT_SECONDS = 3;

interface Node {
  url: string;
  kill(signal: 'SIGKILL' | 'SIGTERM'): void;
}

describe.runIf(redisAvailableOrSkip())('media nodes failing mid-call', () => {
  let redis: RedisServer;
  let endpoint: UpstashCompatServer;
  let stack: RunningStack;
  const launched: ChildProcess[] = [];
  const live: Node[] = [];
  const token = randomBytes(32).toString('base64url');

  /** Another media node on a free port, registered like the stack's own. */
  async function launchNode(id: string): Promise<Node> {
    const port = await freePort();
    const child = launchRegisteredMediaNode(stack, {
      id,
      port,
      upstash: { url: endpoint.url, token },
      env: { MEDIA_DRAIN_TIMEOUT_SECONDS: String(DRAIN_TIMEOUT_SECONDS) },
    });
    launched.push(child);
    const node = { url: `http://127.0.0.1:${port}`, kill: (signal: NodeJS.Signals) => child.kill(signal) };
    await waitFor(async () => (await fetch(`${node.url}/health`).catch(() => undefined))?.ok, {
      timeoutMs: 30_000,
      message: `media node ${id}`,
    });
    live.push(node);
    return node;
  }

  beforeAll(async () => {
    redis = await startRedisServer();
    endpoint = await startUpstashCompatServer({ redisUrl: redis.url, token, logLevel: 'error' });
    stack = await startLoopbackStack({
      UPSTASH_REDIS_REST_URL: endpoint.url,
      UPSTASH_REDIS_REST_TOKEN: token,
      MEDIA_NODE_ID: 'node-a',
      MEDIA_DRAIN_TIMEOUT_SECONDS: String(DRAIN_TIMEOUT_SECONDS),
    });
    live.push({ url: stack.mediaUrl, kill: (signal) => process.kill(stack.mediaNodePid() as number, signal) });
    await launchNode('node-b');
  }, 120_000);

  afterAll(async () => {
    await Promise.all(launched.map((child) => terminate(child)));
    await stack?.stop();
    await endpoint?.close();
    await redis?.stop();
  });

  const health = async (node: Node) =>
    (await (await fetch(`${node.url}/health`)).json()) as { rooms: number; status: string };
  /** Rooms per live node, to tell which node a room went to by what changed. */
  const roomCounts = async () =>
    new Map(await Promise.all(live.map(async (node) => [node, (await health(node)).rooms] as const)));
  /** The live node that took one more room since `before`, and the others. */
  async function gained(before: Map<Node, number>): Promise<{ held: Node; others: Node[] }> {
    const after = await roomCounts();
    const held = live.find((node) => (after.get(node) ?? 0) > (before.get(node) ?? 0));
    if (!held) throw new Error('no node took the room');
    return { held, others: live.filter((node) => node !== held) };
  }
  const retire = (node: Node) => live.splice(live.indexOf(node), 1);

  it('SIGKILL: the next publish_offer lands on the healthy node; no participant leaves', async () => {
    const room = await createRoom(stack, 'failover');
    const alice = await joinParticipant(stack, room.id, 'Alice');
    const bob = await joinParticipant(stack, room.id, 'Bob');
    const before = await roomCounts();
    const first = await publishFrom(alice, 20_000);
    await waitFor(() => hasPublisherJoined(bob.frames), { timeoutMs: 20_000, message: 'publisher_joined' });

    const { held: dead, others } = await gained(before);
    const marks = { alice: alice.frames.length, bob: bob.frames.length };
    const killedAt = performance.now();
    dead.kill('SIGKILL');
    retire(dead);
    await waitFor(() => gotPublisherLeft(alice, marks.alice, alice.id) && gotPublisherLeft(bob, marks.bob, alice.id), {
      timeoutMs: 10_000,
      message: 'publisher_left for Alice, to both',
    });
    expect(performance.now() - killedAt).toBeLessThan(10_000);

    // The registry still lists the dead node (its entry lives on for seconds), unloaded: the room
    // must not go back to it.
    const beforeAgain = await roomCounts();
    const again = await publishFrom(alice, 20_000);
    expect((await gained(beforeAgain)).held).toBe(others[0]);
    await waitFor(() => hasPublisherJoined(framesSince(bob, marks.bob)), {
      timeoutMs: 20_000,
      message: 'publisher_joined again',
    });

    for (const participant of [alice, bob]) {
      expect(participant.frames.filter((frame) => frame.type === 'participant_left')).toEqual([]);
    }
    await Promise.all([first.close(), again.close()]);
    alice.connection.close();
    bob.connection.close();
  }, 150_000);

  it('SIGTERM: the node drains; new rooms go elsewhere, its call goes on, then moves', async () => {
    await launchNode('node-c');
    const room = await createRoom(stack, 'drain');
    const alice = await joinParticipant(stack, room.id, 'Alice');
    const bob = await joinParticipant(stack, room.id, 'Bob');
    const before = await roomCounts();
    const peers: { close(): Promise<void> }[] = [await publishFrom(alice, 20_000)];
    await waitFor(() => hasPublisherJoined(bob.frames), { timeoutMs: 20_000, message: 'publisher_joined' });
    const subscriber = await receiveFrom(bob, alice.id);
    peers.push(subscriber);

    const { held: draining, others } = await gained(before);
    const marks = { alice: alice.frames.length, bob: bob.frames.length };
    draining.kill('SIGTERM');
    await waitFor(async () => (await health(draining).catch(() => undefined))?.status === 'draining', {
      message: 'the node to drain',
    });
    // The call goes on while the node drains.
    const packets = subscriber.packets('video');
    await waitFor(() => subscriber.packets('video') > packets + 10, { message: 'media during the drain' });
    // A new room goes to another node.
    const other = await createRoom(stack, 'elsewhere');
    const carol = await joinParticipant(stack, other.id, 'Carol');
    const beforeCarol = await roomCounts();
    peers.push(await publishFrom(carol, 20_000));
    expect(others).toContain((await gained(beforeCarol)).held);

    // The drain timeout closes the call on the node: everyone hears it, and publishing again moves it.
    await waitFor(() => gotPublisherLeft(alice, marks.alice, alice.id) && gotPublisherLeft(bob, marks.bob, alice.id), {
      timeoutMs: (DRAIN_TIMEOUT_SECONDS + 10) * 1000,
      message: 'publisher_left after the drain timeout',
    });
    retire(draining);
    peers.push(await publishFrom(alice, 20_000));
    await waitFor(() => hasPublisherJoined(framesSince(bob, marks.bob)), {
      timeoutMs: 20_000,
      message: 'publisher_joined again',
    });
    peers.push(await receiveFrom(bob, alice.id));
    for (const participant of [alice, bob]) {
      expect(participant.frames.filter((frame) => frame.type === 'participant_left')).toEqual([]);
    }
    await Promise.all(peers.map((peer) => peer.close()));
    for (const participant of [alice, bob, carol]) participant.connection.close();
  }, 150_000);
});
