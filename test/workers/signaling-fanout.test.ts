import { env, SELF } from 'cloudflare:test';
import { expect, it } from 'vitest';
import { edgeConfig } from '../../workers/src/config.ts';
import { roundTrip } from './support/barrier.ts';
import { createRoom, joinMember, type Member, tokenWithGrants } from './support/rooms.ts';
import { BASE_URL, SignalingSocket } from './support/signaling-socket.ts';

const ROOM_SIZE = edgeConfig(env).maxParticipants;

it(`fans out to ${ROOM_SIZE} clients in one room, in order, and refuses one more`, { timeout: 60_000 }, async () => {
  const room = await createRoom();
  const members: Member[] = [];
  for (let i = 0; i < ROOM_SIZE; i += 1) members.push(await joinMember(room.id, `P${i}`));

  // Everyone saw everyone who joined after them, in join order.
  for (const [index, member] of members.entries()) {
    const later = members.slice(index + 1).map((other) => other.participantId);
    const seen = [];
    for (const _ of later) seen.push((await member.socket.nextOf('participant_joined')).payload.participant.id);
    expect(seen).toEqual(later);
  }

  // One event reaches all the others.
  const [first, ...others] = members;
  await first.socket.expectReply('leave', {}, 'ack');
  const left = await Promise.all(others.map((member) => member.socket.nextOf('participant_left')));
  expect(new Set(left.map((frame) => frame.payload.participant.id))).toEqual(new Set([first.participantId]));

  // Back at the cap with one more: REST join refuses a new token, join_room a token issued earlier.
  const extra = await joinMember(room.id, 'Replacement');
  const restJoin = await SELF.fetch(`${BASE_URL}/api/v1/rooms/${room.id}/join`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ display: 'Too many' }),
  });
  expect(restJoin.status).toBe(409);
  expect(await restJoin.json()).toMatchObject({ error: { code: 'room_full' } });
  const late = await tokenWithGrants(room.id, { publish: true, subscribe: true, admin: false });
  const socket = await SignalingSocket.open(room.id, late.token);
  const refused = await socket.request('join_room', { room_id: room.id, display: 'Late' });
  expect(refused).toMatchObject({ type: 'error', payload: { code: 'room_full' } });
  expect(socket.isClosed).toBe(false);
  await roundTrip(others[0].socket);
  expect(
    others[0].socket
      .untaken('participant_joined')
      .map((frame) => frame.type === 'participant_joined' && frame.payload.participant.display),
  ).toEqual(['Replacement']);

  for (const member of [...others, extra]) member.socket.close();
  socket.close();
});
