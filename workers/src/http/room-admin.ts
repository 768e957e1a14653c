import type { Context } from 'hono';
import { bearerToken } from '../../../shared/src/service-token.ts';
import { verifyAdminToken } from '../auth/admin-token.ts';
import { verifyParticipantToken } from '../auth/participant-token.ts';
import type { RoomCoordinator } from '../room/room-coordinator.ts';
import { constantTimeEqual } from './api-key.ts';
import type { AppEnv } from './app-env.ts';
import { HttpError } from './errors.ts';

/** Why a request may not administer a room: no credential the edge accepts (401), or not this room's admin (403). */
export type RoomAdminRefusal = { status: 401 | 403; message: string };

/**
 * Whether the request's bearer credential administers `roomId`: the server's `API_KEY`, the room's
 * admin token, or a participant token of that room with the `admin` grant whose participant has not
 * left or been removed. Anything else is refused, a plain participant token included.
 */
export async function roomAdminRefusal(c: Context<AppEnv>, roomId: string): Promise<RoomAdminRefusal | null> {
  const presented = bearerToken(c.req.header('authorization'));
  if (!presented) return { status: 401, message: 'an admin credential is required (Authorization: Bearer …)' };
  const config = c.get('config');
  if (config.apiKey && (await constantTimeEqual(presented, config.apiKey))) return null;
  const admin = await verifyAdminToken(config.jwt, presented);
  if (admin) return admin.room === roomId ? null : { status: 403, message: 'the admin token is for another room' };
  let claims: Awaited<ReturnType<typeof verifyParticipantToken>>;
  try {
    claims = await verifyParticipantToken(config.jwt, presented);
  } catch {
    return { status: 401, message: 'the credential is invalid or expired' };
  }
  if (claims.room !== roomId) return { status: 403, message: 'the token is for another room' };
  if (!claims.grants.admin) return { status: 403, message: 'the token lacks the admin grant' };
  const coordinator = c.env.ROOMS.get(c.env.ROOMS.idFromName(roomId)) as DurableObjectStub<RoomCoordinator>;
  if (await coordinator.hasLeft(claims.sub, claims.iat)) {
    return { status: 401, message: 'this participant has left the room' };
  }
  return null;
}

/** Throws the refusal as the route's 401 / 403. */
export async function requireRoomAdmin(c: Context<AppEnv>, roomId: string): Promise<void> {
  const refusal = await roomAdminRefusal(c, roomId);
  if (!refusal) return;
  if (refusal.status === 401) c.header('WWW-Authenticate', 'Bearer realm="truegather"');
  throw new HttpError(refusal.status, refusal.status === 401 ? 'unauthorized' : 'forbidden', refusal.message);
}
