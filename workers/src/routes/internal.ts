import { Hono } from 'hono';
import { EDGE_MEDIA_EVENTS_PATH, MediaEventSchema } from '../../../shared/src/media-control.ts';
import { bearerToken, bodyDigest, verifyServiceToken } from '../../../shared/src/service-token.ts';
import { EDGE_AUDIENCE, MediaEventTokenClaimsSchema } from '../../../shared/src/token.ts';
import type { AppEnv } from '../http/app-env.ts';
import { HttpError } from '../http/errors.ts';
import { BODY_READ_MAX_BYTES, readJsonBodyText } from '../http/json-body.ts';
import type { RoomCoordinator } from '../room/room-coordinator.ts';

/**
 * `POST /internal/media-events` (EDGE_MEDIA_EVENTS_PATH): the media node reports what happened to a
 * room's peers (tracks ready, a peer closed, a renegotiation). The token (MEDIA_NODE_SECRET, audience
 * `truegather-edge-internal`) is bound to the body (`body_sha256`) and to the event's room (`room`);
 * the room's Durable Object then accepts it only from the node the room is pinned to (`iss`) and only
 * once (`jti`). Answers: 401 bad token or body digest, 403 another room or another node, 409 replay.
 */
export const internalRoutes = new Hono<AppEnv>();

internalRoutes.post(EDGE_MEDIA_EVENTS_PATH, async (c) => {
  const secret = c.get('config').mediaNode?.secret;
  if (!secret) throw new HttpError(404, 'not_found', 'no media node is configured');
  const token = bearerToken(c.req.header('authorization'));
  if (!token) throw new HttpError(401, 'unauthorized', 'a service token is required');
  let claims: Awaited<ReturnType<typeof verifyServiceToken<typeof MediaEventTokenClaimsSchema>>>;
  try {
    claims = await verifyServiceToken(token, secret, EDGE_AUDIENCE, undefined, MediaEventTokenClaimsSchema);
  } catch {
    throw new HttpError(401, 'unauthorized', 'the service token is invalid');
  }
  // Events carry SDP (up to 64 KiB, more once JSON-escaped): above the 16 KiB limit of client bodies.
  const { data: event, text } = await readJsonBodyText(c, MediaEventSchema, BODY_READ_MAX_BYTES);
  if ((await bodyDigest(text)) !== claims.body_sha256) {
    throw new HttpError(401, 'unauthorized', 'the service token was not issued for this body');
  }
  if (event.room_id !== claims.room) throw new HttpError(403, 'forbidden', 'the service token is for another room');
  const room = c.env.ROOMS.get(c.env.ROOMS.idFromName(event.room_id)) as DurableObjectStub<RoomCoordinator>;
  const verdict = await room.handleNodeEvent(event, { issuer: claims.iss, jti: claims.jti, expiresAt: claims.exp });
  if (verdict === 'replayed') throw new HttpError(409, 'conflict', 'this service token was already used');
  if (verdict === 'other_node') {
    throw new HttpError(403, 'forbidden', 'the room is not on the node that issued this token');
  }
  return c.json({ ok: true as const });
});
