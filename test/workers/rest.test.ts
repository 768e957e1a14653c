import { SELF } from 'cloudflare:test';
import { decodeProtectedHeader, jwtVerify, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { newId } from '../../shared/src/ids.ts';
import { HealthResponseSchema, JoinRoomResponseSchema, RoomDetailsSchema, RoomSchema } from '../../shared/src/rest.ts';
import { TOKEN_AUDIENCE, TOKEN_ISSUER, TokenClaimsSchema } from '../../shared/src/token.ts';
import { issueParticipantToken } from '../../workers/src/auth/participant-token.ts';
import { edgeConfig } from '../../workers/src/config.ts';
import { api, createRoom, edgeEnv, expectError, expectedStore, joinRoom, postJson } from './rest-support.ts';
import { FakeMediaNode, fakeSdp } from './support/fake-media-node.ts';
import { joinMember, useMediaNode } from './support/rooms.ts';

/**
 * The REST API as a client meets it, through the Worker's fetch handler. The workers project runs it
 * on the embedded store, workers-upstash on Upstash (a real redis-server behind the local endpoint).
 */

const secret = new TextEncoder().encode(edgeEnv.JWT_SECRET);
const config = edgeConfig(edgeEnv);

async function getRoomDetails(roomId: string) {
  const response = await api(`/api/v1/rooms/${roomId}`);
  expect(response.status).toBe(200);
  return RoomDetailsSchema.parse(await response.json());
}

describe('POST /api/v1/rooms', () => {
  it('creates a room from the seed curl example', async () => {
    const response = await postJson('/api/v1/rooms', '{"name": "Ma Réunion", "max_publishers": 10}');
    expect(response.status).toBe(201);
    const room = RoomSchema.parse(await response.json());
    expect(room).toMatchObject({ name: 'Ma Réunion', max_publishers: 10 });
    expect(room.id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(response.headers.get('location')).toBe(`/api/v1/rooms/${room.id}`);
    const lifetime = Date.parse(room.expires_at) - Date.parse(room.created_at);
    expect(lifetime).toBe(config.roomTtlSeconds * 1000);
  });

  it('defaults max_publishers to 10 and trims the name', async () => {
    const room = await createRoom({ name: '  Stand-up  ' });
    expect(room).toMatchObject({ name: 'Stand-up', max_publishers: 10 });
  });

  it('accepts JSON sent without a Content-Type (curl -d without -H)', async () => {
    const response = await api('/api/v1/rooms', { method: 'POST', body: '{"name":"No header"}' });
    expect(response.status).toBe(201);
  });

  it('keeps names that look like numbers or JSON as text', async () => {
    for (const name of ['123', 'true', '{"a":1}', 'null']) {
      const room = await createRoom({ name });
      expect((await getRoomDetails(room.id)).name).toBe(name);
    }
  });

  it.each([
    ['an empty name', { name: '' }],
    ['a blank name', { name: '   ' }],
    ['a 100 kB name', { name: 'x'.repeat(100_000) }],
    ['a 129-character name', { name: 'x'.repeat(129) }],
    ['no name', { max_publishers: 2 }],
    ['a numeric name', { name: 42 }],
    ['max_publishers -1', { name: 'r', max_publishers: -1 }],
    ['max_publishers "ten"', { name: 'r', max_publishers: 'ten' }],
    ['max_publishers 1e9', { name: 'r', max_publishers: 1e9 }],
    ['max_publishers 0', { name: 'r', max_publishers: 0 }],
    ['max_publishers 1.5', { name: 'r', max_publishers: 1.5 }],
    ['an unknown field', { name: 'r', admin: true }],
    ['an array', [{ name: 'r' }]],
    ['null', null],
  ])('answers 400 validation_failed for %s', async (_label, body) => {
    const error = await expectError(await postJson('/api/v1/rooms', body), 400, 'validation_failed');
    expect(error.details).toEqual(expect.arrayContaining([expect.objectContaining({ message: expect.any(String) })]));
    // The rejected value is never echoed back.
    expect(JSON.stringify(error)).not.toContain('xxxxxxxxxx');
  });

  it('answers 400 bad_request for malformed JSON and an empty body', async () => {
    await expectError(await postJson('/api/v1/rooms', '{"name": "Ma Réunion",'), 400, 'bad_request');
    await expectError(await postJson('/api/v1/rooms', ''), 400, 'bad_request');
    await expectError(await api('/api/v1/rooms', { method: 'POST' }), 400, 'bad_request');
  });

  it('answers 413 for a valid body over 16 KiB and for any body over 256 KiB', async () => {
    const padded = `{"name": "Padded"${' '.repeat(17 * 1024)}}`;
    await expectError(await postJson('/api/v1/rooms', padded), 413, 'payload_too_large');
    await expectError(await postJson('/api/v1/rooms', 'x'.repeat(300 * 1024)), 413, 'payload_too_large');
    const chunked = new Blob(['{"name":"', 'y'.repeat(300 * 1024), '"}']).stream();
    await expectError(await api('/api/v1/rooms', { method: 'POST', body: chunked }), 413, 'payload_too_large');
  });
});

describe('GET /api/v1/rooms/:id', () => {
  it('returns the room with its connected participants and publishers', async () => {
    const room = await createRoom({ name: 'Details', max_publishers: 3 });
    expect(await getRoomDetails(room.id)).toEqual({ ...room, participants: 0, publishers: [] });

    // Participants count once they have joined over the WebSocket, publishers once they offer.
    const bob = await joinMember(room.id, 'Bob');
    const alice = await joinMember(room.id, 'Alice');
    useMediaNode(room.id, new FakeMediaNode());
    await alice.socket.expectReply('publish_offer', { sdp: fakeSdp('Alice offer') }, 'publish_answer');
    const details = await getRoomDetails(room.id);
    expect(details.participants).toBe(2);
    expect(details.publishers.map(({ id, display }) => ({ id, display }))).toEqual([
      { id: alice.participantId, display: 'Alice' },
    ]);
    // With the streams the answer negotiated, and their muted state.
    expect(details.publishers[0].streams.map(({ kind, muted }) => `${kind}:${muted}`)).toEqual([
      'audio:false',
      'video:false',
    ]);
    for (const member of [alice, bob]) member.socket.close();
  });

  it('answers 404 for an unknown or malformed room id', async () => {
    await expectError(await api(`/api/v1/rooms/${newId()}`), 404, 'not_found');
    await expectError(await api('/api/v1/rooms/not-a-room'), 404, 'not_found');
  });
});

describe('POST /api/v1/rooms/:id/join', () => {
  it('issues the pinned HS256 token for the seed example', async () => {
    const room = await createRoom();
    const response = await postJson(`/api/v1/rooms/${room.id}/join`, '{"display": "Alice"}');
    expect(response.status).toBe(200);
    const joined = JoinRoomResponseSchema.parse(await response.json());

    expect(decodeProtectedHeader(joined.token)).toEqual({ alg: 'HS256', typ: 'JWT' });
    const { payload } = await jwtVerify(joined.token, secret, {
      algorithms: ['HS256'],
      issuer: TOKEN_ISSUER,
      audience: TOKEN_AUDIENCE,
    });
    const claims = TokenClaimsSchema.parse(payload);
    expect(claims).toMatchObject({
      sub: joined.participant_id,
      room: room.id,
      name: 'Alice',
      grants: { publish: true, subscribe: true, admin: false },
    });
    expect(claims.exp - claims.iat).toBeLessThanOrEqual(900);
    expect(claims.exp - claims.iat).toBe(config.jwt.expirySeconds);
    expect(joined).toMatchObject({
      room_id: room.id,
      expires_at: new Date(claims.exp * 1000).toISOString(),
      ws_url: `ws://example.com/ws?room_id=${room.id}`,
      ice_servers: [],
    });
    expect(joined.participant_id).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  it('gives every join a new participant id, and a wss:// URL behind https', async () => {
    const room = await createRoom();
    const [first, second] = [await joinRoom(room.id), await joinRoom(room.id)];
    expect(first.participant_id).not.toBe(second.participant_id);
    const response = await SELF.fetch(`https://example.com/api/v1/rooms/${room.id}/join`, {
      method: 'POST',
      body: '{"display":"Alice"}',
    });
    expect(JoinRoomResponseSchema.parse(await response.json()).ws_url).toBe(`wss://example.com/ws?room_id=${room.id}`);
  });

  it('does not add the participant (the WebSocket join does) but extends the room', async () => {
    const room = await createRoom();
    await joinRoom(room.id);
    const details = await getRoomDetails(room.id);
    expect(details.participants).toBe(0);
    expect(Date.parse(details.expires_at)).toBeGreaterThanOrEqual(Date.parse(room.expires_at));
  });

  it('answers 404 for an unknown room', async () => {
    await expectError(await postJson(`/api/v1/rooms/${newId()}/join`, { display: 'Alice' }), 404, 'not_found');
    await expectError(await postJson('/api/v1/rooms/nope/join', { display: 'Alice' }), 404, 'not_found');
  });

  it.each([
    ['a missing display', {}],
    ['an empty display', { display: '' }],
    ['a 5,000-character display', { display: 'd'.repeat(5000) }],
    ['a 65-character display', { display: 'd'.repeat(65) }],
    ['a numeric display', { display: 7 }],
    ['an unknown field', { display: 'Alice', admin: true }],
  ])('answers 400 for %s and leaves the room unchanged', async (_label, body) => {
    const room = await createRoom();
    const before = await getRoomDetails(room.id);
    await expectError(await postJson(`/api/v1/rooms/${room.id}/join`, body), 400, 'validation_failed');
    expect(await getRoomDetails(room.id)).toEqual(before);
  });

  it('answers 400 for malformed JSON and an empty body', async () => {
    const room = await createRoom();
    await expectError(await postJson(`/api/v1/rooms/${room.id}/join`, '{"display":'), 400, 'bad_request');
    await expectError(await postJson(`/api/v1/rooms/${room.id}/join`, ''), 400, 'bad_request');
  });
});

describe('POST /api/v1/rooms/:id/leave', () => {
  const leave = (roomId: string, authorization?: string) =>
    api(`/api/v1/rooms/${roomId}/leave`, {
      method: 'POST',
      headers: authorization ? { Authorization: authorization } : {},
    });

  it('answers 401 without a token, naming the scheme', async () => {
    const room = await createRoom();
    const response = await leave(room.id);
    await expectError(response, 401, 'unauthorized');
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer/);
    await expectError(await leave(room.id, 'Basic dXNlcjpwYXNz'), 401, 'unauthorized');
  });

  it('answers 401 for tampered, foreign, expired and unsigned tokens', async () => {
    const room = await createRoom();
    const { token } = await joinRoom(room.id);
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const claims = JSON.parse(atob(payload.replace(/-/g, '+').replace(/_/g, '/')));
    const forged = btoa(JSON.stringify({ ...claims, grants: { ...claims.grants, admin: true } }))
      .replace(/\+/g, '-')
      .replace(/\//g, '_')
      .replace(/=+$/, '');
    const flipped = `${signature.slice(0, -2)}${signature.endsWith('AA') ? 'BB' : 'AA'}`;
    const otherSecret = new TextEncoder().encode('another-secret-that-is-32-bytes-long!!');
    const now = Math.floor(Date.now() / 1000);
    const sign = (key: Uint8Array, body: Record<string, unknown>) =>
      new SignJWT(body).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(key);
    const unsigned = `${btoa('{"alg":"none","typ":"JWT"}').replace(/=+$/, '')}.${payload}.`;

    for (const bad of [
      `${header}.${forged}.${signature}`,
      `${header}.${payload}.${flipped}`,
      await sign(otherSecret, claims),
      await sign(secret, { ...claims, iat: now - 2000, exp: now - 1000 }),
      unsigned,
      'not-a-jwt',
    ]) {
      await expectError(await leave(room.id, `Bearer ${bad}`), 401, 'unauthorized');
    }
    const expired = await leave(
      room.id,
      `Bearer ${await sign(secret, { ...claims, iat: now - 2000, exp: now - 1000 })}`,
    );
    expect((await expectError(expired, 401, 'unauthorized')).message).toMatch(/expired/);
  });

  it('answers 403 when the token is for another room', async () => {
    const [room, other] = [await createRoom(), await createRoom()];
    const { token } = await joinRoom(room.id);
    await expectError(await leave(other.id, `Bearer ${token}`), 403, 'forbidden');
  });

  it('answers 404 when the token is valid but the room is gone', async () => {
    const roomId = newId();
    const { token } = await issueParticipantToken(config.jwt, {
      roomId,
      participantId: newId(),
      display: 'Ghost',
      grants: { publish: true, subscribe: true, admin: false },
    });
    await expectError(await leave(roomId, `Bearer ${token}`), 404, 'not_found');
  });

  it('disconnects the participant through the room coordinator', async () => {
    const room = await createRoom();
    const { token } = await joinRoom(room.id);
    const response = await leave(room.id, `Bearer ${token}`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ left: true });
  });
});

describe('GET /health', () => {
  it("reports the store's state", async () => {
    const response = await api('/health');
    expect(response.status).toBe(200);
    const health = HealthResponseSchema.parse(await response.json());
    expect(health).toMatchObject({ status: 'ok', checks: { store: { status: 'ok', detail: expectedStore } } });
  });
});

describe('GET /openapi.json', () => {
  it('documents every route with the contract schemas', async () => {
    const response = await api('/openapi.json');
    expect(response.status).toBe(200);
    // biome-ignore lint/suspicious/noExplicitAny: walking a generated OpenAPI document
    const document = (await response.json()) as any;
    expect(document.openapi).toBe('3.1.0');
    expect(Object.keys(document.paths).sort()).toEqual([
      '/api/v1/rooms',
      '/api/v1/rooms/{id}',
      '/api/v1/rooms/{id}/join',
      '/api/v1/rooms/{id}/leave',
      '/api/v1/rooms/{id}/participants',
      '/api/v1/rooms/{id}/participants/{pid}',
      '/api/v1/rooms/{id}/participants/{pid}/mute',
      '/api/v1/rooms/{id}/participants/{pid}/remove',
      '/api/v1/rooms/{id}/token',
      '/health',
    ]);
    expect(document.components.schemas.CreateRoomRequest.properties.name.maxLength).toBe(128);
    expect(document.paths['/api/v1/rooms'].post.responses['201'].content['application/json'].schema).toEqual({
      $ref: '#/components/schemas/CreatedRoom',
    });
    // The admin routes, with the room admin credential and their schemas.
    const room = document.paths['/api/v1/rooms/{id}'];
    expect(Object.keys(room).sort()).toEqual(['delete', 'get']);
    expect(room.delete.security).toEqual([{ roomAdmin: [] }]);
    const participant = document.paths['/api/v1/rooms/{id}/participants/{pid}'];
    expect(participant.patch.requestBody.content['application/json'].schema).toEqual({
      $ref: '#/components/schemas/UpdateParticipantRequest',
    });
    expect(document.components.schemas.JoinRoomRequest.properties.grants).toBeDefined();
    expect(document.components.securitySchemes.roomAdmin.scheme).toBe('bearer');
  });
});

describe('every answer', () => {
  it('is a JSON 404 for unknown routes', async () => {
    await expectError(await api('/api/v1/nope'), 404, 'not_found');
    await expectError(await api('/api/v2/rooms', { method: 'POST', body: '{}' }), 404, 'not_found');
  });

  it('is a JSON 405 with Allow for a known route and the wrong method', async () => {
    const room = await createRoom();
    const cases: [string, string, string][] = [
      ['PUT', '/api/v1/rooms', 'POST, OPTIONS'],
      ['GET', '/api/v1/rooms', 'POST, OPTIONS'],
      ['PUT', `/api/v1/rooms/${room.id}`, 'GET, DELETE, HEAD, OPTIONS'],
      ['GET', `/api/v1/rooms/${room.id}/join`, 'POST, OPTIONS'],
      ['POST', '/health', 'GET, HEAD, OPTIONS'],
    ];
    for (const [method, path, allow] of cases) {
      const response = await api(path, { method });
      await expectError(response, 405, 'method_not_allowed');
      expect(response.headers.get('allow')).toBe(allow);
    }
  });

  it('carries a request id: a well-formed incoming one, else a new one', async () => {
    const echoed = await api('/health', { headers: { 'X-Request-Id': 'trace-123_abc' } });
    expect(echoed.headers.get('x-request-id')).toBe('trace-123_abc');
    for (const bad of ['has spaces', 'x'.repeat(65)]) {
      const replaced = await api('/api/v1/nope', { headers: { 'X-Request-Id': bad } });
      expect(replaced.headers.get('x-request-id')).toMatch(/^[A-Za-z0-9_-]{22}$/);
    }
    const [a, b] = await Promise.all([api('/health'), api('/health')]);
    expect(a.headers.get('x-request-id')).not.toBe(b.headers.get('x-request-id'));
  });

  it('allows any origin by default and answers CORS preflights', async () => {
    const preflight = await api('/api/v1/rooms', {
      method: 'OPTIONS',
      headers: {
        Origin: 'https://app.example',
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'content-type,authorization',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('*');
    expect(preflight.headers.get('access-control-allow-methods')).toContain('POST');
    expect(preflight.headers.get('access-control-allow-headers')).toContain('Authorization');
    const actual = await api('/health', { headers: { Origin: 'https://app.example' } });
    expect(actual.headers.get('access-control-allow-origin')).toBe('*');
    expect(actual.headers.get('access-control-expose-headers')).toContain('X-Request-Id');
  });
});
