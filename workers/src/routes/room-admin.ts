import { createRoute, OpenAPIHono } from '@hono/zod-openapi';
import { ParticipantIdSchema } from '../../../shared/src/ids.ts';
import {
  type DeleteRoomResponse,
  DeleteRoomResponseSchema,
  MuteRequestSchema,
  ParticipantDetailsSchema,
  type ParticipantList,
  ParticipantListSchema,
  type RemoveParticipantResponse,
  RemoveParticipantResponseSchema,
  UpdateParticipantRequestSchema,
} from '../../../shared/src/rest.ts';
import type { AppEnv } from '../http/app-env.ts';
import { HttpError } from '../http/errors.ts';
import { readJsonBody } from '../http/json-body.ts';
import { rateLimit } from '../http/rate-limit.ts';
import { requireRoomAdmin } from '../http/room-admin.ts';
import { documented } from './documented.ts';
import {
  error,
  json,
  RoomParamsSchema,
  register,
  repository,
  roomCoordinator,
  roomIdParam,
  roomNotFound,
} from './rooms.ts';

/**
 * A room's moderation: list, remove and re-grant participants, end the room. Every route needs the
 * room admin credential (routes/../http/room-admin.ts); the room's coordinator does the work.
 */
export const roomAdminRoutes = new OpenAPIHono<AppEnv>();

const Schemas = {
  ParticipantDetails: register('ParticipantDetails', ParticipantDetailsSchema),
  ParticipantList: register('ParticipantList', ParticipantListSchema),
  UpdateParticipantRequest: register('UpdateParticipantRequest', UpdateParticipantRequestSchema),
  RemoveParticipantResponse: register('RemoveParticipantResponse', RemoveParticipantResponseSchema),
  DeleteRoomResponse: register('DeleteRoomResponse', DeleteRoomResponseSchema),
  MuteRequest: register('MuteRequest', MuteRequestSchema),
};

const ParticipantParamsSchema = RoomParamsSchema.extend({ pid: ParticipantIdSchema });

const adminRefusals = {
  401: error('No credential, or one the edge does not accept'),
  403: error("Not this room's admin (a participant token without the admin grant included)"),
  429: error('Too many requests from this client (`Retry-After`)'),
  503: error('The room store is unavailable'),
};

const listParticipantsRoute = createRoute({
  method: 'get',
  path: '/api/v1/rooms/{id}/participants',
  summary: 'List the participants (hidden ones included) with their grants and published streams',
  security: [{ roomAdmin: [] }],
  request: { params: RoomParamsSchema },
  responses: {
    200: json(Schemas.ParticipantList, 'Participants in join order'),
    ...adminRefusals,
    404: error('No such room'),
  },
});

const removeParticipantRoute = createRoute({
  method: 'post',
  path: '/api/v1/rooms/{id}/participants/{pid}/remove',
  summary: 'Remove a participant: its socket closes with 4001 "removed" and its tokens are refused from now on',
  security: [{ roomAdmin: [] }],
  request: { params: ParticipantParamsSchema },
  responses: {
    200: json(Schemas.RemoveParticipantResponse, 'Removed; the others got participant_left'),
    ...adminRefusals,
    404: error('No such room, or no such participant in it'),
  },
});

const updateParticipantRoute = createRoute({
  method: 'patch',
  path: '/api/v1/rooms/{id}/participants/{pid}',
  summary:
    "Change a participant's grants, at once: revoking publish unpublishes, revoking subscribe ends its subscription",
  security: [{ roomAdmin: [] }],
  request: {
    params: ParticipantParamsSchema,
    body: { required: true, content: { 'application/json': { schema: Schemas.UpdateParticipantRequest } } },
  },
  responses: {
    200: json(Schemas.ParticipantDetails, 'The participant with its new grants'),
    400: error('Malformed JSON or invalid grants'),
    ...adminRefusals,
    404: error('No such room, or no such participant in it'),
  },
});

