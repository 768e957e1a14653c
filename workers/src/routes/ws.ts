import { Hono } from 'hono';
import { RoomIdSchema } from '../../../shared/src/ids.ts';
import { LIMITS } from '../../../shared/src/limits.ts';
import { SIGNALING_SUBPROTOCOL } from '../../../shared/src/signaling-socket.ts';
import { verifyParticipantToken } from '../auth/participant-token.ts';
import { edgeConfig } from '../config.ts';
import type { AppEnv } from '../http/app-env.ts';
import { errorResponse, HttpError } from '../http/errors.ts';
import { rateLimit } from '../http/rate-limit.ts';
import { encodeIdentity, IDENTITY_HEADER } from '../room/identity.ts';

interface TokenSource {
  token: string | undefined;
  /** Whether the answer must select `truegather.v1` (the client offered subprotocols). */
  subprotocol: boolean;
}

/**
 * Reads the token from `Sec-WebSocket-Protocol: truegather.v1, <token>` (which keeps it out of URLs
 * and access logs), or else from `?token=`. Offered subprotocols without ours are refused: the
 * browser would fail the handshake if the answer selected none.
 */
function tokenSource(request: Request, queryToken: string | undefined): TokenSource | HttpError {
  const header = request.headers.get('Sec-WebSocket-Protocol');
  if (!header) return { token: queryToken, subprotocol: false };
  const offered = header
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
  if (offered[0] !== SIGNALING_SUBPROTOCOL) {
    return new HttpError(400, 'bad_request', `the only supported subprotocol is ${SIGNALING_SUBPROTOCOL}`);
  }
  return { token: offered[1] ?? queryToken, subprotocol: true };
}

/**
 * `GET /ws?room_id=…` upgrades to the room's signaling socket. The token is verified here, before the
 * Durable Object is touched (requests to objects are billed): a bad, expired, `alg: none` or missing
 * token is a 401, a token for another room a 403, and neither is upgraded. Upgrades are rate limited
 * per client address like the REST routes, before the token is even checked.
 */
export const wsRoutes = new Hono<AppEnv>().get('/ws', rateLimit('ws'), async (c) => {
  try {
    if (c.req.header('Upgrade')?.toLowerCase() !== 'websocket') {
      throw new HttpError(426, 'bad_request', 'expected a WebSocket upgrade');
    }
    const roomId = RoomIdSchema.safeParse(c.req.query('room_id'));
    if (!roomId.success) throw new HttpError(400, 'validation_failed', 'room_id must be a 22-character room id');
    const source = tokenSource(c.req.raw, c.req.query('token'));
    if (source instanceof HttpError) throw source;
    if (!source.token) throw new HttpError(401, 'unauthorized', 'a participant token is required');
    if (source.token.length > LIMITS.tokenMaxChars) throw new HttpError(401, 'unauthorized', 'token is invalid');

    const config = edgeConfig(c.env);
    const claims = await verifyParticipantToken(config.jwt, source.token);
    if (claims.room !== roomId.data) throw new HttpError(403, 'forbidden', 'the token is for another room');

    // A fresh request: nothing the client sent (headers, query, token) reaches the object, only the
    // identity established here.
    const identity = encodeIdentity({
      roomId: claims.room,
      participantId: claims.sub,
      grants: claims.grants,
      issuedAt: claims.iat,
    });
    const stub = c.env.ROOMS.get(c.env.ROOMS.idFromName(claims.room));
    const response = await stub.fetch('https://room.internal/connect', {
      headers: { Upgrade: 'websocket', [IDENTITY_HEADER]: identity },
    });
    // Re-wrapped either way: middleware adds headers, and those of a fetched response are immutable.
    if (response.status !== 101) return new Response(response.body, response);
    return new Response(null, {
      status: 101,
      webSocket: response.webSocket,
      headers: source.subprotocol ? { 'Sec-WebSocket-Protocol': SIGNALING_SUBPROTOCOL } : {},
    });
  } catch (error) {
    if (error instanceof HttpError) return errorResponse(error.status, error.code, error.message, error.details);
    throw error;
  }
});
