import { env, evictDurableObject, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ServerFrame } from '../../shared/src/signaling.ts';
import { edgeConfig } from '../../workers/src/config.ts';
import type { RoomCoordinator } from '../../workers/src/room/room-coordinator.ts';
import { PING_TIMEOUT_MS, ROOM_REFRESH_MARGIN_MS } from '../../workers/src/room/room-handle.ts';
import { RoomState } from '../../workers/src/room/room-state.ts';
import { roomRepository } from '../../workers/src/store/index.ts';
import { eventually, roundTrip } from './support/barrier.ts';
import { FakeMediaNode, fakeSdp } from './support/fake-media-node.ts';
import {
  createRoom,
  joinMember,
  publishReady,
  restJoin,
  roomStub,
  storedParticipants,
  useMediaNode,
} from './support/rooms.ts';
import { SignalingSocket, upgrade } from './support/signaling-socket.ts';
import { storedRoom } from './support/stored-room.ts';

const STREAMS = [{ kind: 'video' as const, mid: '0' }];
const config = edgeConfig(env);

afterEach(() => {
  vi.useRealTimers();
});

/** Moves the clock of the test and of the Worker and its objects (one isolate) forward. */
function advanceClock(ms: number): void {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(Date.now() + ms);
}

/** Resolves once the room's coordinator has put the participant into its reconnect grace period. */
function inGrace(roomId: string, participantId: string): Promise<number> {
  return eventually(() =>
    runInDurableObject(roomStub(roomId), (_instance: RoomCoordinator, state) => {
      return new RoomState(state.storage.kv, () => {}).participant(participantId)?.graceUntil ?? undefined;
    }),
  );
}

describe('reconnecting with the same token', () => {
  it('replaces the old socket (4000 "replaced") and keeps identity and subscriptions; nobody sees a leave', async () => {
    const room = await createRoom();
    const fake = new FakeMediaNode();
    const ann = await joinMember(room.id, 'Ann');
    const bob = await joinMember(room.id, 'Bob');
    const cara = await joinMember(room.id, 'Cara');
    useMediaNode(room.id, fake);
    await publishReady(room.id, bob, STREAMS, [ann.socket, cara.socket]);
    await ann.socket.expectReply('subscribe', { feeds: [bob.participantId] }, 'subscribe_offer');

    const again = await SignalingSocket.open(room.id, ann.token, 'subprotocol');
    expect(await ann.socket.closed).toEqual({ code: 4000, reason: 'replaced' });
    const joined = await again.expectReply('join_room', { room_id: room.id, display: 'Ann' }, 'joined');
    expect(joined.payload.participant_id).toBe(ann.participantId);
    expect(joined.payload.publishers.map((publisher) => publisher.id)).toEqual([bob.participantId]);

    await roundTrip(bob.socket);
    const aboutAnn = (frame: ServerFrame) =>
      (frame.type === 'participant_left' || frame.type === 'participant_joined') &&
      frame.payload.participant.id === ann.participantId;
    expect(bob.socket.untaken().filter(aboutAnn)).toEqual([]);

    // The subscription survived: subscribing to one more feed asks for both.
    await publishReady(room.id, cara, STREAMS, [again, bob.socket]);
    await again.expectReply('subscribe', { feeds: [cara.participantId] }, 'subscribe_offer');
    expect(fake.callsOf('subscribe').at(-1)?.detail).toEqual([bob.participantId, cara.participantId]);
    expect(await storedParticipants(room.id)).toBe(3);
    for (const socket of [again, bob.socket, cara.socket]) socket.close();
  });
});

