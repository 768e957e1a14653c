import { runDurableObjectAlarm } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { roundTrip } from './support/barrier.ts';
import { FakeMediaNode, fakeSdp } from './support/fake-media-node.ts';
import { createRoom, joinMember, publishReady, roomStub, useMediaNode } from './support/rooms.ts';

const STREAMS = [
  { kind: 'audio' as const, mid: '0' },
  { kind: 'video' as const, mid: '1' },
];

/**
 * The room's alarm probes its media node (describeRoom) while media lives on it, and treats what the
 * node lost as gone (#12 items 4 and 10): everyone, the publisher too, hears publisher_left.
 */
/** Ann publishes through a fake node (ready), Bob receives her. */
async function callWithPublisher() {
  const room = await createRoom();
  const fake = new FakeMediaNode();
  const [ann, bob] = [await joinMember(room.id, 'Ann'), await joinMember(room.id, 'Bob')];
  useMediaNode(room.id, fake);
  await publishReady(room.id, ann, STREAMS, [bob.socket]);
  await bob.socket.expectReply('subscribe', { feeds: [ann.participantId] }, 'subscribe_offer');
  return { room, fake, ann, bob };
}

describe('the media node probe', () => {
  it('a publisher the node no longer holds (its worker died) is announced gone, and its slot is free', async () => {
    const { room, fake, ann, bob } = await callWithPublisher();

    fake.publishers.delete(`${room.id}/${ann.participantId}`);
    await runDurableObjectAlarm(roomStub(room.id));
    for (const member of [ann, bob]) {
      expect((await member.socket.nextOf('publisher_left')).payload.publisher_id).toBe(ann.participantId);
    }
    // A first offer again (not a renegotiation of a publisher the node forgot).
    await ann.socket.expectReply('publish_offer', { sdp: fakeSdp('again') }, 'publish_answer');
    for (const member of [ann, bob]) member.socket.close();
  });

  it('a node that fails one probe keeps the room; a second failure in a row counts it lost', async () => {
    const { room, fake, ann, bob } = await callWithPublisher();

    fake.failNext('describeRoom', 'media_unavailable');
    await runDurableObjectAlarm(roomStub(room.id));
    await roundTrip(bob.socket);
    expect(bob.socket.untaken('publisher_left')).toEqual([]);

    fake.failNext('describeRoom', 'media_unavailable');
    await runDurableObjectAlarm(roomStub(room.id));
    for (const member of [ann, bob]) {
      expect((await member.socket.nextOf('publisher_left')).payload.publisher_id).toBe(ann.participantId);
    }
    // Bob's subscriber went with the node: subscribing after Ann is back starts a new one, no restart.
    await publishReady(room.id, ann, STREAMS, [bob.socket]);
    await bob.socket.expectReply('subscribe', { feeds: [ann.participantId] }, 'subscribe_offer');
    expect(fake.callsOf('closeSubscriber')).toEqual([]);
    for (const member of [ann, bob]) member.socket.close();
  });

  it('a node that refuses the connection (killed) is lost at the first probe', async () => {
    const { room, fake, ann, bob } = await callWithPublisher();

    fake.failNext('describeRoom', 'refused');
    await runDurableObjectAlarm(roomStub(room.id));
    for (const member of [ann, bob]) {
      expect((await member.socket.nextOf('publisher_left')).payload.publisher_id).toBe(ann.participantId);
    }
    for (const member of [ann, bob]) member.socket.close();
  });

  it('a publisher the node closed by itself (publisher_closed) hears publisher_left too: its SDK publishes again', async () => {
    const { room, ann, bob } = await callWithPublisher();
    await roomStub(room.id).handleMediaEvent({
      type: 'publisher_closed',
      room_id: room.id,
      participant_id: ann.participantId,
      reason: 'media worker failed',
    });
    for (const member of [ann, bob]) {
      expect((await member.socket.nextOf('publisher_left')).payload.publisher_id).toBe(ann.participantId);
    }
    // Ann unpublishing herself is no news to her: only Bob hears it.
    await publishReady(room.id, ann, STREAMS, [bob.socket]);
    await ann.socket.expectReply('unpublish', {}, 'ack');
    expect((await bob.socket.nextOf('publisher_left')).payload.publisher_id).toBe(ann.participantId);
    await roundTrip(ann.socket);
    expect(ann.socket.untaken('publisher_left')).toEqual([]);
    for (const member of [ann, bob]) member.socket.close();
  });
});
