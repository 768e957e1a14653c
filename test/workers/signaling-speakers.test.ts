import { describe, expect, it } from 'vitest';
import { newId } from '../../shared/src/ids.ts';
import { ACTIVE_SPEAKERS_MIN_INTERVAL_MS, type ActiveSpeaker } from '../../shared/src/signaling.ts';
import { ActiveSpeakersRelay } from '../../workers/src/room/active-speakers.ts';
import { FakeMediaNode } from './support/fake-media-node.ts';
import { createAdminRoom, joinMember, roomStub, tokenWithGrants, useMediaNode } from './support/rooms.ts';
import { SignalingSocket } from './support/signaling-socket.ts';

const speaker = (participantId: string, level = 0.1): ActiveSpeaker => ({ participant_id: participantId, level });

function reportSpeakers(roomId: string, speakers: ActiveSpeaker[]): Promise<void> {
  return roomStub(roomId).handleMediaEvent({ type: 'active_speakers', room_id: roomId, speakers });
}

describe('active_speakers', () => {
  it('goes to everyone (joiners at once), never names a hidden, departed or muted participant, only on a change', async () => {
    const room = await createAdminRoom();
    useMediaNode(room.id, new FakeMediaNode());
    const [ann, bob] = [await joinMember(room.id, 'Ann'), await joinMember(room.id, 'Bob')];
    const recorder = await tokenWithGrants(room.id, { publish: true, subscribe: true, admin: false, hidden: true });
    const recorderSocket = await SignalingSocket.open(room.id, recorder.token);
    await recorderSocket.expectReply('join_room', { room_id: room.id, display: 'granted' }, 'joined');
    const gone = newId();

    await reportSpeakers(room.id, [
      speaker(recorder.participantId, 0.9),
      speaker(bob.participantId, 0.5),
      speaker(gone, 0.4),
      speaker(ann.participantId, 0.2),
    ]);
    const expected = { speakers: [speaker(bob.participantId, 0.5), speaker(ann.participantId, 0.2)] };
    for (const socket of [ann.socket, bob.socket, recorderSocket]) {
      expect((await socket.nextOf('active_speakers')).payload).toEqual(expected);
    }
    // Someone who joins now is told at once, not at the next change.
    const late = await joinMember(room.id, 'Late');
    expect((await late.socket.nextOf('active_speakers')).payload).toEqual(expected);

    // The same visible speakers (only the hidden one moved): nothing is sent. Then Ann mutes herself,
    // and a report that crossed her mute still leaves her out.
    await reportSpeakers(room.id, [
      speaker(bob.participantId, 0.6),
      speaker(ann.participantId, 0.1),
      speaker(recorder.participantId),
    ]);
    await ann.socket.expectReply('mute', { kind: 'audio', muted: true }, 'ack');
    await reportSpeakers(room.id, [speaker(ann.participantId, 0.7), speaker(bob.participantId, 0.6)]);
    const next = await bob.socket.nextOf('active_speakers');
    expect(next.payload).toEqual({ speakers: [speaker(bob.participantId, 0.6)] });
    expect(bob.socket.untaken('active_speakers')).toEqual([]);

    await ann.socket.expectReply('mute', { kind: 'audio', muted: false }, 'ack');
    await reportSpeakers(room.id, []);
    expect((await bob.socket.nextOf('active_speakers')).payload).toEqual({ speakers: [] });
    for (const socket of [ann.socket, bob.socket, late.socket, recorderSocket]) socket.close();
  });
});

describe('ActiveSpeakersRelay', () => {
  /** A relay on a hand-set clock; `sent` resolves each broadcast's speakers in turn. */
  function relay() {
    let now = 1_000;
    const frames: { at: number; ids: string[] }[] = [];
    const waiters: (() => void)[] = [];
    const instance = new ActiveSpeakersRelay({
      visible: (speakers) => [...speakers],
      sendTo: () => undefined,
      broadcast: (text) => {
        const ids = (JSON.parse(text) as { payload: { speakers: ActiveSpeaker[] } }).payload.speakers.map(
          (entry) => entry.participant_id,
        );
        frames.push({ at: now, ids });
        for (const wake of waiters.splice(0)) wake();
      },
      now: () => now,
    });
    const nextFrame = (count: number) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`frame ${count} not sent`)), 2_000);
        const check = () => {
          if (frames.length >= count) {
            clearTimeout(timer);
            resolve();
          } else waiters.push(check);
        };
        check();
      });
    return { instance, frames, nextFrame, advance: (ms: number) => (now += ms) };
  }

  it('sends at once after a quiet interval, holds a report within 250 ms, and sends only the latest', async () => {
    const { instance, frames, nextFrame, advance } = relay();
    instance.report([speaker('a')]);
    expect(frames).toEqual([{ at: 1_000, ids: ['a'] }]);

    // Two reports within the interval: the first is superseded before the interval ends.
    advance(50);
    instance.report([speaker('b')]);
    instance.report([speaker('b'), speaker('a')]);
    expect(frames).toHaveLength(1);
    advance(ACTIVE_SPEAKERS_MIN_INTERVAL_MS);
    await nextFrame(2);
    expect(frames[1]!.ids).toEqual(['b', 'a']);
    expect(frames[1]!.at - frames[0]!.at).toBeGreaterThanOrEqual(ACTIVE_SPEAKERS_MIN_INTERVAL_MS);

    // After the interval, a change goes out at once; no change sends nothing.
    advance(ACTIVE_SPEAKERS_MIN_INTERVAL_MS);
    instance.report([speaker('b', 0.9), speaker('a', 0.8)]);
    expect(frames).toHaveLength(2);
    instance.report([speaker('a')]);
    expect(frames.map((frame) => frame.ids)).toEqual([['a'], ['b', 'a'], ['a']]);
    await nextFrame(3);
    instance.close();
  });
});
