import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectReply, SignalingError } from '../../client/src/signaling-connection.ts';
import type { RunningStack } from '../../scripts/stack.ts';
import type { Room } from '../../shared/src/rest.ts';
import type { ServerFrame, ServerFrameType } from '../../shared/src/signaling.ts';
import { createRoom, joinParticipant, startLoopbackStack } from '../support/e2e-stack.ts';
import { TestPublisher, TestSubscriber, waitFor } from '../support/werift-peers.ts';

/**
 * A call through the real stack — `wrangler dev` and a real media node — with werift peers that speak
 * only the documented REST calls and signaling frames.
 */

let stack: RunningStack;

beforeAll(async () => {
  stack = await startLoopbackStack();
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

/** A participant plus a way to wait for its next event of a type. */
async function participant(room: Room, display: string) {
  const joined = await joinParticipant(stack, room.id, display);
  const nextEvent = <T extends ServerFrameType>(type: T, timeoutMs = 10_000) =>
    waitFor(() => joined.frames.find((frame) => frame.type === type) as Extract<ServerFrame, { type: T }> | undefined, {
      timeoutMs,
      message: type,
    });
  return { ...joined, nextEvent };
}

describe('end-to-end call through wrangler dev and the media node', () => {
  it('a werift publisher reaches a werift subscriber; leaving renegotiates the subscriber', async () => {
    const room = await createRoom(stack);
    const alice = await participant(room, 'Alice');
    const bob = await participant(room, 'Bob');
    expect((await alice.nextEvent('participant_joined')).payload.participant).toEqual({ id: bob.id, display: 'Bob' });

    const publisher = await TestPublisher.create();
    const answer = expectReply(
      await alice.connection.request('publish_offer', { sdp: await publisher.createOffer() }),
      'publish_answer',
    );
    await publisher.setAnswer(answer.payload.sdp);

    const announced = await bob.nextEvent('publisher_joined');
    expect(announced.payload.publisher.id).toBe(alice.id);
    expect(announced.payload.publisher.streams.map((stream) => stream.kind).sort()).toEqual(['audio', 'video']);

    const subscriber = new TestSubscriber();
    const offer = expectReply(await bob.connection.request('subscribe', { feeds: [alice.id] }), 'subscribe_offer');
    expectReply(
      await bob.connection.request('subscribe_answer', { sdp: await subscriber.answer(offer.payload.sdp) }),
      'ack',
    );
    expect(subscriber.feeds()).toEqual([alice.id]);

    await waitFor(() => subscriber.packets('video') > 0 && subscriber.packets('audio') > 0, {
      timeoutMs: 15_000,
      message: 'first packets',
    });
    // A fixed five-second measuring window: the figure asserted is a rate.
    const start = { video: subscriber.packets('video'), audio: subscriber.packets('audio'), at: performance.now() };
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const seconds = (performance.now() - start.at) / 1000;
    const videoRate = (subscriber.packets('video') - start.video) / seconds;
    const audioRate = (subscriber.packets('audio') - start.audio) / seconds;
    expect(videoRate).toBeGreaterThanOrEqual(25);
    expect(audioRate).toBeGreaterThanOrEqual(25);

    expectReply(await alice.connection.request('leave', {}), 'ack');
    expect((await bob.nextEvent('publisher_left')).payload.publisher_id).toBe(alice.id);
    const renegotiation = await bob.nextEvent('subscribe_offer');
    expectReply(
      await bob.connection.request('subscribe_answer', { sdp: await subscriber.answer(renegotiation.payload.sdp) }),
      'ack',
    );
    expect(subscriber.feeds()).toEqual([]);
    expect((await bob.nextEvent('participant_left')).payload.participant.id).toBe(alice.id);

    await Promise.all([publisher.close(), subscriber.close()]);
    bob.connection.close();
  }, 90_000);

  it('a bad SDP is an error frame with code bad_sdp, and the socket stays up', async () => {
    const room = await createRoom(stack, 'bad sdp');
    const carol = await participant(room, 'Carol');
    const failure = await carol.connection
      .request('publish_offer', { sdp: 'v=0\r\nthis is not a session description\r\n' })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(SignalingError);
    expect((failure as SignalingError).code).toBe('bad_sdp');
    expect(carol.connection.state).toBe('open');
    expectReply(await carol.connection.request('leave', {}), 'ack');
  }, 30_000);
});
