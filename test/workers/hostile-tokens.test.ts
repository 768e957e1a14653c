import { env, SELF } from 'cloudflare:test';
import { beforeAll, describe, expect, it } from 'vitest';
import { ErrorEnvelopeSchema } from '../../shared/src/errors.ts';
import { newId } from '../../shared/src/ids.ts';
import { EDGE_AUDIENCE, MEDIA_NODE_AUDIENCE, TOKEN_AUDIENCE, TOKEN_ISSUER } from '../../shared/src/token.ts';
import { edgeConfig } from '../../workers/src/config.ts';
import { hostileTokens } from '../support/hostile-tokens.ts';
import { createRoom, joinMember, restJoin, storedParticipants } from './support/rooms.ts';
import { BASE_URL, upgrade } from './support/signaling-socket.ts';

/**
 * Every hostile participant token is refused on every surface that takes one: the WebSocket
 * upgrade, REST leave and REST token refresh. A refusal changes nothing: the participant the token
 * names (really in the room) stays connected.
 */

const rest = (roomId: string, action: 'leave' | 'token', token: string) =>
  SELF.fetch(`${BASE_URL}/api/v1/rooms/${roomId}/${action}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
  });

async function expectRefused(response: Response, status: number, code: string, label: string): Promise<void> {
  expect(response.status, label).toBe(status);
  expect(response.webSocket ?? null, label).toBeNull();
  expect(ErrorEnvelopeSchema.parse(await response.json()).error.code, label).toBe(code);
}

/** Each surface, with the token: what a client would send. */
const SURFACES = {
  'WebSocket upgrade (query)': (roomId: string, token: string) => upgrade(roomId, token),
  'WebSocket upgrade (subprotocol)': (roomId: string, token: string) => upgrade(roomId, token, { via: 'subprotocol' }),
  'REST leave': (roomId: string, token: string) => rest(roomId, 'leave', token),
  'REST token refresh': (roomId: string, token: string) => rest(roomId, 'token', token),
};

describe('hostile participant tokens', () => {
  let roomId: string;
  let victimId: string;
  let tokens: [string, string][];

  beforeAll(async () => {
    roomId = (await createRoom()).id;
    // A real participant, connected: the forged tokens name them, so that acceptance would show.
    const victim = await joinMember(roomId, 'Victim');
    victimId = victim.participantId;
    tokens = await hostileTokens({
      secret: edgeConfig(env).jwt.secret,
      claims: {
        iss: TOKEN_ISSUER,
        aud: TOKEN_AUDIENCE,
        sub: victimId,
        room: roomId,
        name: 'Victim',
        grants: { publish: true, subscribe: true, admin: true },
        jti: newId(),
      },
      wrongAudience: MEDIA_NODE_AUDIENCE,
      wrongIssuer: 'mallory',
      lifetimeSeconds: 900,
    });
  });

  for (const [surface, send] of Object.entries(SURFACES)) {
    it(`${surface} refuses each with 401 and changes nothing`, async () => {
      for (const [label, token] of tokens) {
        await expectRefused(await send(roomId, token), 401, 'unauthorized', `${surface}: ${label}`);
      }
      expect(await storedParticipants(roomId)).toBe(1);
    });
  }

  it('refuses the edge’s own service-token audience as a participant token', async () => {
    const [, internal] = (
      await hostileTokens({
        secret: edgeConfig(env).jwt.secret,
        claims: { iss: TOKEN_ISSUER, aud: EDGE_AUDIENCE, sub: victimId, room: roomId },
        wrongAudience: EDGE_AUDIENCE,
        wrongIssuer: TOKEN_ISSUER,
        lifetimeSeconds: 30,
      })
    ).find(([label]) => label === 'for the wrong audience')!;
    for (const [surface, send] of Object.entries(SURFACES)) {
      await expectRefused(await send(roomId, internal), 401, 'unauthorized', surface);
    }
  });

  it('refuses another room’s token with 403 on every surface', async () => {
    const other = await createRoom();
    const foreign = await restJoin(other.id, 'Eve');
    for (const [surface, send] of Object.entries(SURFACES)) {
      await expectRefused(await send(roomId, foreign.token), 403, 'forbidden', surface);
    }
    expect(await storedParticipants(roomId)).toBe(1);
  });

  it('refuses a token replayed after its participant left, on every surface', async () => {
    const room = await createRoom();
    const leaver = await joinMember(room.id, 'Leaver');
    const stayer = await joinMember(room.id, 'Stayer');
    await leaver.socket.expectReply('leave', {}, 'ack');
    await leaver.socket.closed;
    for (const [surface, send] of Object.entries(SURFACES)) {
      await expectRefused(await send(room.id, leaver.token), 401, 'unauthorized', surface);
    }
    // The one who stayed is untouched.
    expect(stayer.socket.isClosed).toBe(false);
    stayer.socket.sendRaw('ping');
    await stayer.socket.nextRaw('pong');
    stayer.socket.close();
  });
});
