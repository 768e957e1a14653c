import { describe, expect, it } from 'vitest';
import { LIMITS } from '../../shared/src/limits.ts';
import type { ServerFrame } from '../../shared/src/signaling.ts';
import { createRoom, joinMember, type Member, storedParticipants } from './support/rooms.ts';

/**
 * Hostile frames from one participant: each gets an error or closes that socket, and the room
 * goes on for everyone else (same Durable Object): they still get answers and see no false event.
 */

const errorCode = (frame: ServerFrame) => (frame.type === 'error' ? frame.payload.code : `not an error: ${frame.type}`);

/** The bystander still gets answers from the room, and has seen nothing about the attacker. */
async function expectUnaffected(bystander: Member): Promise<void> {
  expect(bystander.socket.isClosed).toBe(false);
  bystander.socket.sendRaw('ping');
  await bystander.socket.nextRaw('pong');
  expect(errorCode(await bystander.socket.request('unpublish', {}))).toBe('not_publishing');
  expect(bystander.socket.untaken('participant_left')).toEqual([]);
}

async function roomWithBystander() {
  const room = await createRoom();
  const bystander = await joinMember(room.id, 'Bystander');
  const attacker = await joinMember(room.id, 'Attacker');
  await bystander.socket.nextOf('participant_joined');
  return { roomId: room.id, bystander, attacker };
}

/** `depth` levels of `open…close` around `inner`, built without recursion. */
const nested = (depth: number, open: string, close: string, inner = '0') =>
  `${open.repeat(depth)}${inner}${close.repeat(depth)}`;

describe('hostile frames', () => {
  it('deeply nested JSON (arrays, objects, in every field) gets an error; the socket and the room go on', async () => {
    const { roomId, bystander, attacker } = await roomWithBystander();
    const depth = Math.floor(LIMITS.frameMaxBytes / 2) - 100;
    const frames = [
      nested(depth, '[', ']'),
      nested(Math.floor(depth / 6), '{"a":', '}'),
      `{"type":"join_room","request_id":"n1","payload":${nested(depth - 100, '[', ']')}}`,
      `{"type":"subscribe","request_id":"n2","payload":{"feeds":${nested(depth - 100, '[', ']')}}}`,
      `{"type":"trickle_ice","request_id":"n3","payload":{"candidate":${nested(Math.floor(depth / 8), '{"candidate":', '}')}}}`,
      `{"type":"leave","request_id":"n4","payload":${nested(depth - 100, '[', ']')}}`,
    ];
    for (const frame of frames) {
      expect(frame.length).toBeLessThanOrEqual(LIMITS.frameMaxBytes);
      attacker.socket.sendRaw(frame);
    }
    const codes: string[] = [];
    for (let i = 0; i < frames.length; i += 1) codes.push(errorCode(await attacker.socket.nextOf('error')));
    expect(codes).toEqual([
      'invalid_json',
      'invalid_json',
      'invalid_payload',
      'invalid_payload',
      'invalid_payload',
      'invalid_payload',
    ]);
    // Deeper than the frame limit allows, up to the hard cap: answered, not a crash.
    attacker.socket.sendRaw(nested(400_000, '[', ']'));
    expect(errorCode(await attacker.socket.nextOf('error'))).toBe('message_too_large');
    expect(attacker.socket.isClosed).toBe(false);
    await expectUnaffected(bystander);
    expect(await storedParticipants(roomId)).toBe(2);
    attacker.socket.close();
    bystander.socket.close();
  });

  it('oversize frames: message_too_large, then 1009 above the hard cap; the others are unaffected', async () => {
    const { roomId, bystander, attacker } = await roomWithBystander();
    attacker.socket.sendRaw(
      `{"type":"leave","request_id":"big","payload":{"x":"${'a'.repeat(LIMITS.frameMaxBytes)}"}}`,
    );
    expect(await attacker.socket.nextOf('error')).toMatchObject({
      request_id: 'big',
      payload: { code: 'message_too_large' },
    });
    // The oversize `leave` did not make anyone leave.
    await expectUnaffected(bystander);
    attacker.socket.sendRaw('x'.repeat(1024 * 1024 + 1));
    expect(await attacker.socket.closed).toEqual({ code: 1009, reason: 'message too large' });
    await expectUnaffected(bystander);
    // A closed socket is a drop, not a leave: the attacker is still in the room during the grace period.
    expect(await storedParticipants(roomId)).toBe(2);
    bystander.socket.close();
  });

  it('binary frames and text that is not UTF-8 JSON are refused as invalid_json', async () => {
    const { bystander, attacker } = await roomWithBystander();
    // Invalid UTF-8 can only arrive as binary here (the runtime's WebSocket sends text as UTF-8).
    attacker.socket.sendRaw(new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0xc3, 0x28, 0x22, 0x7d]).buffer as ArrayBuffer);
    attacker.socket.sendRaw(
      '{"type":"join_room","request_id":"s1","payload":{"room_id":"\uD800\uDBFF","display":"\uDFFF"}}',
    );
    attacker.socket.sendRaw('\uFEFF{"type":"leave"}');
    expect(errorCode(await attacker.socket.nextOf('error'))).toBe('invalid_json');
    expect(errorCode(await attacker.socket.nextOf('error'))).toBe('invalid_payload');
    expect(errorCode(await attacker.socket.nextOf('error'))).toBe('invalid_json');
    expect(attacker.socket.isClosed).toBe(false);
    await expectUnaffected(bystander);
    attacker.socket.close();
    bystander.socket.close();
  });

  it('a 1,000-frame flood from one socket: rate_limited, then closed 1008; the others are unaffected', async () => {
    const { roomId, bystander, attacker } = await roomWithBystander();
    const flood = 1000;
    const started = Date.now();
    for (let i = 0; i < flood && !attacker.socket.isClosed; i += 1) {
      attacker.socket.sendRaw(
        JSON.stringify({ type: 'trickle_ice', request_id: `f${i}`, payload: { candidate: null } }),
      );
    }
    expect(await attacker.socket.closed).toEqual({ code: 1008, reason: 'rate limit exceeded' });
    // It was sent at well over 1,000 frames per second.
    expect(Date.now() - started).toBeLessThan(1000);
    const refused = attacker.socket.untaken('error').filter((frame) => errorCode(frame) === 'rate_limited');
    expect(refused.length).toBeGreaterThan(0);
    // Far fewer than the flood were answered at all: the room stopped listening after the close.
    expect(attacker.socket.received.length).toBeLessThan(flood / 2);
    await expectUnaffected(bystander);
    expect(await storedParticipants(roomId)).toBe(2);
    bystander.socket.close();
  });
});
