import { jwtVerify, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { RefreshTokenResponseSchema } from '../../shared/src/rest.ts';
import { TokenClaimsSchema } from '../../shared/src/token.ts';
import { edgeConfig } from '../../workers/src/config.ts';
import { api, createRoom, edgeEnv, expectError, joinRoom } from './rest-support.ts';

const secret = new TextEncoder().encode(edgeEnv.JWT_SECRET);
const claimsOf = async (token: string) => TokenClaimsSchema.parse((await jwtVerify(token, secret)).payload);

const refresh = (roomId: string, token?: string) =>
  api(`/api/v1/rooms/${roomId}/token`, {
    method: 'POST',
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });

describe('POST /api/v1/rooms/:id/token', () => {
  it('issues a fresh token for the same participant, room, name and grants', async () => {
    const room = await createRoom();
    const join = await joinRoom(room.id, 'Alice');
    const response = await refresh(room.id, join.token);
    expect(response.status).toBe(200);
    const body = RefreshTokenResponseSchema.parse(await response.json());
    expect(body.participant_id).toBe(join.participant_id);
    const [before, after] = [await claimsOf(join.token), await claimsOf(body.token)];
    expect({ ...after, jti: undefined, iat: undefined, exp: undefined }).toEqual({
      ...before,
      jti: undefined,
      iat: undefined,
      exp: undefined,
    });
    expect(after.jti).not.toBe(before.jti);
    expect(after.exp - after.iat).toBeLessThanOrEqual(900);
    expect(new Date(body.expires_at).getTime()).toBe(after.exp * 1000);
  });

  it('refuses a missing or tampered token (401), another room’s token (403), an unknown room (404)', async () => {
    const room = await createRoom();
    const other = await createRoom();
    const join = await joinRoom(room.id);
    await expectError(await refresh(room.id), 401, 'unauthorized');
    await expectError(await refresh(room.id, `${join.token.slice(0, -2)}xx`), 401, 'unauthorized');
    await expectError(await refresh(other.id, join.token), 403, 'forbidden');
    await expectError(await refresh('AAAAAAAAAAAAAAAAAAAAAA', join.token), 403, 'forbidden');
  });

  it('stops at the maximum session age: refreshes keep the session start and never reach past it', async () => {
    const room = await createRoom();
    const join = await joinRoom(room.id, 'Alice');
    const claims = await claimsOf(join.token);
    const maxSession = edgeConfig(edgeEnv).jwt.maxSessionSeconds;
    expect(maxSession).toBe(24 * 3600);
    const now = Math.floor(Date.now() / 1000);
    const resign = (authTime: number) =>
      new SignJWT({ ...claims, iat: now, exp: now + 600, auth_time: authTime })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .sign(secret);

    // A session begun almost 24 h ago is refreshed only up to its end, keeping its start.
    const nearEnd = await refresh(room.id, await resign(now - maxSession + 100));
    expect(nearEnd.status).toBe(200);
    const refreshed = await claimsOf(RefreshTokenResponseSchema.parse(await nearEnd.json()).token);
    expect(refreshed.auth_time).toBe(now - maxSession + 100);
    expect(refreshed.exp).toBeLessThanOrEqual(now + 100);

    // One begun 24 h ago is over, however fresh its token.
    await expectError(await refresh(room.id, await resign(now - maxSession)), 401, 'unauthorized');
  });
});