describe('reconnect grace period', () => {
  it('keeps a dropped participant for the grace period, then removes it everywhere', async () => {
    const room = await createRoom();
    const fake = new FakeMediaNode();
    const ann = await joinMember(room.id, 'Ann');
    const bob = await joinMember(room.id, 'Bob');
    useMediaNode(room.id, fake);
    await publishReady(room.id, ann, STREAMS, [bob.socket]);
    await bob.socket.expectReply('subscribe', { feeds: [ann.participantId] }, 'subscribe_offer');

    ann.socket.close(1001, 'network gone');
    const graceUntil = await inGrace(room.id, ann.participantId);
    expect(graceUntil - Date.now()).toBeLessThanOrEqual(config.reconnectGraceSeconds * 1000);
    // Within the grace period an alarm changes nothing.
    await runDurableObjectAlarm(roomStub(room.id));
    await roundTrip(bob.socket);
    expect(bob.socket.untaken('participant_left')).toEqual([]);
    expect(await storedParticipants(room.id)).toBe(2);

    advanceClock(config.reconnectGraceSeconds * 1000 + 1);
    expect(await runDurableObjectAlarm(roomStub(room.id))).toBe(true);
    expect((await bob.socket.nextOf('publisher_left')).payload.publisher_id).toBe(ann.participantId);
    expect((await bob.socket.nextOf('participant_left')).payload.participant).toEqual({
      id: ann.participantId,
      display: 'Ann',
    });
    // The media node is told; it renegotiates Bob's subscription by itself (a subscriber_offer event).
    expect(fake.callsOf('unpublish').map((call) => call.participantId)).toEqual([ann.participantId]);
    expect(await storedParticipants(room.id)).toBe(1);
    bob.socket.close();
  });

  it('resumes a participant who reconnects within the grace period', async () => {
    const room = await createRoom();
    const ann = await joinMember(room.id, 'Ann');
    const bob = await joinMember(room.id, 'Bob');
    ann.socket.close(1001, 'dropped');
    await inGrace(room.id, ann.participantId);

    const back = await SignalingSocket.open(room.id, ann.token);
    const joined = await back.expectReply('join_room', { room_id: room.id, display: 'Ann' }, 'joined');
    expect(joined.payload.participants).toEqual([{ id: bob.participantId, display: 'Bob' }]);
    advanceClock(config.reconnectGraceSeconds * 1000 + 1);
    await runDurableObjectAlarm(roomStub(room.id));
    await roundTrip(bob.socket);
    expect(bob.socket.untaken('participant_left')).toEqual([]);
    expect(bob.socket.untaken('participant_joined')).toEqual([]);
    expect(await storedParticipants(room.id)).toBe(2);
    for (const socket of [back, bob.socket]) socket.close();
  });
});

describe('reaping dead connections', () => {
  it('closes a socket that never joins, and one whose pings stopped; a quiet socket without pings stays', async () => {
    const room = await createRoom();
    const quiet = await joinMember(room.id, 'Quiet');
    const pinger = await joinMember(room.id, 'Pinger');
    pinger.socket.sendRaw('ping');
    await pinger.socket.nextRaw('pong');
    const idle = await SignalingSocket.open(room.id, (await restJoin(room.id, 'Idle')).token);

    advanceClock(PING_TIMEOUT_MS + 1000);
    await runDurableObjectAlarm(roomStub(room.id));
    expect(await idle.closed).toEqual({ code: 1008, reason: 'join timeout' });
    expect(await pinger.socket.closed).toEqual({ code: 1001, reason: 'ping timeout' });
    // The silent pinger is treated like a drop: it is in its grace period, not gone yet.
    await inGrace(room.id, pinger.participantId);
    await roundTrip(quiet.socket);
    expect(quiet.socket.isClosed).toBe(false);
    quiet.socket.close();
  });
});

describe('hibernation', () => {
  it('keeps sessions intact across an eviction of the object', async () => {
    const room = await createRoom();
    const fake = new FakeMediaNode();
    const ann = await joinMember(room.id, 'Ann');
    const bob = await joinMember(room.id, 'Bob');
    useMediaNode(room.id, fake);
    await publishReady(room.id, bob, STREAMS, [ann.socket]);
    await ann.socket.expectReply('subscribe', { feeds: [bob.participantId] }, 'subscribe_offer');

    const stub = roomStub(room.id);
    await evictDurableObject(stub);
    // A new instance: nothing in memory survived, only storage and the sockets.
    ann.socket.sendRaw('ping');
    expect(await ann.socket.nextRaw('pong')).toBe('pong');

    await ann.socket.expectReply('subscribe_answer', { sdp: fakeSdp('answer') }, 'ack');
    const cara = await joinMember(room.id, 'Cara');
    const caraJoined = cara.socket.received[0];
    expect(caraJoined).toMatchObject({
      type: 'joined',
      payload: {
        publishers: [{ id: bob.participantId, display: 'Bob', streams: STREAMS }],
        participants: [
          { id: ann.participantId, display: 'Ann' },
          { id: bob.participantId, display: 'Bob' },
        ],
      },
    });
    for (const member of [ann, bob]) {
      await member.socket.nextOf('participant_joined', (frame) => frame.payload.participant.id === cara.participantId);
    }
    await bob.socket.expectReply('leave', {}, 'ack');
    expect(await bob.socket.closed).toMatchObject({ code: 1000 });
    expect((await ann.socket.nextOf('publisher_left')).payload.publisher_id).toBe(bob.participantId);
    expect((await ann.socket.nextOf('participant_left')).payload.participant.id).toBe(bob.participantId);
    for (const socket of [ann.socket, cara.socket]) socket.close();
  });
});

