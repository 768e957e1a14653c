import { SELF } from 'cloudflare:test';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ClientFrameType, ClientPayloadSchemas } from '../../shared/src/signaling.ts';
import { eventually, roundTrip } from './support/barrier.ts';
import { FakeMediaNode, fakeSdp } from './support/fake-media-node.ts';
import { createRoom, joinMember, restJoin, useMediaNode } from './support/rooms.ts';
import { BASE_URL, SignalingSocket } from './support/signaling-socket.ts';

/**
 * Property-based fuzzing of every frame handler of the room's Durable Object: sequences of random,
 * near-valid and valid frames from one participant. Whatever it sends, the room answers every
 * request, its socket is only ever closed by its own `leave`, the bystander in the room keeps
 * working, and the store lists exactly who is in the room. Seeded: the same runs every time.
 */

const ID = fc.stringMatching(/^[A-Za-z0-9_-]{22}$/);

interface RoomContext {
  roomId: string;
  bystanderId: string;
}

/** Frames for one run: unstructured JSON, a known type with any payload, or a near-valid payload per type. */
function frameArbitrary(context: RoomContext) {
  const someId = fc.oneof(ID, fc.constant(context.bystanderId), fc.constant(context.roomId));
  const sdp = fc.oneof(
    fc.constant(fakeSdp('fuzz')),
    fc.constant(fakeSdp('audio only', ['audio'])),
    fc.string({ maxLength: 200 }).map((tail) => `v=0\r\n${tail}`),
    fc.string({ maxLength: 50 }),
  );
  const candidate = fc.oneof(
    fc.constant(null),
    fc.record(
      {
        candidate: fc.string({ maxLength: 100 }),
        sdpMid: fc.option(fc.string({ maxLength: 10 })),
        sdpMLineIndex: fc.option(fc.integer({ min: -5, max: 2000 })),
      },
      { requiredKeys: ['candidate'] },
    ),
    fc.jsonValue({ maxDepth: 2 }),
  );
  const feeds = fc.oneof(fc.array(someId, { maxLength: 4 }), fc.jsonValue({ maxDepth: 2 }));
  const payloads: Record<ClientFrameType, fc.Arbitrary<unknown>> = {
    join_room: fc.record({ room_id: someId, display: fc.string({ maxLength: 70 }) }),
    publish_offer: fc.record(
      { sdp, kind: fc.constantFrom('audio', 'video', 'screen', 'hologram') },
      { requiredKeys: ['sdp'] },
    ),
    trickle_ice: fc.record(
      { target: fc.constantFrom('publisher', 'subscriber', 'other'), candidate },
      { requiredKeys: ['candidate'] },
    ),
    subscribe: fc.record({ feeds }),
    subscribe_answer: fc.record({ sdp }),
    unsubscribe: fc.record({ feeds }),
    unpublish: fc.oneof(fc.constant({}), fc.jsonValue({ maxDepth: 1 })),
    leave: fc.oneof(fc.constant({}), fc.jsonValue({ maxDepth: 1 })),
    mute: fc.record({ kind: fc.constantFrom('audio', 'video', 'screen'), muted: fc.oneof(fc.boolean(), fc.string()) }),
    update_subscription: fc.record(
      {
        feed: someId,
        max_width: fc.oneof(fc.integer({ min: -1, max: 20_000 }), fc.double()),
        max_height: fc.integer({ min: -1, max: 20_000 }),
        paused: fc.oneof(fc.boolean(), fc.string()),
      },
      { requiredKeys: [] },
    ),
    send_data: fc.record(
      {
        data: fc.oneof(fc.string({ maxLength: 100 }), fc.jsonValue({ maxDepth: 1 })),
        topic: fc.string({ maxLength: 70 }),
        to: feeds,
      },
      { requiredKeys: ['data'] },
    ),
  };
  const typed = fc.constantFrom(...(Object.keys(ClientPayloadSchemas) as ClientFrameType[])).chain((type) =>
    fc.record({
      type: fc.constant(type),
      payload: fc.oneof({ weight: 4, arbitrary: payloads[type]! }, fc.jsonValue({ maxDepth: 3 })),
    }),
  );
  const envelope = fc.record({ type: fc.string({ maxLength: 20 }), payload: fc.jsonValue({ maxDepth: 3 }) });
  return fc.oneof(
    { weight: 6, arbitrary: typed },
    { weight: 1, arbitrary: envelope },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  );
}

