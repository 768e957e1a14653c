import { z } from 'zod';
import { IceServersSchema } from './ice.ts';
import { ParticipantIdSchema, RoomIdSchema } from './ids.ts';
import { LIMITS } from './limits.ts';
import { GrantsSchema } from './token.ts';

const IsoTimestampSchema = z.iso.datetime();

/** Trimmed display text: a name made only of spaces is as empty as no name. */
const displayText = (max: number) => z.string().trim().min(1).max(max);

/**
 * Characters a display name or room name may not contain, because everyone else's screen renders it: controls
 * (U+0000 BEL ESC DEL, C1), format characters (bidi overrides and isolates such as U+202E, which
 * reorder what follows; zero-width and tag characters, which hide text), line/paragraph separators
 * and lone surrogates. Zero-width (non-)joiners stay allowed: emoji sequences and Indic/Persian
 * spelling need them. Names are refused, not stripped: the sender learns at once, and no one sees a
 * name that differs from the one typed.
 */
const UNDISPLAYABLE = /(?![\u200C\u200D])[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;

/** Display text that reaches other people's screens: trimmed, bounded, and free of UNDISPLAYABLE characters. */
const renderedText = (max: number) =>
  displayText(max).refine((text) => !UNDISPLAYABLE.test(text), {
    error: 'must not contain control, bidi or other invisible format characters',
  });

export const DisplaySchema = renderedText(LIMITS.displayMaxChars);

export const CreateRoomRequestSchema = z.strictObject({
  name: renderedText(LIMITS.roomNameMaxChars),
  max_publishers: z
    .number()
    .int()
    .min(LIMITS.maxPublishersMin)
    .max(LIMITS.maxPublishersMax)
    .default(LIMITS.maxPublishersDefault),
});
export type CreateRoomRequest = z.infer<typeof CreateRoomRequestSchema>;

export const RoomSchema = z.object({
  id: RoomIdSchema,
  name: z.string().max(LIMITS.roomNameMaxChars),
  max_publishers: z.number().int().min(LIMITS.maxPublishersMin).max(LIMITS.maxPublishersMax),
  created_at: IsoTimestampSchema,
  expires_at: IsoTimestampSchema,
});
export type Room = z.infer<typeof RoomSchema>;

/** `POST /api/v1/rooms` answers the room and, for its creator, the room's admin token. */
export const CreatedRoomSchema = RoomSchema.extend({ admin_token: z.string().max(LIMITS.tokenMaxChars) });
export type CreatedRoom = z.infer<typeof CreatedRoomSchema>;

export const StreamKindSchema = z.enum(['audio', 'video']);
export type StreamKind = z.infer<typeof StreamKindSchema>;

/** The largest frame side a layer may announce (VP8 and H.264 allow 16383). */
export const MAX_VIDEO_DIMENSION = 16_383;

/**
 * One simulcast layer of a video stream: its rid (RFC 8851, the publisher's choice) and, once a
 * keyframe has announced it, its resolution. Listed in the publisher's order.
 */
export const StreamLayerSchema = z.object({
  rid: z.string().min(1).max(16),
  width: z.number().int().min(1).max(MAX_VIDEO_DIMENSION).optional(),
  height: z.number().int().min(1).max(MAX_VIDEO_DIMENSION).optional(),
});
export type StreamLayer = z.infer<typeof StreamLayerSchema>;

/**
 * The simulcast layer a viewer now gets of a feed's video (after the layer's keyframe), or
 * `rid: null` when it gets none (paused, or no layer flows).
 */
export const SubscriberLayerSchema = z.object({
  feed: ParticipantIdSchema,
  rid: StreamLayerSchema.shape.rid.nullable(),
  width: StreamLayerSchema.shape.width,
  height: StreamLayerSchema.shape.height,
});
export type SubscriberLayer = z.infer<typeof SubscriberLayerSchema>;

/**
 * Dynacast (LiveKit's name): the layers of one of a publisher's simulcast video streams (`mid`, its
 * m-line) that viewers need: every layer up to the largest one a viewer's size asks for, the lowest
 * always. The publisher may stop sending the others until they are listed again; the SDK does, with
 * `RTCRtpSender.setParameters` (`encodings[i].active = false`).
 */
export const PublisherLayersSchema = z.object({
  mid: z.string().min(1).max(64),
  rids: z.array(StreamLayerSchema.shape.rid).min(1).max(3),
});
export type PublisherLayers = z.infer<typeof PublisherLayersSchema>;

export const StreamSchema = z.object({
  kind: StreamKindSchema,
  mid: z.string().max(64).optional(),
  codec: z.string().max(64).optional(),
  /** Present when the stream is simulcast (2–3 layers); a viewer gets one of them (`update_subscription`). */
  layers: z.array(StreamLayerSchema).min(2).max(3).optional(),
  /** Set by the room (`mute`, admin mute): the node forwards nothing of a muted stream. */
  muted: z.boolean().optional(),
});
export type Stream = z.infer<typeof StreamSchema>;

/** A participant who publishes; `id` is the publisher's participant_id. */
export const PublisherSchema = z.object({
  id: ParticipantIdSchema,
  display: z.string().max(LIMITS.displayMaxChars),
  streams: z.array(StreamSchema).max(8),
});
export type Publisher = z.infer<typeof PublisherSchema>;

export const RoomDetailsSchema = RoomSchema.extend({
  participants: z.number().int().min(0),
  /** With their streams and muted state (`streams` is an addition to the seed's `{id, display}`). */
  publishers: z.array(PublisherSchema),
});
export type RoomDetails = z.infer<typeof RoomDetailsSchema>;

/** Grants a join may ask for (with admin authorization only); those left out keep their defaults. */
export const JoinGrantsSchema = z.strictObject({
  publish: z.boolean().optional(),
  subscribe: z.boolean().optional(),
  publish_data: z.boolean().optional(),
  admin: z.boolean().optional(),
  hidden: z.boolean().optional(),
});

export const JoinRoomRequestSchema = z.strictObject({ display: DisplaySchema, grants: JoinGrantsSchema.optional() });
export type JoinRoomRequest = z.infer<typeof JoinRoomRequestSchema>;

export const JoinRoomResponseSchema = z.object({
  token: z.string().max(LIMITS.tokenMaxChars),
  participant_id: ParticipantIdSchema,
  room_id: RoomIdSchema,
  expires_at: IsoTimestampSchema,
  ws_url: z.string().max(2048),
  ice_servers: IceServersSchema,
});
export type JoinRoomResponse = z.infer<typeof JoinRoomResponseSchema>;

/**
 * `POST /api/v1/rooms/:id/token` with a valid participant token: a fresh token for the same
 * participant, so that a call longer than JWT_EXPIRY_SECONDS can still reconnect and resume.
 */
export const RefreshTokenResponseSchema = z.object({
  token: z.string().max(LIMITS.tokenMaxChars),
  participant_id: ParticipantIdSchema,
  expires_at: IsoTimestampSchema,
});
export type RefreshTokenResponse = z.infer<typeof RefreshTokenResponseSchema>;

/** A participant as admins see it (`GET …/participants`, `PATCH …/participants/:pid`). */
export const ParticipantDetailsSchema = z.object({
  id: ParticipantIdSchema,
  display: z.string().max(LIMITS.displayMaxChars),
  joined_at: IsoTimestampSchema,
  grants: GrantsSchema,
  /** What it publishes (empty when nothing). */
  streams: z.array(StreamSchema).max(8),
});
export type ParticipantDetails = z.infer<typeof ParticipantDetailsSchema>;

export const ParticipantListSchema = z.object({ participants: z.array(ParticipantDetailsSchema) });
export type ParticipantList = z.infer<typeof ParticipantListSchema>;

/** `PATCH …/participants/:pid`: grants changed at once; the others stay. */
export const UpdateParticipantRequestSchema = z.strictObject({
  grants: z
    .strictObject({
      publish: z.boolean().optional(),
      subscribe: z.boolean().optional(),
      publish_data: z.boolean().optional(),
    })
    .refine((grants) => Object.keys(grants).length > 0, { error: 'name at least one grant' }),
});
export type UpdateParticipantRequest = z.infer<typeof UpdateParticipantRequestSchema>;

/** `mute` frame and admin mute route: mute (or unmute) the participant's published tracks of one kind. */
export const MuteRequestSchema = z.strictObject({ kind: StreamKindSchema, muted: z.boolean() });
export type MuteRequest = z.infer<typeof MuteRequestSchema>;

export const RemoveParticipantResponseSchema = z.object({ removed: z.literal(true) });
export type RemoveParticipantResponse = z.infer<typeof RemoveParticipantResponseSchema>;

export const DeleteRoomResponseSchema = z.object({ deleted: z.literal(true) });
export type DeleteRoomResponse = z.infer<typeof DeleteRoomResponseSchema>;

export const LeaveRoomResponseSchema = z.object({ left: z.literal(true) });
export type LeaveRoomResponse = z.infer<typeof LeaveRoomResponseSchema>;

export const HealthCheckSchema = z.object({
  status: z.enum(['ok', 'down', 'disabled']),
  latency_ms: z.number().optional(),
  detail: z.string().max(256).optional(),
});
export type HealthCheck = z.infer<typeof HealthCheckSchema>;

export const HealthResponseSchema = z.object({
  status: z.enum(['ok', 'degraded']),
  checks: z.record(z.string(), HealthCheckSchema),
});
export type HealthResponse = z.infer<typeof HealthResponseSchema>;
