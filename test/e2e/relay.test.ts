import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectReply } from '../../client/src/signaling-connection.ts';
import type { RunningStack } from '../../scripts/stack.ts';
import { mediaControlPath } from '../../shared/src/media-control.ts';
import { mediaNodeIdentity } from '../../shared/src/media-node-trust.ts';
import type { Room } from '../../shared/src/rest.ts';
import { signServiceToken } from '../../shared/src/service-token.ts';
import type { ServerFrame } from '../../shared/src/signaling.ts';
import { MEDIA_NODE_AUDIENCE } from '../../shared/src/token.ts';
import { metricValue } from '../media-node/harness.ts';
import {
  createRoom,
  type JoinedParticipant,
  joinParticipant,
  publishFrom,
  startLoopbackStack,
} from '../support/e2e-stack.ts';
import { PeerSet, TestSubscriber, waitFor } from '../support/werift-peers.ts';

/**
 * One room across two real media nodes (child processes of scripts/stack.ts, as `MEDIA_NODES=2 npm
 * start` runs them) with real werift peers: the room's Durable Object places participants on node A
 * until it is full (MEDIA_CAPACITY), then on node B, and has B pull from A (and A from B) what its
 * viewers need, over one relay per node pair. Clients see nothing of it.
 */

const CAPACITY = 6;

let stack: RunningStack;
let nodeA: { url: string };
let nodeB: { url: string };
/** Every line the stack's processes wrote (the nodes log each relay sender they open, with its id). */
const logs: string[] = [];
const peers = new PeerSet();

beforeAll(async () => {
  stack = await startLoopbackStack(
    { MEDIA_CAPACITY: String(CAPACITY), LOG_LEVEL: 'info' },
    { mediaNodes: 2, output: (line) => logs.push(line) },
  );
  [nodeA, nodeB] = stack.mediaUrls.map((url) => ({ url })) as [{ url: string }, { url: string }];
}, 120_000);

afterAll(async () => {
  await peers.closeAll();
  await stack?.stop();
});

const relaysOpen = async (node: { url: string }, direction: 'sent' | 'received') =>
  metricValue(node, `truegather_relays_open{direction="${direction}"}`);

/** A participant that receives `feeds` on a werift subscriber (subscribe, answer). */
async function viewer(room: Room, display: string, feeds: string[]) {
  const participant = await joinParticipant(stack, room.id, display);
  const subscriber = peers.track(new TestSubscriber());
  await subscribe(participant, subscriber, feeds);
  return { participant, subscriber };
}

async function subscribe(participant: JoinedParticipant, subscriber: TestSubscriber, feeds: string[]) {
  const offer = expectReply(await participant.connection.request('subscribe', { feeds }), 'subscribe_offer');
  expectReply(
    await participant.connection.request('subscribe_answer', { sdp: await subscriber.answer(offer.payload.sdp) }),
    'ack',
  );
}

/** A participant publishing audio and video from a werift peer, once the room announced it to `watcher`. */
async function publisher(room: Room, display: string, watcher: JoinedParticipant) {
  const participant = await joinParticipant(stack, room.id, display);
  const peer = peers.track(await publishFrom(participant));
  await waitFor(
    () =>
      watcher.frames.some(
        (frame) => frame.type === 'publisher_joined' && frame.payload.publisher.id === participant.id,
      ),
    { timeoutMs: 20_000, message: `${display} announced` },
  );
  return { participant, peer };
}

/** Waits until `subscriber` gets audio and video of every feed in `feeds`. */
function receives(subscriber: TestSubscriber, feeds: string[], label: string) {
  return waitFor(
    () => feeds.every((feed) => subscriber.packets('audio', feed) > 0 && subscriber.packets('video', feed) > 0),
    { timeoutMs: 30_000, message: `${label} receiving audio and video of ${feeds.length} feed(s)` },
  );
}

/** Whether media keeps coming: `subscriber`'s packets of `feed` grow by `count` more of each kind. */
function keepsReceiving(subscriber: TestSubscriber, feed: string, label: string, count = 30) {
  const before = { audio: subscriber.packets('audio', feed), video: subscriber.packets('video', feed) };
  return waitFor(
    () =>
      subscriber.packets('audio', feed) > before.audio + count &&
      subscriber.packets('video', feed) > before.video + count,
    { timeoutMs: 20_000, message: `${label} receiving more of ${feed}` },
  );
}

