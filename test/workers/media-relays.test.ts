import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { mediaNodeIdentity } from '../../shared/src/media-node-trust.ts';
import { MEDIA_NODES_KEY, MEDIA_NODES_LOST_KEY } from '../../workers/src/media/media-node-placement.ts';
import { MEDIA_RELAYS_KEY } from '../../workers/src/media/room-media.ts';
import { roundTrip } from './support/barrier.ts';
import { FakeMediaNode, fakeSdp } from './support/fake-media-node.ts';
import { createRoom, joinMember, type Member, publishReady, roomStub, useMediaNodes } from './support/rooms.ts';

const STREAMS = [
  { kind: 'audio' as const, mid: '0' },
  { kind: 'video' as const, mid: '1' },
];
const NODE_A = 'http://10.0.0.1:8081';
const NODE_B = 'http://10.0.0.2:8081';

/** A room on two fake nodes, A filled first; A holds at most `capacityA` peers. */
async function twoNodeRoom(capacityA: number) {
  const room = await createRoom();
  const [a, b] = [new FakeMediaNode(), new FakeMediaNode()];
  a.capacity = capacityA;
  useMediaNodes(room.id, { [NODE_A]: a, [NODE_B]: b });
  return { room, a, b };
}

/** Where the room recorded each participant's node (its Durable Object storage). */
function recordedNodes(roomId: string): Promise<Record<string, string>> {
  return runInDurableObject(roomStub(roomId), (_instance, state) =>
    Object.fromEntries(state.storage.kv.get<[string, string][]>(MEDIA_NODES_KEY) ?? []),
  );
}

async function subscribeTo(member: Member, feeds: string[]) {
  return member.socket.expectReply('subscribe', { feeds }, 'subscribe_offer');
}

/** Ann publishes on A (which holds `capacityA` peers); each viewer, in order, subscribes to her. */
async function annWithViewers(capacityA: number, names: string[]) {
  const { room, a, b } = await twoNodeRoom(capacityA);
  const ann = await joinMember(room.id, 'Ann');
  const viewers: Member[] = [];
  for (const name of names) viewers.push(await joinMember(room.id, name));
  await publishReady(
    room.id,
    ann,
    STREAMS,
    viewers.map((viewer) => viewer.socket),
  );
  for (const viewer of viewers) await subscribeTo(viewer, [ann.participantId]);
  return { room, a, b, ann, viewers };
}

/**
 * Ann publishes on A and Bob views her there, which fills A; Dan then publishes on B. Bob also views
 * Dan (A pulls from B), Cy views both from B (B pulls from A): each offer carries what was asked.
 */
async function publisherOnEachNode() {
  const { room, a, b } = await twoNodeRoom(2);
  const [ann, bob, dan, cy] = [
    await joinMember(room.id, 'Ann'),
    await joinMember(room.id, 'Bob'),
    await joinMember(room.id, 'Dan'),
    await joinMember(room.id, 'Cy'),
  ];
  await publishReady(room.id, ann, STREAMS, [bob.socket, dan.socket, cy.socket]);
  await subscribeTo(bob, [ann.participantId]);
  await publishReady(room.id, dan, STREAMS, [ann.socket, bob.socket, cy.socket]);
  const bobOffer = await subscribeTo(bob, [dan.participantId]);
  expect(bobOffer.payload.sdp).toContain(`${ann.participantId},${dan.participantId}`);
  const cyOffer = await subscribeTo(cy, [ann.participantId, dan.participantId]);
  expect(cyOffer.payload.sdp).toContain(`${ann.participantId},${dan.participantId}`);
  return { room, a, b, ann, bob, dan, cy };
}