describe('room expiry', () => {
  it('ends a room everybody left: no live state in the store, nothing in storage but the leave markers until their tokens expire', async () => {
    const room = await createRoom();
    const ann = await joinMember(room.id, 'Ann');
    const bob = await joinMember(room.id, 'Bob');
    useMediaNode(room.id, new FakeMediaNode());
    await publishReady(room.id, bob, STREAMS, [ann.socket]);
    await expect.poll(async () => (await storedRoom(room.id)).participants.length).toBe(2);
    expect((await storedRoom(room.id)).publishers.map((publisher) => publisher.id)).toEqual([bob.participantId]);

    // Ann leaves (final: remembered), Bob's socket drops and his grace period ends (not a leave).
    await ann.socket.expectReply('leave', {}, 'ack');
    await ann.socket.closed;
    bob.socket.close();
    await inGrace(room.id, bob.participantId);
    advanceClock(config.reconnectGraceSeconds * 1000 + 1000);
    const stub = roomStub(room.id);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await runDurableObjectAlarm(stub)).toBe(true);

    const storage = () =>
      runInDurableObject(stub, async (_instance: RoomCoordinator, state) => ({
        keys: [...state.storage.kv.list()].map(([key]) => key),
        alarm: await state.storage.getAlarm(),
      }));
    const ended = await storage();
    expect(ended.keys).toEqual([`left:${ann.participantId}`]);
    // The room record lives its TTL (it can be joined again); its live state is gone from the store.
    expect(await storedRoom(room.id)).toEqual({ room: true, participants: [], publishers: [], mirrorKeys: 0 });

    // The marker outlived the wipe: Ann's token, issued before she left, cannot come back.
    const refused = await upgrade(room.id, ann.token);
    expect(refused.status).toBe(401);
    // Once every token issued before the leave has expired, the alarm forgets it too.
    expect(ended.alarm).toBeGreaterThan(Date.now());
    advanceClock(config.jwt.expirySeconds * 1000);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await storage()).toEqual({ keys: [], alarm: null });
  });

  it('keeps a room in use alive in the store, and closes it once the store has dropped it', async () => {
    const room = await createRoom();
    const ann = await joinMember(room.id, 'Ann');
    const stub = roomStub(room.id);
    // Just before the store would expire the room, the alarm touches it.
    advanceClock(config.roomTtlSeconds * 1000 - ROOM_REFRESH_MARGIN_MS / 2);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(ann.socket.isClosed).toBe(false);
    expect(await roomRepository(env, config).getRoom(room.id)).not.toBeNull();

    await roomRepository(env, config).deleteRoom(room.id);
    advanceClock(config.roomTtlSeconds * 1000);
    await runDurableObjectAlarm(stub);
    expect(await ann.socket.closed).toEqual({ code: 1000, reason: 'room closed' });
    // The room is over: none of its keys in the store, nothing in its storage (nobody left on purpose).
    expect(await storedRoom(room.id)).toEqual({ room: false, participants: [], publishers: [], mirrorKeys: 0 });
    const left = await runInDurableObject(stub, async (_instance: RoomCoordinator, state) => ({
      keys: [...state.storage.kv.list()].length,
      alarm: await state.storage.getAlarm(),
    }));
    expect(left).toEqual({ keys: 0, alarm: null });
  });
});
