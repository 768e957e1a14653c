import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { ErrorEnvelopeSchema } from '../../../shared/src/errors.ts';
import { newId, RoomIdSchema } from '../../../shared/src/ids.ts';
import {
  type CreatedRoom,
  CreatedRoomSchema,
  CreateRoomRequestSchema,
  JoinRoomRequestSchema,
  type JoinRoomResponse,
  JoinRoomResponseSchema,
  type LeaveRoomResponse,
  LeaveRoomResponseSchema,
  type RefreshTokenResponse,
  RefreshTokenResponseSchema,
  type RoomDetails,
  RoomDetailsSchema,
  RoomSchema,
} from '../../../shared/src/rest.ts';
import { bearerToken } from '../../../shared/src/service-token.ts';
import { issueAdminToken } from '../auth/admin-token.ts';
import { issueParticipantToken, verifyParticipantToken } from '../auth/participant-token.ts';
import { iceServersFor } from '../auth/turn-credentials.ts';
import { requireApiKey } from '../http/api-key.ts';
import type { AppEnv } from '../http/app-env.ts';
import { HttpError } from '../http/errors.ts';
import { readJsonBody } from '../http/json-body.ts';
import { rateLimit } from '../http/rate-limit.ts';
import { roomAdminRefusal } from '../http/room-admin.ts';
import type { RoomCoordinator } from '../room/room-coordinator.ts';
import { roomRepository } from '../store/index.ts';
import { documented, registerSchema } from './documented.ts';

export const roomRoutes = new OpenAPIHono<AppEnv>();
roomRoutes.openAPIRegistry.registerComponent('securitySchemes', 'apiKey', {
  type: 'http',
  scheme: 'bearer',
  description: 'API_KEY, when the server sets one',
});
roomRoutes.openAPIRegistry.registerComponent('securitySchemes', 'roomAdmin', {
  type: 'http',
  scheme: 'bearer',
  description:
    "API_KEY, the room's admin_token (from room creation), or a participant token of the room with the admin grant",
});
roomRoutes.openAPIRegistry.registerComponent('securitySchemes', 'participantToken', {
  type: 'http',
  scheme: 'bearer',
  bearerFormat: 'JWT',
  description: 'The token returned by join',
});

/** Named components of the document (`$ref`s), used by the definitions below. */
export const register = <S extends z.ZodType>(name: string, schema: S): S => registerSchema(roomRoutes, name, schema);
export const Schemas = {
  CreateRoomRequest: register('CreateRoomRequest', CreateRoomRequestSchema),
  Room: register('Room', RoomSchema),
  CreatedRoom: register('CreatedRoom', CreatedRoomSchema),
  RoomDetails: register('RoomDetails', RoomDetailsSchema),
  JoinRoomRequest: register('JoinRoomRequest', JoinRoomRequestSchema),
  JoinRoomResponse: register('JoinRoomResponse', JoinRoomResponseSchema),
  LeaveRoomResponse: register('LeaveRoomResponse', LeaveRoomResponseSchema),
  RefreshTokenResponse: register('RefreshTokenResponse', RefreshTokenResponseSchema),
  ErrorEnvelope: register('ErrorEnvelope', ErrorEnvelopeSchema),
};

export const json = <S extends z.ZodType>(schema: S, description: string) => ({
  description,
  content: { 'application/json': { schema } },
});
export const error = (description: string) => json(Schemas.ErrorEnvelope, description);
export const RoomParamsSchema = z.object({ id: RoomIdSchema });

const createRoomRoute = createRoute({
  method: 'post',
  path: '/api/v1/rooms',
  summary: 'Create a room',
  description: 'Open unless API_KEY is set; then it requires `Authorization: Bearer <API_KEY>`.',
  security: [{}, { apiKey: [] }],
  request: { body: { required: true, content: { 'application/json': { schema: Schemas.CreateRoomRequest } } } },
  responses: {
    201: json(Schemas.CreatedRoom, "The room and its admin_token (the creator's admin rights); `Location` is its URL"),
    400: error('Malformed JSON, empty body or invalid fields'),
    401: error('API_KEY is set and the request does not carry it'),
    413: error('Body larger than 16 KiB'),
    429: error('Too many requests from this client (`Retry-After`)'),
    503: error('The room store is unavailable'),
  },
});

