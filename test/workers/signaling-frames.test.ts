import { describe, expect, it } from 'vitest';
import { LIMITS } from '../../shared/src/limits.ts';
import type { ServerFrame } from '../../shared/src/signaling.ts';
import { SIGNALING_RATE_LIMIT } from '../../workers/src/room/rate-limit.ts';
import { fakeSdp } from './support/fake-media-node.ts';
import { createRoom, joinMember, restJoin } from './support/rooms.ts';
import { SignalingSocket } from './support/signaling-socket.ts';

/** A socket that connected but has not joined yet. */
async function connectedSocket(): Promise<{ socket: SignalingSocket; roomId: string }> {
  const room = await createRoom();
  const join = await restJoin(room.id, 'Ann');
  return { socket: await SignalingSocket.open(room.id, join.token), roomId: room.id };
}

const errorCode = (frame: ServerFrame) => (frame.type === 'error' ? frame.payload.code : `not an error: ${frame.type}`);

describe('bad frames get an error and the socket stays open', () => {
  it('answers non-JSON, binary, non-frames, unknown types and bad payloads with their codes', async () => {
    const { socket, roomId } = await connectedSocket();
    socket.sendRaw('{not json');
    expect(errorCode(await socket.nextOf('error'))).toBe('invalid_json');
    socket.sendRaw(new TextEncoder().encode('{"type":"leave"}').buffer as ArrayBuffer);
    expect(errorCode(await socket.nextOf('error'))).toBe('invalid_json');
    socket.sendRaw('[1, 2, 3]');
    expect(errorCode(await socket.nextOf('error'))).toBe('invalid_json');

    socket.sendRaw(JSON.stringify({ type: 'dance', request_id: 'u1', payload: {} }));
    expect(await socket.nextOf('error')).toMatchObject({ request_id: 'u1', payload: { code: 'unknown_type' } });
    socket.sendRaw(JSON.stringify({ type: 'join_room', request_id: 'p1', payload: { room_id: roomId } }));
    const invalid = await socket.nextOf('error');
    expect(invalid).toMatchObject({ request_id: 'p1', payload: { code: 'invalid_payload' } });
    expect(invalid.type === 'error' && invalid.payload.message).toContain('display');
    socket.sendRaw(
      JSON.stringify({ type: 'join_room', request_id: 'p2', payload: { room_id: roomId, display: 'A', x: 1 } }),
    );
    expect(await socket.nextOf('error')).toMatchObject({ request_id: 'p2', payload: { code: 'invalid_payload' } });

    // After all that, the socket still works.
    await socket.expectReply('join_room', { room_id: roomId, display: 'Ann' }, 'joined');
    socket.close();
  });

  it('refuses requests before join_room, a join for another room, and a second join', async () => {
    const { socket, roomId } = await connectedSocket();
    expect(await socket.request('publish_offer', { sdp: fakeSdp('offer') })).toMatchObject({
      type: 'error',
      request_id: 'r1',
      payload: { code: 'not_joined' },
    });
    expect(errorCode(await socket.request('leave', {}))).toBe('not_joined');
    const otherRoom = await createRoom();
    expect(errorCode(await socket.request('join_room', { room_id: otherRoom.id, display: 'Ann' }))).toBe(
      'room_mismatch',
    );
    await socket.expectReply('join_room', { room_id: roomId, display: 'Ann' }, 'joined');
    expect(errorCode(await socket.request('join_room', { room_id: roomId, display: 'Ann' }))).toBe('already_joined');
    expect(socket.isClosed).toBe(false);
    socket.close();
  });

  it('answers a frame over 64 KiB with message_too_large (echoing its request_id)', async () => {
    const { socket, roomId } = await connectedSocket();
    const padding = 'a'.repeat(LIMITS.frameMaxBytes);
    socket.sendRaw(JSON.stringify({ type: 'publish_offer', request_id: 'big', payload: { sdp: `v=0\r\n${padding}` } }));
    expect(await socket.nextOf('error')).toMatchObject({ request_id: 'big', payload: { code: 'message_too_large' } });
    // An SDP just under 64 KiB fits in a frame: it fails on `not_joined`, not on size.
    const sdp = `v=0\r\n${'a'.repeat(LIMITS.sdpMaxBytes - 10)}`;
    expect(errorCode(await socket.request('publish_offer', { sdp }))).toBe('not_joined');
    await socket.expectReply('join_room', { room_id: roomId, display: 'Ann' }, 'joined');
    socket.close();
  });

  it('closes with 1009 above the hard cap', async () => {
    const { socket } = await connectedSocket();
    socket.sendRaw('x'.repeat(1024 * 1024 + 1));
    expect(await socket.closed).toEqual({ code: 1009, reason: 'message too large' });
  });
});

describe('per-connection rate limit', () => {
  it('refuses frames beyond the burst with rate_limited, one reply per request, and the socket stays open', async () => {
    const member = await joinMember((await createRoom()).id, 'Ann');
    const count = SIGNALING_RATE_LIMIT.burst + 5;
    for (let i = 0; i < count; i += 1)
      member.socket.sendRaw(JSON.stringify({ type: 'unpublish', request_id: `f${i}` }));
    const replies = [];
    for (let i = 0; i < count; i += 1) replies.push(await member.socket.next((frame) => frame.request_id === `f${i}`));
    const codes = replies.map(errorCode);
    expect(codes.filter((code) => code === 'rate_limited').length).toBeGreaterThan(0);
    expect(codes.filter((code) => code === 'not_publishing').length).toBeGreaterThanOrEqual(
      SIGNALING_RATE_LIMIT.burst - 1,
    );
    expect(member.socket.isClosed).toBe(false);
    member.socket.close();
  });

  it('closes with 1008 on sustained abuse', async () => {
    const member = await joinMember((await createRoom()).id, 'Ann');
    const flood = SIGNALING_RATE_LIMIT.burst + SIGNALING_RATE_LIMIT.refusalsBeforeClose + 20;
    for (let i = 0; i < flood; i += 1)
      member.socket.sendRaw(JSON.stringify({ type: 'unpublish', request_id: `f${i}` }));
    expect(await member.socket.closed).toEqual({ code: 1008, reason: 'rate limit exceeded' });
    expect(member.socket.untaken('error').some((frame) => errorCode(frame) === 'rate_limited')).toBe(true);
  });
});
