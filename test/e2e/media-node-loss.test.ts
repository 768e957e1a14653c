import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectReply } from '../../client/src/signaling-connection.ts';
import type { RunningStack } from '../../scripts/stack.ts';
import type { ServerFrame, ServerFrameType } from '../../shared/src/signaling.ts';
import { createRoom, joinParticipant, startLoopbackStack } from '../support/e2e-stack.ts';
import { PeerSet, TestPublisher, TestSubscriber, waitFor } from '../support/werift-peers.ts';

/**
 * A media node killed mid-call (#12 item 4), through the real stack as `npm start` runs it: the
 * launcher supervises the node and starts it again, the room notices the loss within 10 s and tells
 * everyone, and publishing and subscribing again work on the new node. Nobody leaves the room.
 */

let stack: RunningStack;
const peers = new PeerSet();

beforeAll(async () => {
  stack = await startLoopbackStack({}, { superviseMediaNode: true });
}, 120_000);

afterAll(async () => {
  await peers.closeAll();
  await stack?.stop();
});

type Joined = Awaited<ReturnType<typeof joinParticipant>>;

/** The first frame of `type` at or after index `from` of the participant's frames that matches. */
function nextFrame<T extends ServerFrameType>(
  participant: Joined,
  type: T,
  from: number,
  {
    timeoutMs = 10_000,
    matches = () => true,
  }: { timeoutMs?: number; matches?: (frame: Extract<ServerFrame, { type: T }>) => boolean } = {},
) {
  return waitFor(
    () =>
      participant.frames
        .slice(from)
        .find((frame): frame is Extract<ServerFrame, { type: T }> => frame.type === type && matches(frame as never)),
    { timeoutMs, message: type },
  );
}

/** Publishes from a new werift peer; resolves once the answer is applied. */
async function publish(participant: Joined): Promise<TestPublisher> {
  const publisher = peers.track(await TestPublisher.create());
  const answer = expectReply(
    await participant.connection.request('publish_offer', { sdp: await publisher.createOffer() }),
    'publish_answer',
  );
  await publisher.setAnswer(answer.payload.sdp);
  return publisher;
}

/** Subscribes to `feed` from a new werift peer and waits for video from it. */
async function receive(participant: Joined, feed: string): Promise<TestSubscriber> {
  const subscriber = peers.track(new TestSubscriber());
  const offer = expectReply(await participant.connection.request('subscribe', { feeds: [feed] }), 'subscribe_offer');
  expectReply(
    await participant.connection.request('subscribe_answer', { sdp: await subscriber.answer(offer.payload.sdp) }),
    'ack',
  );
  await waitFor(() => subscriber.packets('video') > 0, { timeoutMs: 20_000, message: 'video from the publisher' });
  return subscriber;
}

describe('a media node killed mid-call', () => {
  it('everyone hears publisher_left within 10 s; the node comes back and the call resumes on it', async () => {
    const room = await createRoom(stack, 'node loss');
    const alice = await joinParticipant(stack, room.id, 'Alice');
    const bob = await joinParticipant(stack, room.id, 'Bob');
    await publish(alice);
    await nextFrame(bob, 'publisher_joined', 0);
    await receive(bob, alice.id);

    const killedPid = stack.mediaNodePid();
    expect(killedPid).toBeDefined();
    const [aliceMark, bobMark] = [alice.frames.length, bob.frames.length];
    const killedAt = performance.now();
    process.kill(killedPid as number, 'SIGKILL');

    // Both are told, the publisher too (its cue to publish again), within 10 s of the kill.
    const isAlice = {
      matches: (frame: { payload: { publisher_id: string } }) => frame.payload.publisher_id === alice.id,
    };
    await Promise.all([
      nextFrame(bob, 'publisher_left', bobMark, isAlice),
      nextFrame(alice, 'publisher_left', aliceMark, isAlice),
    ]);
    expect(performance.now() - killedAt).toBeLessThan(10_000);

    // The launcher starts the node again, as an orchestrator would.
    await waitFor(
      async () => {
        const pid = stack.mediaNodePid();
        if (pid === undefined || pid === killedPid) return false;
        return (await fetch(`${stack.mediaUrl}/health`).catch(() => undefined))?.ok;
      },
      { timeoutMs: 20_000, message: 'the media node started again' },
    );

    // Publishing again and subscribing again work, on the new node; media flows.
    await publish(alice);
    await nextFrame(bob, 'publisher_joined', bobMark);
    await receive(bob, alice.id);

    // Nobody left the room.
    for (const participant of [alice, bob]) {
      expect(participant.frames.filter((frame) => frame.type === 'participant_left')).toEqual([]);
    }
    alice.connection.close();
    bob.connection.close();
  }, 90_000);
});