const getRoomRoute = createRoute({
  method: 'get',
  path: '/api/v1/rooms/{id}',
  summary: 'Get a room with its connected participant count and publishers',
  request: { params: RoomParamsSchema },
  responses: {
    200: json(Schemas.RoomDetails, 'The room'),
    404: error('No such room (unknown, malformed or expired id)'),
    503: error('The room store is unavailable'),
  },
});

const joinRoomRoute = createRoute({
  method: 'post',
  path: '/api/v1/rooms/{id}/join',
  summary: 'Get a participant token and connection details for a room',
  description:
    'Issues an HS256 token valid for JWT_EXPIRY_SECONDS. The participant appears in the room once it ' +
    'connects to `ws_url` with the token (query `token=` or a `Sec-WebSocket-Protocol` entry) and joins. ' +
    'Open, unless the body asks for `grants`: that needs the room admin credential (else 403).',
  security: [{}, { roomAdmin: [] }],
  request: {
    params: RoomParamsSchema,
    body: { required: true, content: { 'application/json': { schema: Schemas.JoinRoomRequest } } },
  },
  responses: {
    200: json(Schemas.JoinRoomResponse, 'Token, ids, WebSocket URL and ICE servers'),
    400: error('Malformed JSON, empty body or invalid display name'),
    403: error('`grants` asked for without the room admin credential'),
    404: error('No such room'),
    409: error('The room has MAX_PARTICIPANTS connected participants (`room_full`)'),
    413: error('Body larger than 16 KiB'),
    429: error('Too many requests from this client (`Retry-After`)'),
    503: error('The room store is unavailable'),
  },
});

/** A POST on a room that takes the participant's own token (leave, refresh). */
const participantTokenRoute = <S extends z.ZodType>(
  action: string,
  summary: string,
  ok: ReturnType<typeof json<S>>,
  unauthorized: string,
) =>
  createRoute({
    method: 'post',
    path: `/api/v1/rooms/{id}/${action}`,
    summary,
    security: [{ participantToken: [] }],
    request: { params: RoomParamsSchema },
    responses: {
      200: ok,
      401: error(unauthorized),
      403: error('The token is for another room'),
      404: error('No such room'),
      429: error('Too many requests from this client (`Retry-After`)'),
      503: error('The room store is unavailable'),
    },
  });

const leaveRoomRoute = participantTokenRoute(
  'leave',
  "Leave a room: disconnects the token's participant",
  json(Schemas.LeaveRoomResponse, 'Left'),
  'Missing, invalid or expired participant token',
);

const refreshTokenRoute = participantTokenRoute(
  'token',
  'Refresh a participant token before it expires: same participant, new expiry',
  json(Schemas.RefreshTokenResponse, 'A fresh token for the same participant'),
  'Missing, invalid or expired participant token, or a session older than MAX_SESSION_SECONDS',
);

export const roomNotFound = () => new HttpError(404, 'not_found', 'room not found');

/** The `:id` of the path; a malformed id cannot name a room, so it is a 404 like any unknown id. */
export function roomIdParam(c: Context<AppEnv>): string {
  const parsed = RoomIdSchema.safeParse(c.req.param('id'));
  if (!parsed.success) throw roomNotFound();
  return parsed.data;
}

export const repository = (c: Context<AppEnv>) => roomRepository(c.env, c.get('config'));

roomRoutes.post(documented(roomRoutes, createRoomRoute), rateLimit('create'), requireApiKey, async (c) => {
  const input = await readJsonBody(c, CreateRoomRequestSchema);
  const stored = await repository(c).createRoom(input);
  const room: CreatedRoom = { ...stored, admin_token: await issueAdminToken(c.get('config').jwt, stored.id) };
  c.get('logger').info('room created', { room_id: room.id, max_publishers: room.max_publishers });
  c.header('Location', `/api/v1/rooms/${room.id}`);
  return c.json(room, 201);
});

roomRoutes.get(documented(roomRoutes, getRoomRoute), rateLimit('room'), async (c) => {
  const roomId = roomIdParam(c);
  // Reading does not extend the room's life: only joins and signaling activity do.
  const room = await repository(c).getRoom(roomId);
  if (!room) throw roomNotFound();
  // Who is in the room is its coordinator's to say (the store only mirrors it).
  const live = await roomCoordinator(c, roomId).liveState();
  const details: RoomDetails = {
    ...room,
    participants: live.participants.length,
    publishers: live.publishers,
  };
  return c.json(details, 200);
});