const leave = async (participant: JoinedParticipant) => {
  expectReply(await participant.connection.request('leave', {}), 'ack');
};

/** Frames a participant got that tell of trouble: someone's publishing ended, an error, a renegotiation. */
const trouble = (frames: ServerFrame[]) =>
  frames.filter((frame) => ['publisher_left', 'error', 'subscribe_offer'].includes(frame.type));

describe('a room across two media nodes', () => {
  it('both directions: a publisher on each node, viewers on both, everyone receives everyone', async () => {
    const room = await createRoom(stack, 'both directions');
    const watcher = await joinParticipant(stack, room.id, 'Watcher');
    const alice = await publisher(room, 'Alice', watcher);
    // Five viewers of Alice fill node A (six peers with her publisher).
    const onA = [];
    for (let index = 1; index <= CAPACITY - 1; index += 1)
      onA.push(await viewer(room, `A${index}`, [alice.participant.id]));
    // Bob's publisher goes to node B: A is at capacity.
    const bob = await publisher(room, 'Bob', watcher);
    // One of A's viewers leaves: Alice's own subscriber fits on her node.
    const [leaving, ...stayingOnA] = onA as [(typeof onA)[0], ...typeof onA];
    await leave(leaving.participant);
    const aliceViews = peers.track(new TestSubscriber());
    await subscribe(alice.participant, aliceViews, [bob.participant.id]);
    const bobViews = peers.track(new TestSubscriber());
    await subscribe(bob.participant, bobViews, [alice.participant.id]);
    const onB = await viewer(room, 'B1', [alice.participant.id, bob.participant.id]);
    for (const { participant, subscriber } of stayingOnA) {
      await subscribe(participant, subscriber, [alice.participant.id, bob.participant.id]);
    }

    await receives(aliceViews, [bob.participant.id], 'Alice');
    await receives(bobViews, [alice.participant.id], 'Bob');
    await receives(onB.subscriber, [alice.participant.id, bob.participant.id], 'the viewer on B');
    for (const [index, { subscriber }] of stayingOnA.entries()) {
      await receives(subscriber, [alice.participant.id, bob.participant.id], `viewer ${index + 2} on A`);
    }
    // One relay each way: A pulls Bob from B, B pulls Alice from A.
    for (const node of [nodeA, nodeB]) {
      expect(await relaysOpen(node, 'sent')).toBe(1);
      expect(await relaysOpen(node, 'received')).toBe(1);
    }
    // The room's REST view lists both publishers, and says nothing of nodes.
    const details = await (await fetch(`${stack.edgeUrl}/api/v1/rooms/${room.id}`)).text();
    expect(details).not.toMatch(/127\.0\.0\.1:\d+|relay/);

    for (const participant of [watcher, alice.participant, bob.participant, onB.participant]) await leave(participant);
    for (const { participant } of stayingOnA) await leave(participant);
    // The last viewers gone, both relays close.
    await waitFor(
      async () =>
        (await relaysOpen(nodeA, 'sent')) +
          (await relaysOpen(nodeA, 'received')) +
          (await relaysOpen(nodeB, 'sent')) +
          (await relaysOpen(nodeB, 'received')) ===
        0,
      { timeoutMs: 15_000, message: 'every relay closed' },
    );
    await peers.closeAll();
  }, 240_000);

  /** The overflow room: Alice on A, ten viewers (five on A, five on B). */
  let overflow: {
    room: Room;
    alice: Awaited<ReturnType<typeof publisher>>;
    viewers: Awaited<ReturnType<typeof viewer>>[];
  };

  it('overflow: one publisher and ten subscribers with MEDIA_CAPACITY=6: all receive, both nodes forward, one relay', async () => {
    const room = await createRoom(stack, 'overflow');
    const watcher = await joinParticipant(stack, room.id, 'Watcher');
    const alice = await publisher(room, 'Alice', watcher);
    const viewers = [];
    for (let index = 1; index <= 10; index += 1)
      viewers.push(await viewer(room, `Viewer ${index}`, [alice.participant.id]));
    for (const [index, { subscriber }] of viewers.entries()) {
      await receives(subscriber, [alice.participant.id], `viewer ${index + 1}`);
    }
    // Both nodes forward: A to its five viewers (and the relay), B to its five.
    expect(await metricValue(nodeA, 'truegather_subscribers')).toBe(CAPACITY - 1);
    expect(await metricValue(nodeB, 'truegather_subscribers')).toBe(10 - (CAPACITY - 1));
    for (const node of [nodeA, nodeB]) {
      expect(await metricValue(node, 'truegather_rtp_forwarded_packets_total')).toBeGreaterThan(0);
    }
    // Exactly one relay carries the feed, whatever the number of viewers behind it.
    expect(await relaysOpen(nodeA, 'sent')).toBe(1);
    expect(await relaysOpen(nodeB, 'received')).toBe(1);
    expect(await relaysOpen(nodeA, 'received')).toBe(0);
    expect(await relaysOpen(nodeB, 'sent')).toBe(0);
    expect(await metricValue(nodeB, 'truegather_relayed_packets_total{direction="received"}')).toBeGreaterThan(0);
    await leave(watcher);
    overflow = { room, alice, viewers };
  }, 240_000);

  it('faults: the relay’s connection dropped, then node B killed: B’s viewers get media again, then are placed again; nobody on A notices', async () => {
    const { room, alice, viewers } = overflow;
    const onA = viewers.slice(0, CAPACITY - 1);
    const onB = viewers.slice(CAPACITY - 1);
    const marks = [alice.participant, ...onA.map((entry) => entry.participant)].map((participant) => ({
      participant,
      from: participant.frames.length,
    }));

    // The origin's end of the relay goes (as a crash of its peer connection would): node B
    // re-establishes it, and its viewers get media again after a gap.
    const opened = relaySenderIds(room.id);
    const relayId = opened.at(-1);
    expect(relayId, 'the relay sender the origin logged').toBeDefined();
    const token = await signServiceToken(new TextEncoder().encode(stack.secrets.mediaNodeSecret), {
      issuer: mediaNodeIdentity(nodeB.url),
      audience: MEDIA_NODE_AUDIENCE,
      claims: { node: mediaNodeIdentity(nodeA.url) },
    });
    const dropped = await fetch(new URL(mediaControlPath('closeRelaySender', room.id, relayId), nodeA.url), {
      method: 'DELETE',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(dropped.status).toBe(200);
    await waitFor(() => relaySenderIds(room.id).length > opened.length, {
      timeoutMs: 20_000,
      message: 'the relay re-established',
    });
    for (const [index, { subscriber }] of onB.entries()) {
      await keepsReceiving(subscriber, alice.participant.id, `viewer ${CAPACITY + index} on B after the relay dropped`);
    }

    // Node B dies. A viewer that was on it subscribes again (as its SDK does when its connection
    // fails, retrying media_unavailable until the room found B dead): once A has room (one of its
    // viewers leaves), it is placed there and receives Alice directly.
    process.kill(stack.mediaNodePid(1) as number, 'SIGKILL');
    const [leaving, ...stayingOnA] = onA as [(typeof onA)[0], ...typeof onA];
    await leave(leaving.participant);
    const [moved] = onB as [(typeof onB)[0]];
    const again = peers.track(new TestSubscriber());
    await waitFor(
      () =>
        subscribe(moved.participant, again, [alice.participant.id]).then(
          () => true,
          () => undefined,
        ),
      { timeoutMs: 30_000, intervalMs: 1_000, message: 'the viewer from B subscribed again' },
    );
    await receives(again, [alice.participant.id], 'the viewer placed again on A');
    expect(await metricValue(nodeA, 'truegather_subscribers')).toBe(CAPACITY - 1);

    // A's publisher and viewers went on as if nothing happened: media kept coming, and they heard of
    // no publisher leaving, no error, no renegotiation.
    for (const [index, { subscriber }] of stayingOnA.entries()) {
      await keepsReceiving(subscriber, alice.participant.id, `viewer ${index + 2} on A after B died`);
    }
    for (const { participant, from } of marks) expect(trouble(participant.frames.slice(from))).toEqual([]);
  }, 240_000);
});

/** The relay senders node A opened for the room, in order (as the origin, it logs each with its id). */
function relaySenderIds(roomId: string): string[] {
  return logs.flatMap((line) => {
    if (!line.startsWith('[media-node-1] ')) return [];
    try {
      const parsed = JSON.parse(line.slice(line.indexOf('{'))) as {
        message?: string;
        relay_id?: string;
        room_id?: string;
      };
      return parsed.message === 'relay sender opened' && parsed.room_id === roomId && parsed.relay_id
        ? [parsed.relay_id]
        : [];
    } catch {
      return [];
    }
  });
}
