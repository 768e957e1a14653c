import { describe, expect, it } from 'vitest';
import { LIMITS } from '../../shared/src/limits.ts';
import type { ServerFrame } from '../../shared/src/signaling.ts';
import { DATA_RATE_LIMIT } from '../../workers/src/room/data-messages.ts';
import { roundTrip } from './support/barrier.ts';
import { createRoom, joinMember, tokenWithGrants } from './support/rooms.ts';
import { SignalingSocket } from './support/signaling-socket.ts';

const codeOf = (reply: ServerFrame) => (reply.type === 'error' ? reply.payload.code : reply.type);

describe('send_data', () => {
  it('relays data to everyone else, or only to the participants in `to`', async () => {
    const room = await createRoom();
    const [ann, bob, cid] = [
      await joinMember(room.id, 'Ann'),
      await joinMember(room.id, 'Bob'),
      await joinMember(room.id, 'Cid'),
    ];

    await ann.socket.expectReply('send_data', { data: 'hello all', topic: 'chat' }, 'ack');
    for (const member of [bob, cid]) {
      const frame = await member.socket.nextOf('data');
      expect(frame.payload).toEqual({ from: ann.participantId, data: 'hello all', topic: 'chat' });
      expect(frame.request_id).toBeUndefined();
    }

    // Only Cid is addressed; an id that is not in the room is skipped, not an error.
    const gone = 'AAAAAAAAAAAAAAAAAAAAAA';
    await bob.socket.expectReply('send_data', { data: '{"x":1}', to: [cid.participantId, gone] }, 'ack');
    expect((await cid.socket.nextOf('data')).payload).toEqual({ from: bob.participantId, data: '{"x":1}' });
    for (const member of [ann, bob, cid]) await roundTrip(member.socket);
    expect(ann.socket.untaken('data')).toEqual([]);
    // The sender never gets its own message back, even when it names itself.
    await cid.socket.expectReply('send_data', { data: 'me', to: [cid.participantId] }, 'ack');
    await roundTrip(cid.socket);
    expect([...ann.socket.untaken('data'), ...bob.socket.untaken('data'), ...cid.socket.untaken('data')]).toEqual([]);

    for (const member of [ann, bob, cid]) member.socket.close();
  });

  it('refuses data without the publish_data grant, and bad payloads, and delivers nothing', async () => {
    const room = await createRoom();
    const ann = await joinMember(room.id, 'Ann');
    const muted = await tokenWithGrants(room.id, { publish: true, subscribe: true, admin: false, publish_data: false });
    const socket = await SignalingSocket.open(room.id, muted.token);
    await socket.expectReply('join_room', { room_id: room.id, display: 'NoData' }, 'joined');

    expect(codeOf(await socket.request('send_data', { data: 'x' }))).toBe('forbidden');
    const tooBig = 'é'.repeat(LIMITS.dataMaxBytes / 2 + 1);
    expect(codeOf(await ann.socket.request('send_data', { data: tooBig }))).toBe('invalid_payload');
    expect(codeOf(await ann.socket.request('send_data', { data: 'x', topic: 't'.repeat(65) }))).toBe('invalid_payload');
    expect(codeOf(await ann.socket.request('send_data', { data: 'x', to: [] }))).toBe('invalid_payload');
    const crowd = Array.from({ length: 101 }, () => ann.participantId);
    expect(codeOf(await ann.socket.request('send_data', { data: 'x', to: crowd }))).toBe('invalid_payload');
    // The limit itself passes: 16 KiB of UTF-8.
    await ann.socket.expectReply('send_data', { data: 'é'.repeat(LIMITS.dataMaxBytes / 2) }, 'ack');
    expect((await socket.nextOf('data')).payload.data).toHaveLength(LIMITS.dataMaxBytes / 2);

    await roundTrip(ann.socket);
    expect(ann.socket.untaken('data')).toEqual([]);
    for (const s of [socket, ann.socket]) s.close();
  });

  it('limits data messages per connection, and delivers exactly the accepted ones', async () => {
    const room = await createRoom();
    const [ann, bob] = [await joinMember(room.id, 'Ann'), await joinMember(room.id, 'Bob')];
    // Sent back to back (below the frame limit's burst): the data bucket runs dry first.
    const sent = DATA_RATE_LIMIT.burst + 10;
    const replies = await Promise.all(
      Array.from({ length: sent }, (_, i) => ann.socket.request('send_data', { data: `m${i}` })),
    );
    const accepted = replies.filter((reply) => reply.type === 'ack').length;
    expect(replies.map(codeOf)).toContain('rate_limited');
    expect(accepted).toBeGreaterThanOrEqual(DATA_RATE_LIMIT.burst);
    expect(accepted).toBeLessThan(sent);
    await roundTrip(ann.socket);
    await roundTrip(bob.socket);
    const delivered = bob.socket.untaken('data');
    expect(delivered).toHaveLength(accepted);
    expect(ann.socket.isClosed).toBe(false);
    for (const member of [ann, bob]) member.socket.close();
  });
});