async function participantsListed(roomId: string): Promise<{ participants: number; publishers: { id: string }[] }> {
  const response = await SELF.fetch(`${BASE_URL}/api/v1/rooms/${roomId}`);
  expect(response.status).toBe(200);
  return response.json();
}

/** The store lists exactly `present` as participants, and no publisher outside them. */
async function expectListed(roomId: string, present: Set<string>): Promise<void> {
  const settled = await eventually(async () => {
    const listed = await participantsListed(roomId);
    const consistent =
      listed.participants === present.size && listed.publishers.every((publisher) => present.has(publisher.id));
    return consistent ? listed : undefined;
  }).catch(async () => participantsListed(roomId));
  expect(settled.participants).toBe(present.size);
  for (const publisher of settled.publishers) expect(present.has(publisher.id)).toBe(true);
}

describe('fuzzing the frame handlers', () => {
  it('no frame sequence crashes the room or leaves it inconsistent', async () => {
    const room = await createRoom(2);
    const media = new FakeMediaNode();
    await useMediaNode(room.id, media);
    const bystander = await joinMember(room.id, 'Bystander');
    const context = { roomId: room.id, bystanderId: bystander.participantId };

    const replyTypes = new Set<string>();
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        fc.array(frameArbitrary(context), { minLength: 1, maxLength: 6 }),
        async (joinFirst, frames) => {
          const join = await restJoin(room.id, 'Fuzzer');
          const socket = await SignalingSocket.open(room.id, join.token);
          let inRoom = false;
          if (joinFirst) {
            await socket.expectReply('join_room', { room_id: room.id, display: 'Fuzzer' }, 'joined');
            inRoom = true;
          }
          let left = false;
          for (const [index, frame] of frames.entries()) {
            if (socket.isClosed) break;
            // Objects get a request id, so that each reply can be awaited; other JSON goes as it is.
            const isObject = typeof frame === 'object' && frame !== null && !Array.isArray(frame);
            const requestId = `z${index}`;
            socket.sendRaw(JSON.stringify(isObject ? { ...frame, request_id: requestId } : frame));
            const reply = isObject
              ? await socket.next((received) => received.request_id === requestId)
              : await socket.nextOf('error');
            replyTypes.add(reply.type);
            if (reply.type === 'joined') inRoom = true;
            if (reply.type === 'ack' && (frame as { type?: string }).type === 'leave') {
              // The room closes the socket after this ack: nothing more can be sent.
              left = true;
              break;
            }
          }
          if (left) {
            expect(await socket.closed).toMatchObject({ code: 1000 });
            inRoom = false;
          } else {
            // The fuzzer's socket is still served, in order.
            expect(socket.isClosed).toBe(false);
            await roundTrip(socket);
          }
          // The bystander is unaffected, and the store lists exactly who is in the room (it is updated
          // right after the others are told of a leave: polled, but a ghost never goes away).
          await roundTrip(bystander.socket);
          const present = new Set([bystander.participantId, ...(inRoom ? [join.participant_id] : [])]);
          await expectListed(room.id, present);

          // Clean up for the next run: the fuzzer leaves, and the room is back to the bystander alone,
          // on the media node too.
          if (!socket.isClosed) {
            if (inRoom) await socket.expectReply('leave', {}, 'ack');
            else socket.close();
            await socket.closed;
          }
          await expectListed(room.id, new Set([bystander.participantId]));
          await eventually(async () => (media.publishers.has(`${room.id}/${join.participant_id}`) ? undefined : true));
          expect(media.subscribers.has(`${room.id}/${join.participant_id}`)).toBe(false);
        },
      ),
      { numRuns: 60, seed: 12_012, endOnFailure: true },
    );
    // The runs reached the handlers' real work, not only refusals.
    expect([...replyTypes]).toEqual(expect.arrayContaining(['joined', 'publish_answer', 'ack', 'error']));
    expect(bystander.socket.isClosed).toBe(false);
    bystander.socket.close();
  }, 30_000);
});