describe('a room across media nodes', () => {
  it('places a participant a full node refuses on the next node, which pulls the feed it needs before subscribing', async () => {
    const { room, a, b } = await twoNodeRoom(2);
    const [ann, bob, cy] = [
      await joinMember(room.id, 'Ann'),
      await joinMember(room.id, 'Bob'),
      await joinMember(room.id, 'Cy'),
    ];
    await publishReady(room.id, ann, STREAMS, [bob.socket, cy.socket]);
    await subscribeTo(bob, [ann.participantId]);
    expect(a.load).toBe(2);

    // A refuses Cy (at capacity): Cy goes to B, which first pulls Ann's feed from A, then offers it.
    const offer = await subscribeTo(cy, [ann.participantId]);
    expect(offer.payload.sdp).toContain(ann.participantId);
    expect(b.relayedFrom(room.id, NODE_A)).toEqual([ann.participantId]);
    const order = b.calls.map((call) => call.method);
    expect(order.indexOf('relay')).toBeLessThan(order.indexOf('subscribe'));
    expect(await recordedNodes(room.id)).toEqual({
      [ann.participantId]: NODE_A,
      [bob.participantId]: NODE_A,
      [cy.participantId]: NODE_B,
    });

    // Every later call about Cy goes to B; nothing about Cy reaches A.
    await cy.socket.expectReply('subscribe_answer', { sdp: fakeSdp('cy answer') }, 'ack');
    await cy.socket.expectReply('update_subscription', { feed: ann.participantId, max_height: 180 }, 'ack');
    expect(b.callsOf('setSubscriberAnswer')).toHaveLength(1);
    expect(a.calls.filter((call) => call.participantId === cy.participantId).map((call) => call.method)).toEqual([
      'subscribe',
    ]);
    // Clients see nothing of it: the same frames as on one node, and no node URL anywhere.
    for (const frame of [...cy.socket.untaken(), ...bob.socket.untaken()]) {
      expect(JSON.stringify(frame)).not.toMatch(/10\.0\.0\.\d/);
    }
    for (const member of [ann, bob, cy]) member.socket.close();
  });

  it('places a new participant whose first node refuses the connection on the next one, at once', async () => {
    const { room, a, b } = await twoNodeRoom(10);
    const ann = await joinMember(room.id, 'Ann');
    a.failNext('publish', 'refused');
    await ann.socket.expectReply('publish_offer', { sdp: fakeSdp('ann offer') }, 'publish_answer');
    expect(await recordedNodes(room.id)).toEqual({ [ann.participantId]: NODE_B });
    expect(b.publishers.has(`${room.id}/${ann.participantId}`)).toBe(true);
    ann.socket.close();
  });

  it('places a participant whose node drains and no longer holds the room on the next one, at once', async () => {
    const { room, a, b } = await twoNodeRoom(10);
    const [ann, bob] = [await joinMember(room.id, 'Ann'), await joinMember(room.id, 'Bob')];
    await publishReady(room.id, ann, STREAMS, [bob.socket]);
    // A drains: its drain timeout ends Ann's publisher, and it refuses the room when she publishes again.
    a.publishers.clear();
    await roomStub(room.id).handleMediaEvent({
      type: 'publisher_closed',
      room_id: room.id,
      participant_id: ann.participantId,
      reason: 'drain timeout',
    });
    await ann.socket.nextOf('publisher_left');
    a.failNext('publish', 'draining');
    await ann.socket.expectReply('publish_offer', { sdp: fakeSdp('ann again') }, 'publish_answer');
    expect((await recordedNodes(room.id))[ann.participantId]).toBe(NODE_B);
    expect(b.publishers.has(`${room.id}/${ann.participantId}`)).toBe(true);
    for (const member of [ann, bob]) member.socket.close();
  });

  it('keeps one relay per node pair, whatever the number of viewers behind it, and closes it when the last one goes', async () => {
    const { room, a, b, ann, viewers } = await annWithViewers(1, ['Cy', 'Dee']);
    const [cy, dee] = viewers as [Member, Member];
    // Both on B, one relay asked once (the second viewer needed nothing new).
    expect(b.callsOf('relay').map((call) => call.detail)).toEqual([{ origin: NODE_A, feeds: [ann.participantId] }]);

    await cy.socket.expectReply('unsubscribe', { feeds: [ann.participantId] }, 'subscribe_offer');
    expect(b.relayedFrom(room.id, NODE_A)).toEqual([ann.participantId]);
    await dee.socket.expectReply('leave', {}, 'ack');
    await dee.socket.closed;
    await roundTrip(cy.socket);
    expect(b.callsOf('relay').map((call) => call.detail)).toEqual([
      { origin: NODE_A, feeds: [ann.participantId] },
      { origin: NODE_A, feeds: [] },
    ]);
    expect(b.relayedFrom(room.id, NODE_A)).toEqual([]);
    await runInDurableObject(roomStub(room.id), (_instance, state) => {
      expect(state.storage.kv.get(MEDIA_RELAYS_KEY)).toBeUndefined();
    });
    expect(a.callsOf('relay')).toEqual([]);
    for (const member of [ann, cy]) member.socket.close();
  });

  it('keeps a relay on record while its pulling node has not closed it, so that the room closes there', async () => {
    const { room, b, ann, viewers } = await annWithViewers(1, ['Cy', 'Dee']);
    const [cy, dee] = viewers as [Member, Member];
    await cy.socket.expectReply('leave', {}, 'ack');
    expect(b.relayedFrom(room.id, NODE_A)).toEqual([ann.participantId]);

    // Dee, the last viewer on B, leaves while B fails the call that closes the relay: B still pulls,
    // and has no participant left through whom the room would reach it.
    b.failNext('relay', 'media_unavailable');
    await dee.socket.expectReply('leave', {}, 'ack');
    expect(b.relayedFrom(room.id, NODE_A)).toEqual([ann.participantId]);
    await runInDurableObject(roomStub(room.id), (_instance, state) => {
      expect(state.storage.kv.get(MEDIA_RELAYS_KEY)).toEqual({ [`${NODE_B} ${NODE_A}`]: [ann.participantId] });
    });

    await roomStub(room.id).endRoom(room.id);
    expect(b.callsOf('closeRoom')).toHaveLength(1);
    ann.socket.close();
  });

  it('closes a relay on a pulling node the room keeps away from (draining) but that still answers', async () => {
    const { room, b, ann, viewers } = await annWithViewers(1, ['Cy']);
    const [cy] = viewers as [Member];
    expect(b.relayedFrom(room.id, NODE_A)).toEqual([ann.participantId]);
    // B answered a placement that it drains: the room keeps away from it for new participants.
    await runInDurableObject(roomStub(room.id), (_instance, state) => {
      state.storage.kv.put(MEDIA_NODES_LOST_KEY, { [NODE_B]: Date.now() + 60_000 });
    });
    await cy.socket.expectReply('leave', {}, 'ack');
    expect(b.relayedFrom(room.id, NODE_A)).toEqual([]);
    ann.socket.close();
  });

  it("shrinks the relay when one of its feeds' publisher leaves, and asks again when a publisher renegotiates", async () => {
    const { room, a, b } = await twoNodeRoom(2);
    const [ann, eve, cy] = [
      await joinMember(room.id, 'Ann'),
      await joinMember(room.id, 'Eve'),
      await joinMember(room.id, 'Cy'),
    ];
    await publishReady(room.id, ann, STREAMS, [cy.socket, eve.socket]);
    await publishReady(room.id, eve, STREAMS, [cy.socket, ann.socket]);
    expect(a.load).toBe(2);
    await subscribeTo(cy, [ann.participantId, eve.participantId]);
    expect(b.relayedFrom(room.id, NODE_A)).toEqual([ann.participantId, eve.participantId].sort());

    // Ann renegotiates (publisher_ready again): B is asked again for the same set, to pull her new tracks.
    await ann.socket.expectReply('publish_offer', { sdp: fakeSdp('ann renegotiates') }, 'publish_answer');
    const relaysBefore = b.callsOf('relay').length;
    await roomStub(room.id).handleMediaEvent({
      type: 'publisher_ready',
      room_id: room.id,
      participant_id: ann.participantId,
      streams: STREAMS,
    });
    await roundTrip(ann.socket);
    expect(
      b
        .callsOf('relay')
        .slice(relaysBefore)
        .map((call) => call.detail),
    ).toEqual([{ origin: NODE_A, feeds: [ann.participantId, eve.participantId].sort() }]);

    await eve.socket.expectReply('unpublish', {}, 'ack');
    expect((await cy.socket.nextOf('publisher_left')).payload.publisher_id).toBe(eve.participantId);
    expect(b.relayedFrom(room.id, NODE_A)).toEqual([ann.participantId]);
    for (const member of [ann, eve, cy]) member.socket.close();
  });

  it('relays both ways: a publisher on each node, viewers on both receive everyone', async () => {
    const { room, a, b, ann, bob, dan, cy } = await publisherOnEachNode();
    expect(a.relayedFrom(room.id, NODE_B)).toEqual([dan.participantId]);
    expect(b.relayedFrom(room.id, NODE_A)).toEqual([ann.participantId]);
    expect(await recordedNodes(room.id)).toEqual({
      [ann.participantId]: NODE_A,
      [bob.participantId]: NODE_A,
      [dan.participantId]: NODE_B,
      [cy.participantId]: NODE_B,
    });
    for (const member of [ann, bob, dan, cy]) member.socket.close();
  });

  it('tells who speaks across the nodes: each node reports its own publishers, the room merges them', async () => {
    const { room, b, ann, bob, dan, cy } = await publisherOnEachNode();
    let jti = 0;
    const report = (node: string, speakers: { participant_id: string; level: number }[]) =>
      roomStub(room.id).handleNodeEvent(
        { type: 'active_speakers', room_id: room.id, speakers },
        { issuer: mediaNodeIdentity(node), jti: `speakers-report-${++jti}`, expiresAt: Date.now() / 1000 + 60 },
      );
    const heard = async () =>
      (await cy.socket.nextOf('active_speakers')).payload.speakers.map(
        (speaker: { participant_id: string }) => speaker.participant_id,
      );

    expect(await report(NODE_A, [{ participant_id: ann.participantId, level: 0.5 }])).toBe('accepted');
    expect(await heard()).toEqual([ann.participantId]);
    // Dan on B speaks louder while Ann goes on: both speak, Dan first.
    expect(await report(NODE_B, [{ participant_id: dan.participantId, level: 0.8 }])).toBe('accepted');
    expect(await heard()).toEqual([dan.participantId, ann.participantId]);
    // Ann stops (A reports nobody): Dan still speaks.
    expect(await report(NODE_A, [])).toBe('accepted');
    expect(await heard()).toEqual([dan.participantId]);

    // B dies: what it last reported goes with it.
    expect(await report(NODE_A, [{ participant_id: ann.participantId, level: 0.5 }])).toBe('accepted');
    expect(await heard()).toEqual([dan.participantId, ann.participantId]);
    b.failNext('describeRoom', 'refused');
    await runDurableObjectAlarm(roomStub(room.id));
    expect(await heard()).toEqual([ann.participantId]);
    for (const member of [ann, bob, dan, cy]) member.socket.close();
  });

  it('a node that dies: its participants are placed again, relays from it close, the other node notices nothing else', async () => {
    const { room, a, b, ann, bob, dan, cy } = await publisherOnEachNode();

    // B is killed: its probe is refused.
    const callsOnABefore = a.calls.length;
    b.failNext('describeRoom', 'refused');
    await runDurableObjectAlarm(roomStub(room.id));
    // Everyone hears Dan (publisher on B) left, Dan too: that is his SDK's cue to publish again.
    for (const member of [dan, bob, ann, cy]) {
      expect((await member.socket.nextOf('publisher_left')).payload.publisher_id).toBe(dan.participantId);
    }
    // A stops pulling from B; nothing else is asked of A: Ann and Bob keep their peers there.
    expect(a.calls.slice(callsOnABefore).map((call) => call.detail)).toEqual([{ origin: NODE_B, feeds: [] }]);
    expect(a.relayedFrom(room.id, NODE_B)).toEqual([]);
    await roundTrip(ann.socket);
    expect(ann.socket.untaken('publisher_left')).toEqual([]);
    // B's participants are placed again at their next call; B's relay from A is forgotten with B.
    expect(await recordedNodes(room.id)).toEqual({
      [ann.participantId]: NODE_A,
      [bob.participantId]: NODE_A,
    });
    await runInDurableObject(roomStub(room.id), (_instance, state) => {
      expect(state.storage.kv.get(MEDIA_RELAYS_KEY)).toBeUndefined();
    });

    // Cy's receiving connection broke with B: its subscribe starts a new subscriber, placed again
    // (on A, which has room now; B is kept away from while it may still be listed).
    a.capacity = 3;
    const offer = await subscribeTo(cy, [ann.participantId]);
    expect(offer.payload.sdp).toContain(ann.participantId);
    expect((await recordedNodes(room.id))[cy.participantId]).toBe(NODE_A);
    for (const member of [ann, bob, dan, cy]) member.socket.close();
  });

  it('probes each node the room uses on its own, and closes the room on every one', async () => {
    const { room, a, b, ann, viewers } = await annWithViewers(2, ['Bob', 'Cy']);
    const [bob, cy] = viewers as [Member, Member];

    // A lost Ann (her worker died): only her feed goes; Bob on A and Cy on B keep their subscribers.
    a.publishers.clear();
    await runDurableObjectAlarm(roomStub(room.id));
    for (const member of [ann, bob, cy]) {
      expect((await member.socket.nextOf('publisher_left')).payload.publisher_id).toBe(ann.participantId);
    }
    expect(b.relayedFrom(room.id, NODE_A)).toEqual([]);
    expect(await recordedNodes(room.id)).toEqual({
      [ann.participantId]: NODE_A,
      [bob.participantId]: NODE_A,
      [cy.participantId]: NODE_B,
    });

    await roomStub(room.id).endRoom(room.id);
    expect(a.callsOf('closeRoom')).toHaveLength(1);
    expect(b.callsOf('closeRoom')).toHaveLength(1);
    expect(await recordedNodes(room.id)).toEqual({});
  });
});
