import { z } from 'zod';
import { ErrorCodeSchema } from './errors.ts';
import { IceCandidateSchema, IceServersSchema } from './ice.ts';
import { ParticipantIdSchema, RoomIdSchema } from './ids.ts';
import { LIMITS, utf8Length } from './limits.ts';
import {
  DisplaySchema,
  MAX_VIDEO_DIMENSION,
  MuteRequestSchema,
  PublisherLayersSchema,
  PublisherSchema,
  StreamKindSchema,
  SubscriberLayerSchema,
} from './rest.ts';
import { SdpSchema } from './sdp.ts';
import { GrantsSchema } from './token.ts';

/**
 * Signaling frames are JSON text `{type, request_id?, payload}`. A client request that carries a
 * `request_id` gets exactly one reply carrying it (its specific reply, `ack` or `error`); server
 * events carry none.
 */
export const RequestIdSchema = z.string().min(1).max(LIMITS.requestIdMaxChars);

export const IceTargetSchema = z.enum(['publisher', 'subscriber']);
export type IceTarget = z.infer<typeof IceTargetSchema>;

export const FeedsSchema = z.array(ParticipantIdSchema).min(1).max(LIMITS.feedsPerRequestMax);

export const ParticipantSchema = z.object({ id: ParticipantIdSchema, display: z.string().max(LIMITS.displayMaxChars) });
export type Participant = z.infer<typeof ParticipantSchema>;

export const DataTopicSchema = z.string().min(1).max(LIMITS.dataTopicMaxChars);
/**
 * What this viewer wants of one subscribed feed's video: the node forwards the smallest layer that
 * covers `max_width` × `max_height` (an absent one does not constrain; both absent: no cap), or
 * nothing while `paused` (audio keeps flowing). Each update replaces the feed's previous one.
 */
export const UpdateSubscriptionSchema = z.strictObject({
  feed: ParticipantIdSchema,
  max_width: z.number().int().min(0).max(MAX_VIDEO_DIMENSION).optional(),
  max_height: z.number().int().min(0).max(MAX_VIDEO_DIMENSION).optional(),
  paused: z.boolean().optional(),
});
export type UpdateSubscription = z.infer<typeof UpdateSubscriptionSchema>;

const DataSchema = z.string().refine((data) => utf8Length(data) <= LIMITS.dataMaxBytes, {
  error: `must be at most ${LIMITS.dataMaxBytes} bytes of UTF-8`,
});

/**
 * One entry of `active_speakers`: a participant the media node hears speaking, with its smoothed
 * audio level (linear amplitude, 0 silence … 1 full scale), as LiveKit's SDKs report it.
 */
export const ActiveSpeakerSchema = z.object({ participant_id: ParticipantIdSchema, level: z.number().min(0).max(1) });
export type ActiveSpeaker = z.infer<typeof ActiveSpeakerSchema>;
/** Every publisher of a room may speak at once: a room has at most maxPublishersMax. */
export const ActiveSpeakersSchema = z.array(ActiveSpeakerSchema).max(LIMITS.maxPublishersMax);
export { ACTIVE_SPEAKERS_MIN_INTERVAL_MS } from './limits.ts';

/** Payload schemas of client requests, by frame type. */
export const ClientPayloadSchemas = {
  join_room: z.strictObject({ room_id: RoomIdSchema, display: DisplaySchema }),
  publish_offer: z.strictObject({
    sdp: SdpSchema,
    /** Informational (the seed's clients send it): the offer's m-lines alone decide what is published. */
    kind: z.enum(['audio', 'video', 'screen']).optional(),
  }),
  trickle_ice: z.strictObject({
    target: IceTargetSchema.default('publisher'),
    candidate: IceCandidateSchema.nullable(),
  }),
  subscribe: z.strictObject({ feeds: FeedsSchema }),
  subscribe_answer: z.strictObject({ sdp: SdpSchema }),
  unsubscribe: z.strictObject({ feeds: FeedsSchema }),
  /** `{}`; a missing payload is taken as `{}`. */
  unpublish: z.strictObject({}).default({}),
  leave: z.strictObject({}).default({}),
  /** App data beside the media: to everyone else, or only to the participants in `to`. */
  send_data: z.strictObject({
    data: DataSchema,
    topic: DataTopicSchema.optional(),
    to: z.array(ParticipantIdSchema).min(1).max(LIMITS.dataRecipientsMax).optional(),
  }),
  /** Mutes or unmutes the sender's own published tracks of one kind. */
  mute: MuteRequestSchema,
  /** Which layer of a subscribed feed's video this viewer gets, or none (paused); replied `ack`. */
  update_subscription: UpdateSubscriptionSchema,
} as const;

export type ClientFrameType = keyof typeof ClientPayloadSchemas;

const clientFrame = <T extends ClientFrameType>(type: T) =>
  z.strictObject({
    type: z.literal(type),
    request_id: RequestIdSchema.optional(),
    payload: ClientPayloadSchemas[type],
  });

export const JoinRoomFrameSchema = clientFrame('join_room');
export const PublishOfferFrameSchema = clientFrame('publish_offer');
export const ClientTrickleIceFrameSchema = clientFrame('trickle_ice');
export const SubscribeFrameSchema = clientFrame('subscribe');
export const SubscribeAnswerFrameSchema = clientFrame('subscribe_answer');
export const UnsubscribeFrameSchema = clientFrame('unsubscribe');
export const UnpublishFrameSchema = clientFrame('unpublish');
export const LeaveFrameSchema = clientFrame('leave');
export const SendDataFrameSchema = clientFrame('send_data');
export const MuteFrameSchema = clientFrame('mute');
export const UpdateSubscriptionFrameSchema = clientFrame('update_subscription');