roomRoutes.post(documented(roomRoutes, joinRoomRoute), rateLimit('join'), async (c) => {
  const roomId = roomIdParam(c);
  const { display, grants } = await readJsonBody(c, JoinRoomRequestSchema);
  if (grants && (await roomAdminRefusal(c, roomId))) {
    throw new HttpError(403, 'forbidden', 'asking for grants needs the room admin credential');
  }
  const config = c.get('config');
  const rooms = repository(c);
  const room = await rooms.getRoom(roomId);
  if (!room) throw roomNotFound();
  // The same cap join_room checks, asked of the room's coordinator, which alone knows who is in.
  if (!(await roomCoordinator(c, roomId).admitsNewParticipant())) {
    throw new HttpError(409, 'room_full', `the room already has ${config.maxParticipants} participants`);
  }
  if (!(await rooms.touchRoom(roomId))) throw roomNotFound();

  const participantId = newId();
  const issued = await issueParticipantToken(config.jwt, {
    roomId,
    participantId,
    display,
    grants: { publish: true, subscribe: true, admin: false, ...grants },
  });
  const url = new URL(c.req.url);
  const wsUrl = new URL('/ws', url);
  wsUrl.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  wsUrl.searchParams.set('room_id', roomId);
  const response: JoinRoomResponse = {
    token: issued.token,
    participant_id: participantId,
    room_id: roomId,
    expires_at: issued.expiresAt.toISOString(),
    ws_url: wsUrl.toString(),
    ice_servers: await iceServersFor(config.ice, participantId),
  };
  c.get('logger').info('participant token issued', { room_id: roomId, participant_id: participantId });
  return c.json(response, 200);
});

/** The verified claims of the request's participant token, which must be for the room in the path. */
async function participantClaims(c: Context<AppEnv>) {
  const token = bearerToken(c.req.header('authorization'));
  if (!token) {
    c.header('WWW-Authenticate', 'Bearer realm="truegather"');
    throw new HttpError(401, 'unauthorized', 'a participant token is required (Authorization: Bearer <token>)');
  }
  const claims = await verifyParticipantToken(c.get('config').jwt, token);
  if (claims.room !== c.req.param('id')) throw new HttpError(403, 'forbidden', 'the token is for another room');
  const roomId = roomIdParam(c);
  if (!(await repository(c).getRoom(roomId))) throw roomNotFound();
  // Leaving is final for the tokens issued before it: a replayed leave or refresh is refused too.
  if (await roomCoordinator(c, claims.room).hasLeft(claims.sub, claims.iat)) {
    throw new HttpError(401, 'unauthorized', 'this participant has left the room; join it again');
  }
  return claims;
}

export function roomCoordinator(c: Context<AppEnv>, roomId: string): DurableObjectStub<RoomCoordinator> {
  return c.env.ROOMS.get(c.env.ROOMS.idFromName(roomId)) as DurableObjectStub<RoomCoordinator>;
}

roomRoutes.post(documented(roomRoutes, leaveRoomRoute), rateLimit('leave'), async (c) => {
  const claims = await participantClaims(c);
  // The room's coordinator closes the participant's socket, tells the others and updates the store.
  await roomCoordinator(c, claims.room).leaveParticipant(claims.sub);
  c.get('logger').info('participant left via REST', { room_id: claims.room, participant_id: claims.sub });
  const response: LeaveRoomResponse = { left: true };
  return c.json(response, 200);
});

roomRoutes.post(documented(roomRoutes, refreshTokenRoute), rateLimit('token'), async (c) => {
  const claims = await participantClaims(c);
  // Same identity and grants; only an unexpired token can be refreshed, so a leaked one still dies,
  // and no session outlives MAX_SESSION_SECONDS however often it is refreshed.
  const jwt = c.get('config').jwt;
  const sessionStartedAt = claims.auth_time ?? claims.iat;
  if (Date.now() / 1000 - sessionStartedAt >= jwt.maxSessionSeconds) {
    throw new HttpError(401, 'unauthorized', 'the session has reached its maximum age; join the room again');
  }
  const issued = await issueParticipantToken(jwt, {
    roomId: claims.room,
    participantId: claims.sub,
    display: claims.name,
    grants: claims.grants,
    sessionStartedAt,
  });
  const response: RefreshTokenResponse = {
    token: issued.token,
    participant_id: claims.sub,
    expires_at: issued.expiresAt.toISOString(),
  };
  return c.json(response, 200);
});
