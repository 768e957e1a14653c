import { SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import type { MediaEvent } from '../../shared/src/media-control.ts';
import { eventually, roundTrip } from './support/barrier.ts';
import { FakeMediaNode, fakeSdp } from './support/fake-media-node.ts';
import {
  createRoom,
  joinMember,
  publishReady,
  restJoin,
  roomStub,
  storedParticipants,
  tokenWithGrants,
  useMediaNode,
} from './support/rooms.ts';
import { BASE_URL, SignalingSocket } from './support/signaling-socket.ts';

const STREAMS = [
  { kind: 'audio' as const, mid: '0' },
  { kind: 'video' as const, mid: '1' },
];

/** A media event without its room_id (distributed over the union, so each variant keeps its fields). */
type RoomlessEvent = MediaEvent extends infer E ? (E extends MediaEvent ? Omit<E, 'room_id'> : never) : never;

function mediaEvent(roomId: string, event: RoomlessEvent): Promise<void> {
  return roomStub(roomId).handleMediaEvent({ ...event, room_id: roomId } as MediaEvent);
}

describe('joining and presence', () => {
  it('answers join_room with joined (request_id echoed) and tells the others, in join order', async () => {
    const room = await createRoom();
    const ann = await restJoin(room.id, 'Ann');
    const annSocket = await SignalingSocket.open(room.id, ann.token);
    const joined = await annSocket.request('join_room', { room_id: room.id, display: 'Ann' });
    expect(joined).toMatchObject({
      type: 'joined',
      request_id: 'r1',
      payload: { participant_id: ann.participant_id, room_id: room.id, publishers: [], participants: [] },
    });
    expect(joined.type === 'joined' && Array.isArray(joined.payload.ice_servers)).toBe(true);

    const bob = await joinMember(room.id, 'Bob', 'subprotocol');
    const cara = await joinMember(room.id, 'Cara');
    const annEvents = [await annSocket.nextOf('participant_joined'), await annSocket.nextOf('participant_joined')];
    expect(annEvents.map((frame) => frame.payload.participant)).toEqual([
      { id: bob.participantId, display: 'Bob' },
      { id: cara.participantId, display: 'Cara' },
    ]);
    for (const event of annEvents) expect(event).not.toHaveProperty('request_id');
    expect((await bob.socket.nextOf('participant_joined')).payload.participant.id).toBe(cara.participantId);
    expect(await storedParticipants(room.id)).toBe(3);

    const dave = await restJoin(room.id, 'Dave');
    const daveSocket = await SignalingSocket.open(room.id, dave.token);
    const daveJoined = await daveSocket.expectReply('join_room', { room_id: room.id, display: 'Dave' }, 'joined');
    expect(daveJoined.payload.participants?.map((participant) => participant.display)).toEqual(['Ann', 'Bob', 'Cara']);
    for (const socket of [annSocket, bob.socket, cara.socket, daveSocket]) socket.close();
  });

  it('leave: ack with the request_id, then close 1000; the others hear participant_left; the store forgets', async () => {
    const room = await createRoom();
    const ann = await joinMember(room.id, 'Ann');
    const bob = await joinMember(room.id, 'Bob');
    const ack = await bob.socket.request('leave', {});
    expect(ack).toEqual({ type: 'ack', request_id: 'r2', payload: {} });
    expect(await bob.socket.closed).toEqual({ code: 1000, reason: 'left' });
    const left = await ann.socket.nextOf('participant_left');
    expect(left.payload.participant).toEqual({ id: bob.participantId, display: 'Bob' });
    // The store is updated after the others are told (a round trip to Upstash may still be under way).
    await eventually(async () => ((await storedParticipants(room.id)) === 1 ? true : undefined));
    ann.socket.close();
  });

  it('REST leave (leaveParticipant) has the effect of a leave frame', async () => {
    const room = await createRoom();
    const fake = new FakeMediaNode();
    const ann = await joinMember(room.id, 'Ann');
    const bob = await joinMember(room.id, 'Bob');
    useMediaNode(room.id, fake);
    await publishReady(room.id, bob, STREAMS, [ann.socket]);
    const response = await SELF.fetch(`${BASE_URL}/api/v1/rooms/${room.id}/leave`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bob.token}` },
    });
    expect(response.status).toBe(200);
    expect(await bob.socket.closed).toEqual({ code: 1000, reason: 'left' });
    expect((await ann.socket.nextOf('publisher_left')).payload.publisher_id).toBe(bob.participantId);
    expect((await ann.socket.nextOf('participant_left')).payload.participant.id).toBe(bob.participantId);
    expect(fake.callsOf('unpublish').map((call) => call.participantId)).toEqual([bob.participantId]);
    expect(await storedParticipants(room.id)).toBe(1);
    ann.socket.close();
  });
});

describe('publishing and subscribing through the media node', () => {
  it('runs the whole flow: publish, ready, subscribe, answer, trickle both ways, unsubscribe, unpublish', async () => {
    const room = await createRoom();
    const fake = new FakeMediaNode();
    const ann = await joinMember(room.id, 'Ann');
    const bob = await joinMember(room.id, 'Bob');
    useMediaNode(room.id, fake);

    const answer = await ann.socket.expectReply('publish_offer', { sdp: fakeSdp('ann offer') }, 'publish_answer');
    expect(answer.payload.sdp).toContain(`answer for ${ann.participantId}`);
    await mediaEvent(room.id, { type: 'publisher_ready', participant_id: ann.participantId, streams: STREAMS });
    const announced = await bob.socket.nextOf('publisher_joined');
    expect(announced.payload.publisher).toEqual({
      id: ann.participantId,
      display: 'Ann',
      streams: STREAMS.map((stream) => ({ ...stream, muted: false })),
    });
    await roundTrip(ann.socket);
    expect(ann.socket.untaken('publisher_joined')).toEqual([]);

    const candidate = { candidate: 'candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host', sdpMid: '0' };
    expect(await ann.socket.request('trickle_ice', { candidate })).toMatchObject({ type: 'ack' });
    expect(fake.candidates.at(-1)).toEqual({ participantId: ann.participantId, target: 'publisher', candidate });

    const offer = await bob.socket.expectReply('subscribe', { feeds: [ann.participantId] }, 'subscribe_offer');
    expect(offer.payload.sdp).toContain(ann.participantId);
    expect(fake.subscribers.get(`${room.id}/${bob.participantId}`)).toEqual([ann.participantId]);
    await bob.socket.expectReply('subscribe_answer', { sdp: fakeSdp('bob answer') }, 'ack');
    await bob.socket.expectReply('trickle_ice', { target: 'subscriber', candidate: null }, 'ack');

    const cara = await joinMember(room.id, 'Cara');
    const caraJoined = cara.socket.received[0];
    expect(caraJoined).toMatchObject({ type: 'joined', payload: { publishers: [announced.payload.publisher] } });

    await mediaEvent(room.id, {
      type: 'ice_candidate',
      participant_id: bob.participantId,
      target: 'subscriber',
      candidate,
    });
    const relayed = await bob.socket.nextOf('trickle_ice');
    expect(relayed).toEqual({ type: 'trickle_ice', payload: { target: 'subscriber', candidate } });

    await mediaEvent(room.id, {
      type: 'subscriber_offer',
      participant_id: bob.participantId,
      sdp: fakeSdp('node renegotiated'),
      feeds: [ann.participantId],
    });
    const unsolicited = await bob.socket.nextOf('subscribe_offer');
    expect(unsolicited.request_id).toBeUndefined();
    expect(unsolicited.payload.sdp).toContain('node renegotiated');

    const emptied = await bob.socket.expectReply('unsubscribe', { feeds: [ann.participantId] }, 'subscribe_offer');
    expect(emptied.payload.sdp).toContain('s=offer for');
    expect(fake.callsOf('subscribe').at(-1)?.detail).toEqual([]);

    await mediaEvent(room.id, { type: 'subscriber_closed', participant_id: bob.participantId, reason: 'ice failed' });
    const answerless = await bob.socket.request('subscribe_answer', { sdp: fakeSdp('late answer') });
    expect(answerless).toMatchObject({ type: 'error', payload: { code: 'bad_request' } });

    await ann.socket.expectReply('unpublish', {}, 'ack');
    for (const other of [bob, cara]) {
      expect((await other.socket.nextOf('publisher_left')).payload.publisher_id).toBe(ann.participantId);
    }
    expect(fake.callsOf('unpublish').map((call) => call.participantId)).toEqual([ann.participantId]);
    for (const member of [ann, bob, cara]) member.socket.close();
  });

  it('restarts the subscription when a client subscribes again to what it already receives', async () => {
    const room = await createRoom();
    const fake = new FakeMediaNode();
    const ann = await joinMember(room.id, 'Ann');
    const bob = await joinMember(room.id, 'Bob');
    useMediaNode(room.id, fake);
    await publishReady(room.id, ann, STREAMS, [bob.socket]);
    await bob.socket.expectReply('subscribe', { feeds: [ann.participantId] }, 'subscribe_offer');
    expect(fake.callsOf('closeSubscriber')).toEqual([]);

    // The client's receiving connection broke: it asks for the same feeds again.
    const restarted = await bob.socket.expectReply('subscribe', { feeds: [ann.participantId] }, 'subscribe_offer');
    expect(restarted.payload.sdp).toContain(ann.participantId);
    const calls = fake.calls.filter((call) => call.participantId === bob.participantId).map((call) => call.method);
    expect(calls.slice(-2)).toEqual(['closeSubscriber', 'subscribe']);
    expect(fake.subscribers.get(`${room.id}/${bob.participantId}`)).toEqual([ann.participantId]);
  });

  it('when a publisher ends, drops its feed and relays the media node renegotiation (no second offer)', async () => {
    const room = await createRoom();
    const fake = new FakeMediaNode();
    const [ann, bob, cara] = [
      await joinMember(room.id, 'Ann'),
      await joinMember(room.id, 'Bob'),
      await joinMember(room.id, 'Cara'),
    ];
    useMediaNode(room.id, fake);
    await publishReady(room.id, ann, STREAMS, [bob.socket, cara.socket]);
    await publishReady(room.id, bob, STREAMS, [ann.socket, cara.socket]);
    await cara.socket.expectReply('subscribe', { feeds: [ann.participantId, bob.participantId] }, 'subscribe_offer');
    const offersAsked = fake.callsOf('subscribe').length;

    await ann.socket.expectReply('unpublish', {}, 'ack');
    expect((await cara.socket.nextOf('publisher_left')).payload.publisher_id).toBe(ann.participantId);
    // The node renegotiates Cara by itself when Ann's tracks end; the coordinator relays that offer.
    await mediaEvent(room.id, {
      type: 'subscriber_offer',
      participant_id: cara.participantId,
      sdp: fakeSdp('without ann'),
      feeds: [bob.participantId],
    });
    const renegotiated = await cara.socket.nextOf('subscribe_offer', (frame) => frame.request_id === undefined);
    expect(renegotiated.payload.sdp).toContain('without ann');

    await mediaEvent(room.id, { type: 'publisher_closed', participant_id: bob.participantId, reason: 'ice failed' });
    expect((await cara.socket.nextOf('publisher_left')).payload.publisher_id).toBe(bob.participantId);
    expect((await ann.socket.nextOf('publisher_left')).payload.publisher_id).toBe(bob.participantId);
    await roundTrip(cara.socket);
    // No offer was asked of the node on the way: only its own renegotiation reaches Cara.
    expect(fake.callsOf('subscribe')).toHaveLength(offersAsked);
    expect(cara.socket.untaken('subscribe_offer').filter((frame) => frame.request_id === undefined)).toEqual([]);
    // Both feeds are gone from Cara's subscription: subscribing to Bob's again is refused as unknown.
    expect(await cara.socket.request('subscribe', { feeds: [bob.participantId] })).toMatchObject({
      type: 'error',
      payload: { code: 'unknown_feed' },
    });
    // The node closed Bob's publisher itself: the coordinator does not ask it again.
    expect(fake.callsOf('unpublish').map((call) => call.participantId)).toEqual([ann.participantId]);
    for (const member of [ann, bob, cara]) member.socket.close();
  });

  it('turns media node failures into error frames and keeps the socket open', async () => {
    const room = await createRoom(1);
    const ann = await joinMember(room.id, 'Ann');
    const bob = await joinMember(room.id, 'Bob');

    const unavailable = await ann.socket.request('publish_offer', { sdp: fakeSdp('offer') });
    expect(unavailable).toMatchObject({ type: 'error', request_id: 'r2', payload: { code: 'media_unavailable' } });

    const fake = new FakeMediaNode();
    useMediaNode(room.id, fake);
    fake.failNext('publish', 'bad_sdp');
    expect(await ann.socket.request('publish_offer', { sdp: fakeSdp('offer') })).toMatchObject({
      type: 'error',
      payload: { code: 'bad_sdp' },
    });
    // Failed offers released the only publisher slot: bob can take it, then ann finds the room full.
    await bob.socket.expectReply('publish_offer', { sdp: fakeSdp('bob offer') }, 'publish_answer');
    expect(await ann.socket.request('publish_offer', { sdp: fakeSdp('offer') })).toMatchObject({
      type: 'error',
      payload: { code: 'room_full' },
    });
    await bob.socket.expectReply('unpublish', {}, 'ack');
    await ann.socket.expectReply('publish_offer', { sdp: fakeSdp('offer') }, 'publish_answer');
    expect(ann.socket.isClosed).toBe(false);
    for (const member of [ann, bob]) member.socket.close();
  });

  it('refuses what the request does not allow: grants, unknown feeds, nothing published', async () => {
    const room = await createRoom();
    const fake = new FakeMediaNode();
    const ann = await joinMember(room.id, 'Ann');
    useMediaNode(room.id, fake);
    const viewer = await tokenWithGrants(room.id, { publish: false, subscribe: false, admin: false });
    const socket = await SignalingSocket.open(room.id, viewer.token);
    await socket.expectReply('join_room', { room_id: room.id, display: 'Viewer' }, 'joined');
    const code = async (reply: Promise<unknown>) => ((await reply) as { payload: { code: string } }).payload.code;

    expect(await code(socket.request('publish_offer', { sdp: fakeSdp('offer') }))).toBe('forbidden');
    expect(await code(socket.request('subscribe', { feeds: [ann.participantId] }))).toBe('forbidden');
    expect(await code(ann.socket.request('subscribe', { feeds: [viewer.participantId] }))).toBe('unknown_feed');
    expect(await code(ann.socket.request('subscribe', { feeds: [ann.participantId] }))).toBe('unknown_feed');
    expect(await code(ann.socket.request('unpublish', {}))).toBe('not_publishing');
    expect(await code(ann.socket.request('trickle_ice', { candidate: null }))).toBe('not_publishing');
    expect(await code(ann.socket.request('subscribe_answer', { sdp: fakeSdp('answer') }))).toBe('bad_request');
    expect(fake.calls).toEqual([]);
    for (const s of [socket, ann.socket]) s.close();
  });
});
