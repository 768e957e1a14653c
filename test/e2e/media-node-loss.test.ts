import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningStack } from '../../scripts/stack.ts';
import type { ServerFrame, ServerFrameType } from '../../shared/src/signaling.ts';
import {
  createRoom,
  type JoinedParticipant,
  joinParticipant,
  publishFrom,
  receiveFrom,
  startLoopbackStack,
} from '../support/e2e-stack.ts';
import { PeerSet, waitFor } from '../support/werift-peers.ts';

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

/** The first frame of `type` at or after index `from` of the participant's frames that matches. */
function nextFrame<T extends ServerFrameType>(
  participant: JoinedParticipant,
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

describe('a media node killed mid-call', () => {
  it('everyone hears publisher_left within 10 s; the node comes back and the call resumes on it', async () => {
    const room = await createRoom(stack, 'node loss');
    const alice = await joinParticipant(stack, room.id, 'Alice');
    const bob = await joinParticipant(stack, room.id, 'Bob');
    peers.track(await publishFrom(alice));
    await nextFrame(bob, 'publisher_joined', 0);
    peers.track(await receiveFrom(bob, alice.id));

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
    peers.track(await publishFrom(alice));
    await nextFrame(bob, 'publisher_joined', bobMark);
    peers.track(await receiveFrom(bob, alice.id));

    // Nobody left the room.
    for (const participant of [alice, bob]) {
      expect(participant.frames.filter((frame) => frame.type === 'participant_left')).toEqual([]);
    }
    alice.connection.close();
    bob.connection.close();
  }, 90_000);
});
