import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectReply, SignalingError } from '../../client/src/signaling-connection.ts';
import type { RunningStack } from '../../scripts/stack.ts';
import type { ServerFrame, ServerFrameType } from '../../shared/src/signaling.ts';
import { createRoom, joinParticipant, startLoopbackStack } from '../support/e2e-stack.ts';
import { type MediaKind, TestPublisher, TestSubscriber, waitFor } from '../support/werift-peers.ts';

/**
 * Muting through the real stack: `wrangler dev`, a real media node, werift peers. A muted kind stops
 * at the viewers (the node forwards none of it) while the other kind keeps flowing, and the lock
 * rules hold for an admin's mute.
 */

let stack: RunningStack;

beforeAll(async () => {
  stack = await startLoopbackStack();
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

/**
 * Packets of `stopped` a subscriber receives while `flowing` advances by `window` packets: the other
 * kind's packets are the clock (no timer). Packets in flight at the mute are let through first.
 */
async function packetsWhileOtherFlows(subscriber: TestSubscriber, stopped: MediaKind, flowing: MediaKind) {
  const settle = subscriber.packets(flowing) + 25;
  await waitFor(() => subscriber.packets(flowing) >= settle, { timeoutMs: 10_000, message: `${flowing} to settle` });
  const before = subscriber.packets(stopped);
  const until = subscriber.packets(flowing) + 100;
  await waitFor(() => subscriber.packets(flowing) >= until, { timeoutMs: 15_000, message: `${flowing} to flow` });
  return subscriber.packets(stopped) - before;
}

describe('mute through wrangler dev and the media node', () => {
  it('self-mute and admin mute stop that kind at the viewer while the other flows; the lock holds', async () => {
    const room = await createRoom(stack, 'mute');
    const alice = await joinParticipant(stack, room.id, 'Alice');
    const bob = await joinParticipant(stack, room.id, 'Bob');
    const nextEvent = <T extends ServerFrameType>(frames: ServerFrame[], type: T, where: (f: ServerFrame) => boolean) =>
      waitFor(() => frames.find((frame) => frame.type === type && where(frame)) as Extract<ServerFrame, { type: T }>, {
        message: type,
      });

    const publisher = await TestPublisher.create();
    const answer = expectReply(
      await alice.connection.request('publish_offer', { sdp: await publisher.createOffer() }),
      'publish_answer',
    );
    await publisher.setAnswer(answer.payload.sdp);
    await nextEvent(bob.frames, 'publisher_joined', () => true);
    const subscriber = new TestSubscriber();
    const offer = expectReply(await bob.connection.request('subscribe', { feeds: [alice.id] }), 'subscribe_offer');
    expectReply(
      await bob.connection.request('subscribe_answer', { sdp: await subscriber.answer(offer.payload.sdp) }),
      'ack',
    );
    await waitFor(() => subscriber.packets('video') > 0 && subscriber.packets('audio') > 0, {
      timeoutMs: 15_000,
      message: 'first packets',
    });

    // Alice mutes her video: Bob receives no video while audio flows; both hear track_muted.
    expectReply(await alice.connection.request('mute', { kind: 'video', muted: true }), 'ack');
    const selfMuted = (frame: ServerFrame) =>
      frame.type === 'track_muted' &&
      frame.payload.kind === 'video' &&
      frame.payload.muted &&
      frame.payload.by === 'self';
    await nextEvent(bob.frames, 'track_muted', selfMuted);
    await nextEvent(alice.frames, 'track_muted', selfMuted);
    expect(await packetsWhileOtherFlows(subscriber, 'video', 'audio')).toBe(0);
    const sentVideo = publisher.sentPackets.video;
    await waitFor(() => publisher.sentPackets.video > sentVideo, { message: 'the publisher to keep sending' });

    // Unmuted: video comes back (with a keyframe the node asked for).
    expectReply(await alice.connection.request('mute', { kind: 'video', muted: false }), 'ack');
    const resumedFrom = subscriber.packets('video');
    await waitFor(() => subscriber.packets('video') > resumedFrom + 10, { timeoutMs: 15_000, message: 'video again' });

    // An admin mutes her audio: a lock. Audio stops while video flows, and she cannot lift it.
    const mute = (muted: boolean) =>
      fetch(`${stack.edgeUrl}/api/v1/rooms/${room.id}/participants/${alice.id}/mute`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${room.admin_token}` },
        body: JSON.stringify({ kind: 'audio', muted }),
      });
    expect((await mute(true)).status).toBe(200);
    const adminMuted = (frame: ServerFrame) =>
      frame.type === 'track_muted' && frame.payload.kind === 'audio' && frame.payload.by === 'admin';
    await nextEvent(alice.frames, 'track_muted', adminMuted);
    expect(await packetsWhileOtherFlows(subscriber, 'audio', 'video')).toBe(0);
    const refused = await alice.connection.request('mute', { kind: 'audio', muted: false }).catch((error) => error);
    expect(refused).toBeInstanceOf(SignalingError);
    expect((refused as SignalingError).code).toBe('forbidden');

    // Lifting the lock does not unmute her: still no audio, until she unmutes herself.
    expect((await mute(false)).status).toBe(200);
    expect(await packetsWhileOtherFlows(subscriber, 'audio', 'video')).toBe(0);
    expectReply(await alice.connection.request('mute', { kind: 'audio', muted: false }), 'ack');
    const audioFrom = subscriber.packets('audio');
    await waitFor(() => subscriber.packets('audio') > audioFrom + 10, { timeoutMs: 15_000, message: 'audio again' });

    await Promise.all([publisher.close(), subscriber.close()]);
    for (const participant of [alice, bob]) participant.connection.close();
  }, 120_000);
});
