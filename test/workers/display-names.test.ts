import { SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { ErrorEnvelopeSchema } from '../../shared/src/errors.ts';
import { RoomSchema } from '../../shared/src/rest.ts';
import { createRoom, joinMember, restJoin, storedParticipants } from './support/rooms.ts';
import { BASE_URL, SignalingSocket } from './support/signaling-socket.ts';

/**
 * Display names and room names reach every other participant's screen, so characters that reorder, hide or
 * control what is rendered are refused (not stripped): 400 on REST, `invalid_payload` in join_room.
 */
const HOSTILE_NAMES: [string, string][] = [
  ['a right-to-left override (U+202E)', 'Alice\u202Egnp.exe'],
  ['a bell (U+0007)', 'Bob\u0007'.padEnd(6, 'b')],
  ['a NUL (U+0000)', 'Car\u0000ol'],
  ['an escape sequence', 'Dan\u001b[31mred'],
  ['DEL (U+007F)', 'Eve\u007f'.padEnd(6, 'e')],
  ['a C1 control (U+0085)', 'Fay\u0085x'],
  ['a bidi isolate (U+2066)', '\u2066Gus\u2069x'],
  ['a left-to-right mark (U+200E)', 'Hal\u200Ex'],
  ['a zero-width space (U+200B)', 'Ivy\u200Bx'],
  ['a byte-order mark (U+FEFF)', 'Jo\uFEFFx'],
  ['a tag character (U+E0041)', 'Kim\u{E0041}x'],
  ['a line separator (U+2028)', 'Lee\u2028x'],
  ['an interior newline', 'Max\nx'],
  ['a lone surrogate', 'Ned\uD800x'],
];

const ACCEPTED_NAMES = [
  'Zoë Ångström',
  'محمد',
  'Ἀθηνᾶ',
  '李小龙',
  '👩‍👩‍👧 family', // ZWJ sequence
  'می‌خواهم', // Persian with a zero-width non-joiner
  'Ana 🏳️‍🌈',
];

async function restJoinStatus(roomId: string, display: string): Promise<Response> {
  return SELF.fetch(`${BASE_URL}/api/v1/rooms/${roomId}/join`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ display }),
  });
}

describe('display names', () => {
  it.each(HOSTILE_NAMES)('REST join refuses %s with 400 and the room is unchanged', async (_label, display) => {
    const room = await createRoom();
    const response = await restJoinStatus(room.id, display);
    expect(response.status).toBe(400);
    const body = ErrorEnvelopeSchema.parse(await response.json());
    expect(body.error.code).toBe('validation_failed');
    expect(JSON.stringify(body)).toMatch(/display/);
    expect(await storedParticipants(room.id)).toBe(0);
  });

  it('join_room refuses each with invalid_payload; nobody is told of a join and the socket stays usable', async () => {
    const room = await createRoom();
    const watcher = await joinMember(room.id, 'Watcher');
    const join = await restJoin(room.id, 'Mallory');
    const socket = await SignalingSocket.open(room.id, join.token);
    for (const [label, display] of HOSTILE_NAMES) {
      const reply = await socket.request('join_room', { room_id: room.id, display });
      expect(reply, label).toMatchObject({ type: 'error', payload: { code: 'invalid_payload' } });
    }
    // A clean name then joins, and it is the first and only participant_joined the watcher sees.
    await socket.expectReply('join_room', { room_id: room.id, display: 'Mallory' }, 'joined');
    const joined = await watcher.socket.nextOf('participant_joined');
    expect(joined.payload.participant.display).toBe('Mallory');
    expect(watcher.socket.untaken('participant_joined')).toEqual([]);
    socket.close();
    watcher.socket.close();
  });

  it.each(ACCEPTED_NAMES)('accepts %s on REST and in join_room, unchanged', async (display) => {
    const room = await createRoom();
    const watcher = await joinMember(room.id, 'Watcher');
    const member = await joinMember(room.id, display);
    const joined = await watcher.socket.nextOf('participant_joined');
    expect(joined.payload.participant.display).toBe(display);
    member.socket.close();
    watcher.socket.close();
  });
});

async function createRoomNamed(name: string): Promise<Response> {
  return SELF.fetch(`${BASE_URL}/api/v1/rooms`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  });
}

describe('room names', () => {
  it.each(HOSTILE_NAMES)('room creation refuses %s with 400, naming the field', async (_label, name) => {
    const response = await createRoomNamed(name);
    expect(response.status).toBe(400);
    const body = ErrorEnvelopeSchema.parse(await response.json());
    expect(body.error.code).toBe('validation_failed');
    expect(JSON.stringify(body)).toMatch(/name/);
  });

  it.each(ACCEPTED_NAMES)('accepts %s and returns it unchanged', async (name) => {
    const response = await createRoomNamed(name);
    expect(response.status).toBe(201);
    const created = RoomSchema.parse(await response.json());
    const fetched = await SELF.fetch(`${BASE_URL}/api/v1/rooms/${created.id}`);
    expect(RoomSchema.parse(await fetched.json()).name).toBe(name);
  });
});
