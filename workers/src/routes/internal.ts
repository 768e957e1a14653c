import { Hono } from 'hono';
import { EDGE_MEDIA_EVENTS_PATH, MediaEventSchema } from '../../../shared/src/media-control.ts';
import { bearerToken, verifyServiceToken } from '../../../shared/src/service-token.ts';
import { EDGE_AUDIENCE } from '../../../shared/src/token.ts';
import type { AppEnv } from '../http/app-env.ts';
import { HttpError } from '../http/errors.ts';
import { BODY_READ_MAX_BYTES, readJsonBody } from '../http/json-body.ts';
import type { RoomCoordinator } from '../room/room-coordinator.ts';

/**
 * `POST /internal/media-events` (EDGE_MEDIA_EVENTS_PATH): the media node reports what happened to a room's peers (tracks
 * ready, a peer closed, a renegotiation). Signed with MEDIA_NODE_SECRET and audience
 * `truegather-edge-internal`, so no client can forge one; handed to the room's Durable Object.
 */
export const internalRoutes = new Hono<AppEnv>();

internalRoutes.post(EDGE_MEDIA_EVENTS_PATH, async (c) => {
  const secret = c.get('config').mediaNode?.secret;
  if (!secret) throw new HttpError(404, 'not_found', 'no media node is configured');
  const token = bearerToken(c.req.header('authorization'));
  if (!token) throw new HttpError(401, 'unauthorized', 'a service token is required');
  try {
    await verifyServiceToken(token, secret, EDGE_AUDIENCE);
  } catch {
    throw new HttpError(401, 'unauthorized', 'the service token is invalid');
  }
  // Events carry SDP (up to 64 KiB, more once JSON-escaped): above the 16 KiB limit of client bodies.
  const event = await readJsonBody(c, MediaEventSchema, BODY_READ_MAX_BYTES);
  const room = c.env.ROOMS.get(c.env.ROOMS.idFromName(event.room_id)) as DurableObjectStub<RoomCoordinator>;
  await room.handleMediaEvent(event);
  return c.json({ ok: true as const });
});