export const ClientFrameSchema = z.discriminatedUnion('type', [
  JoinRoomFrameSchema,
  PublishOfferFrameSchema,
  ClientTrickleIceFrameSchema,
  SubscribeFrameSchema,
  SubscribeAnswerFrameSchema,
  UnsubscribeFrameSchema,
  UnpublishFrameSchema,
  LeaveFrameSchema,
  SendDataFrameSchema,
  MuteFrameSchema,
  UpdateSubscriptionFrameSchema,
]);
export type ClientFrame = z.infer<typeof ClientFrameSchema>;
export type ClientFrameOf<T extends ClientFrameType> = Extract<ClientFrame, { type: T }>;

/**
 * The outer envelope alone, to tell "not a frame" (`invalid_json`), "unknown type" (`unknown_type`)
 * and "bad payload" (`invalid_payload`) apart, and to echo a `request_id` in the error reply.
 */
export const FrameEnvelopeSchema = z.object({
  type: z.string().min(1).max(64),
  request_id: RequestIdSchema.optional(),
  payload: z.unknown().optional(),
});

/** Payload schemas of server frames (replies and events), by frame type. */
export const ServerPayloadSchemas = {
  joined: z.object({
    participant_id: ParticipantIdSchema,
    room_id: RoomIdSchema,
    publishers: z.array(PublisherSchema),
    ice_servers: IceServersSchema,
    /** Everyone in the room at join time, including those who do not publish (an addition to the seed). */
    participants: z.array(ParticipantSchema).optional(),
  }),
  publish_answer: z.object({ sdp: SdpSchema }),
  subscribe_offer: z.object({ sdp: SdpSchema }),
  ack: z.object({}),
  error: z.object({ code: ErrorCodeSchema, message: z.string().max(1024) }),
  publisher_joined: z.object({ publisher: PublisherSchema }),
  publisher_left: z.object({ publisher_id: ParticipantIdSchema }),
  participant_joined: z.object({ participant: ParticipantSchema }),
  participant_left: z.object({ participant: ParticipantSchema }),
  trickle_ice: z.object({ target: IceTargetSchema, candidate: IceCandidateSchema.nullable() }),
  data: z.object({ from: ParticipantIdSchema, data: DataSchema, topic: DataTopicSchema.optional() }),
  /** To everyone, the muted participant included; `by: "admin"` also when an admin lifts a lock. */
  track_muted: z.object({
    publisher_id: ParticipantIdSchema,
    kind: StreamKindSchema,
    muted: z.boolean(),
    by: z.enum(['self', 'admin']),
    /**
     * Whether an admin's lock holds: while it does, the participant cannot unmute. An admin lifting
     * the lock sends `locked: false` with `muted` unchanged, so the participant knows it may unmute.
     */
    locked: z.boolean(),
  }),
  /**
   * To the participant alone, when an admin changed its grants (they apply at once). A revoked
   * `publish` has already ended its publishing; the SDK stops instead of publishing again.
   */
  // Not strict like a token's grants: a client on this schema keeps accepting the event when a grant is added.
  grants_updated: z.object({ grants: z.object(GrantsSchema.shape) }),
  /**
   * Who speaks now, loudest first (empty: nobody). To everyone, when the set or the order changes,
   * at most 4 times a second per room; hidden participants are never named.
   */
  active_speakers: z.object({ speakers: ActiveSpeakersSchema }),
  /** To a viewer alone: the layer of a simulcast feed's video it now gets (see `update_subscription`). */
  layer_changed: SubscriberLayerSchema,
  /**
   * To a publisher alone: which layers of its simulcast video stream `mid` viewers need now (see
   * PublisherLayersSchema); the others may stop until listed again.
   */
  publisher_layers: PublisherLayersSchema,
} as const;

export type ServerFrameType = keyof typeof ServerPayloadSchemas;
export type ServerPayload<T extends ServerFrameType> = z.infer<(typeof ServerPayloadSchemas)[T]>;

const serverFrame = <T extends ServerFrameType>(type: T) =>
  z.object({ type: z.literal(type), request_id: RequestIdSchema.optional(), payload: ServerPayloadSchemas[type] });

export const ServerFrameSchema = z.discriminatedUnion('type', [
  serverFrame('joined'),
  serverFrame('publish_answer'),
  serverFrame('subscribe_offer'),
  serverFrame('ack'),
  serverFrame('error'),
  serverFrame('publisher_joined'),
  serverFrame('publisher_left'),
  serverFrame('participant_joined'),
  serverFrame('participant_left'),
  serverFrame('trickle_ice'),
  serverFrame('data'),
  serverFrame('track_muted'),
  serverFrame('grants_updated'),
  serverFrame('active_speakers'),
  serverFrame('layer_changed'),
  serverFrame('publisher_layers'),
]);
export type ServerFrame = z.infer<typeof ServerFrameSchema>;
type ServerFrameOf<T extends ServerFrameType> = Extract<ServerFrame, { type: T }>;

/** Builds a server frame; `request_id` is set only on replies. */
export function serverFrameOf<T extends ServerFrameType>(
  type: T,
  payload: ServerPayload<T>,
  requestId?: string,
): ServerFrameOf<T> {
  return (requestId === undefined ? { type, payload } : { type, request_id: requestId, payload }) as ServerFrameOf<T>;
}