const muteParticipantRoute = createRoute({
  method: 'post',
  path: '/api/v1/rooms/{id}/participants/{pid}/mute',
  summary: "Mute a participant's tracks of one kind (a lock it cannot lift), or lift that lock",
  description:
    'Everyone gets `track_muted` with `by: "admin"`. `muted: false` only lifts the lock: the kind stays ' +
    'muted until the participant unmutes itself (nobody is unmuted against their will).',
  security: [{ roomAdmin: [] }],
  request: {
    params: ParticipantParamsSchema,
    body: { required: true, content: { 'application/json': { schema: Schemas.MuteRequest } } },
  },
  responses: {
    200: json(Schemas.ParticipantDetails, 'The participant, its streams with their muted state'),
    400: error('Malformed JSON or invalid kind'),
    ...adminRefusals,
    404: error('No such room, or no such participant in it'),
    503: error('The media node could not apply it (`media_unavailable`); nothing changed'),
  },
});

const deleteRoomRoute = createRoute({
  method: 'delete',
  path: '/api/v1/rooms/{id}',
  summary: 'End the room: every socket closes with 1000 "room closed", media is torn down, the store forgets it',
  security: [{ roomAdmin: [] }],
  request: { params: RoomParamsSchema },
  responses: {
    200: json(Schemas.DeleteRoomResponse, 'Ended; GET now answers 404'),
    ...adminRefusals,
    404: error('No such room'),
  },
});

/** The room of the path, once the request has proven it administers it and the room exists. */
async function administeredRoom(c: Parameters<typeof roomIdParam>[0]): Promise<string> {
  const roomId = roomIdParam(c);
  await requireRoomAdmin(c, roomId);
  if (!(await repository(c).getRoom(roomId))) throw roomNotFound();
  return roomId;
}

function participantIdParam(c: Parameters<typeof roomIdParam>[0]): string {
  const parsed = ParticipantIdSchema.safeParse(c.req.param('pid'));
  if (!parsed.success) throw participantNotFound();
  return parsed.data;
}

const participantNotFound = () => new HttpError(404, 'not_found', 'no such participant in the room');

roomAdminRoutes.get(documented(roomAdminRoutes, listParticipantsRoute), rateLimit('admin'), async (c) => {
  const roomId = await administeredRoom(c);
  const response: ParticipantList = { participants: await roomCoordinator(c, roomId).participantDetails() };
  return c.json(response, 200);
});

roomAdminRoutes.post(documented(roomAdminRoutes, removeParticipantRoute), rateLimit('admin'), async (c) => {
  const roomId = await administeredRoom(c);
  const participantId = participantIdParam(c);
  if (!(await roomCoordinator(c, roomId).removeParticipant(participantId))) throw participantNotFound();
  c.get('logger').info('participant removed', { room_id: roomId, participant_id: participantId });
  const response: RemoveParticipantResponse = { removed: true };
  return c.json(response, 200);
});

roomAdminRoutes.patch(documented(roomAdminRoutes, updateParticipantRoute), rateLimit('admin'), async (c) => {
  const roomId = await administeredRoom(c);
  const participantId = participantIdParam(c);
  const { grants } = await readJsonBody(c, UpdateParticipantRequestSchema);
  const updated = await roomCoordinator(c, roomId).updateGrants(participantId, grants);
  if (!updated) throw participantNotFound();
  c.get('logger').info('participant grants changed', { room_id: roomId, participant_id: participantId });
  return c.json(updated, 200);
});

roomAdminRoutes.post(documented(roomAdminRoutes, muteParticipantRoute), rateLimit('admin'), async (c) => {
  const roomId = await administeredRoom(c);
  const participantId = participantIdParam(c);
  const request = await readJsonBody(c, MuteRequestSchema);
  const outcome = await roomCoordinator(c, roomId).muteParticipant(participantId, request);
  if (!outcome) throw participantNotFound();
  if ('refused' in outcome) {
    throw new HttpError(503, 'media_unavailable', 'the media node could not apply the mute; nothing changed');
  }
  c.get('logger').info('participant muted by an admin', { room_id: roomId, participant_id: participantId });
  return c.json(outcome.participant, 200);
});

roomAdminRoutes.delete(documented(roomAdminRoutes, deleteRoomRoute), rateLimit('admin'), async (c) => {
  const roomId = await administeredRoom(c);
  await roomCoordinator(c, roomId).endRoom(roomId);
  c.get('logger').info('room ended by an admin', { room_id: roomId });
  const response: DeleteRoomResponse = { deleted: true };
  return c.json(response, 200);
});
