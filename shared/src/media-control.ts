import { z } from 'zod';
import { IceCandidateSchema } from './ice.ts';
import { ParticipantIdSchema, RoomIdSchema } from './ids.ts';
import { StreamSchema } from './rest.ts';
import { SdpSchema } from './sdp.ts';
import { FeedsSchema, IceTargetSchema } from './signaling.ts';

/**
 * The media node's control API (edge → media node) and its events (media node → edge). Both
 * directions are authenticated by HS256 JWTs signed with MEDIA_NODE_SECRET, exp ≤ 60 s; the media
 * node requires `aud: "media-node"` and the edge requires `aud: "truegather-edge-internal"`.
 *
 * Routes (all JSON, all under the node's base URL):
 *   POST   /v1/rooms/:room_id/publishers                         CreatePublisherRequest → CreatePublisherResponse
 *   DELETE /v1/rooms/:room_id/publishers/:participant_id         → OkResponse
 *   POST   /v1/rooms/:room_id/peers/:participant_id/ice          AddIceCandidateRequest → OkResponse
 *   PUT    /v1/rooms/:room_id/subscribers/:participant_id        UpdateSubscriberRequest → SubscriberOfferResponse
 *   POST   /v1/rooms/:room_id/subscribers/:participant_id/answer SubscriberAnswerRequest → OkResponse
 *   DELETE /v1/rooms/:room_id/subscribers/:participant_id        → OkResponse
 *   DELETE /v1/rooms/:room_id                                    → OkResponse
 * Events are POSTed as MediaEvent to the edge's `/internal/media-events`.
 */
export const MEDIA_CONTROL_PATHS = {
  publishers: (roomId: string) => `/v1/rooms/${roomId}/publishers`,
  publisher: (roomId: string, participantId: string) => `/v1/rooms/${roomId}/publishers/${participantId}`,
  ice: (roomId: string, participantId: string) => `/v1/rooms/${roomId}/peers/${participantId}/ice`,
  subscriber: (roomId: string, participantId: string) => `/v1/rooms/${roomId}/subscribers/${participantId}`,
  subscriberAnswer: (roomId: string, participantId: string) =>
    `/v1/rooms/${roomId}/subscribers/${participantId}/answer`,
  room: (roomId: string) => `/v1/rooms/${roomId}`,
} as const;

export const EDGE_MEDIA_EVENTS_PATH = '/internal/media-events';

export const CreatePublisherRequestSchema = z.strictObject({
  participant_id: ParticipantIdSchema,
  sdp: SdpSchema,
});
export type CreatePublisherRequest = z.infer<typeof CreatePublisherRequestSchema>;

export const CreatePublisherResponseSchema = z.object({
  sdp: SdpSchema,
  /** The streams negotiated in the answer; `publisher_ready` confirms when media actually flows. */
  streams: z.array(StreamSchema).max(8),
});
export type CreatePublisherResponse = z.infer<typeof CreatePublisherResponseSchema>;

export const AddIceCandidateRequestSchema = z.strictObject({
  target: IceTargetSchema,
  candidate: IceCandidateSchema.nullable(),
});
export type AddIceCandidateRequest = z.infer<typeof AddIceCandidateRequestSchema>;

/** The complete set of feeds the subscriber should receive (not a delta); an empty set is allowed. */
export const UpdateSubscriberRequestSchema = z.strictObject({
  feeds: z.union([FeedsSchema, z.array(ParticipantIdSchema).length(0)]),
});
export type UpdateSubscriberRequest = z.infer<typeof UpdateSubscriberRequestSchema>;

export const SubscriberOfferResponseSchema = z.object({
  sdp: SdpSchema,
  /** The feeds the offer actually carries (unknown or unpublished feeds are left out). */
  feeds: z.array(ParticipantIdSchema),
});
export type SubscriberOfferResponse = z.infer<typeof SubscriberOfferResponseSchema>;

export const SubscriberAnswerRequestSchema = z.strictObject({ sdp: SdpSchema });
export type SubscriberAnswerRequest = z.infer<typeof SubscriberAnswerRequestSchema>;

export const OkResponseSchema = z.object({ ok: z.literal(true) });
export type OkResponse = z.infer<typeof OkResponseSchema>;

const eventBase = { room_id: RoomIdSchema, participant_id: ParticipantIdSchema };

export const MediaEventSchema = z.discriminatedUnion('type', [
  /** The publisher's media is flowing: the edge announces `publisher_joined`. */
  z.object({ type: z.literal('publisher_ready'), ...eventBase, streams: z.array(StreamSchema).max(8) }),
  /** The publisher's peer connection failed or closed: the edge announces `publisher_left`. */
  z.object({ type: z.literal('publisher_closed'), ...eventBase, reason: z.string().max(256) }),
  /** The subscriber's peer connection failed or closed. */
  z.object({ type: z.literal('subscriber_closed'), ...eventBase, reason: z.string().max(256) }),
  /** The node renegotiated a subscriber by itself (a feed ended): relay as `subscribe_offer`. */
  z.object({
    type: z.literal('subscriber_offer'),
    ...eventBase,
    sdp: SdpSchema,
    feeds: z.array(ParticipantIdSchema),
  }),
  /** A local ICE candidate of the node's side of a peer connection: relay as `trickle_ice`. */
  z.object({
    type: z.literal('ice_candidate'),
    ...eventBase,
    target: IceTargetSchema,
    candidate: IceCandidateSchema.nullable(),
  }),
]);
export type MediaEvent = z.infer<typeof MediaEventSchema>;

/** What a media node writes to the registry on every heartbeat (short TTL, so dead nodes vanish). */
export const MediaNodeRegistrationSchema = z.object({
  id: z.string().min(1).max(128),
  url: z.url(),
  load: z.number().min(0),
  capacity: z.number().int().min(0),
  draining: z.boolean(),
  updated_at: z.iso.datetime(),
});
export type MediaNodeRegistration = z.infer<typeof MediaNodeRegistrationSchema>;

export const MEDIA_NODE_REGISTRY_KEY_PREFIX = 'media-node:';
export const MEDIA_NODE_REGISTRY_SET = 'media-nodes';
