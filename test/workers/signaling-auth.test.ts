import { SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { ErrorEnvelopeSchema } from '../../shared/src/errors.ts';
import { encodeIdentity } from '../../workers/src/room/identity.ts';
import { createRoom, expiredToken, forgedToken, joinMember, restJoin, unsignedToken } from './support/rooms.ts';
import { BASE_URL, SignalingSocket, upgrade } from './support/signaling-socket.ts';

/** A refused upgrade: no WebSocket, the contract's JSON error envelope with `code`. */
async function expectRefused(response: Response, status: number, code: string): Promise<void> {
  expect(response.status).toBe(status);
  expect(response.webSocket).toBeNull();
  expect(response.headers.get('content-type')).toContain('application/json');
  const body = ErrorEnvelopeSchema.parse(await response.json());
  expect(body.error.code).toBe(code);
}

describe('GET /ws token checks (before the Durable Object)', () => {
  it('refuses a missing token with 401', async () => {
    const room = await createRoom();
    await expectRefused(await upgrade(room.id, undefined), 401, 'unauthorized');
  });

  it('refuses a token signed with another secret with 401', async () => {
    const room = await createRoom();
    await expectRefused(await upgrade(room.id, await forgedToken(room.id)), 401, 'unauthorized');
  });

  it('refuses an expired token with 401', async () => {
    const room = await createRoom();
    const response = await upgrade(room.id, await expiredToken(room.id));
    expect(response.status).toBe(401);
    expect(ErrorEnvelopeSchema.parse(await response.json()).error.message).toMatch(/expired/);
  });

  it('refuses an alg:none token with 401', async () => {
    const room = await createRoom();
    await expectRefused(await upgrade(room.id, unsignedToken(room.id)), 401, 'unauthorized');
    await expectRefused(await upgrade(room.id, unsignedToken(room.id), { via: 'subprotocol' }), 401, 'unauthorized');
  });

  it('refuses a token for another room with 403', async () => {
    const [room, other] = [await createRoom(), await createRoom()];
    const join = await restJoin(other.id, 'Eve');
    await expectRefused(await upgrade(room.id, join.token), 403, 'forbidden');
  });

  it('refuses garbage in place of a token, a bad room_id and a request without Upgrade', async () => {
    const room = await createRoom();
    await expectRefused(await upgrade(room.id, 'not.a.jwt'), 401, 'unauthorized');
    const join = await restJoin(room.id, 'Ann');
    await expectRefused(await upgrade('short', join.token), 400, 'validation_failed');
    const plain = await fetchWithoutUpgrade(room.id, join.token);
    expect(plain.status).toBe(426);
  });

  it('refuses subprotocols other than truegather.v1', async () => {
    const room = await createRoom();
    const join = await restJoin(room.id, 'Ann');
    const response = await upgrade(room.id, undefined, {
      headers: { 'Sec-WebSocket-Protocol': `chat, ${join.token}` },
    });
    await expectRefused(response, 400, 'bad_request');
  });
});

describe('GET /ws accepted upgrades', () => {
  it('accepts the token in the query string', async () => {
    const room = await createRoom();
    const join = await restJoin(room.id, 'Ann');
    const socket = await SignalingSocket.open(room.id, join.token, 'query');
    const joined = await socket.expectReply('join_room', { room_id: room.id, display: 'Ann' }, 'joined');
    expect(joined.payload.participant_id).toBe(join.participant_id);
    socket.close();
  });

  it('accepts the token as the second subprotocol and selects truegather.v1', async () => {
    const room = await createRoom();
    const join = await restJoin(room.id, 'Ann');
    const response = await upgrade(room.id, join.token, { via: 'subprotocol' });
    expect(response.status).toBe(101);
    expect(response.headers.get('Sec-WebSocket-Protocol')).toBe('truegather.v1');
    response.webSocket?.accept();
    response.webSocket?.close(1000);
  });

  it('takes the identity from the token, never from client headers', async () => {
    const room = await createRoom();
    const [ann, bob] = [await restJoin(room.id, 'Ann'), await restJoin(room.id, 'Bob')];
    const spoofed = encodeIdentity({
      roomId: room.id,
      participantId: bob.participant_id,
      grants: { publish: true, subscribe: true, admin: true, publish_data: true, hidden: false },
      issuedAt: Math.floor(Date.now() / 1000),
    });
    const response = await upgrade(room.id, ann.token, { headers: { 'X-TrueGather-Identity': spoofed } });
    expect(response.status).toBe(101);
    response.webSocket?.accept();
    const ws = response.webSocket as WebSocket;
    const reply = new Promise<string>((resolve) =>
      ws.addEventListener('message', (event) => resolve(String(event.data))),
    );
    ws.send(JSON.stringify({ type: 'join_room', request_id: 'j', payload: { room_id: room.id, display: 'Ann' } }));
    expect(JSON.parse(await reply)).toMatchObject({ type: 'joined', payload: { participant_id: ann.participant_id } });
    ws.close(1000);
  });
});

function fetchWithoutUpgrade(roomId: string, token: string): Promise<Response> {
  return SELF.fetch(`${BASE_URL}/ws?room_id=${roomId}&token=${token}`);
}

describe('leaving is final for the tokens issued so far', () => {
  const refresh = (roomId: string, token: string) =>
    SELF.fetch(`${BASE_URL}/api/v1/rooms/${roomId}/token`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });

  it('after a leave frame, the same token can neither reconnect nor be refreshed', async () => {
    const room = await createRoom();
    const ann = await joinMember(room.id, 'Ann');
    await ann.socket.expectReply('leave', {}, 'ack');
    expect((await ann.socket.closed).code).toBe(1000);
    await expectRefused(await upgrade(room.id, ann.token), 401, 'unauthorized');
    await expectRefused(await refresh(room.id, ann.token), 401, 'unauthorized');
  });

  it('after REST leave too; other participants are not affected', async () => {
    const room = await createRoom();
    const ann = await joinMember(room.id, 'Ann');
    const bob = await restJoin(room.id, 'Bob');
    const left = await SELF.fetch(`${BASE_URL}/api/v1/rooms/${room.id}/leave`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ann.token}` },
    });
    expect(left.status).toBe(200);
    await expectRefused(await upgrade(room.id, ann.token), 401, 'unauthorized');
    const response = await upgrade(room.id, bob.token);
    expect(response.status).toBe(101);
    response.webSocket?.accept();
    response.webSocket?.close(1000);
    expect((await refresh(room.id, bob.token)).status).toBe(200);
  });
});
