import { z } from 'zod';
import { IceCandidateSchema } from './ice.ts';
import { ParticipantIdSchema, RoomIdSchema } from './ids.ts';
import { MuteRequestSchema, PublisherLayersSchema, StreamSchema, SubscriberLayerSchema } from './rest.ts';
import { RelaySdpSchema, SdpSchema } from './sdp.ts';
import { ActiveSpeakersSchema, FeedsSchema, IceTargetSchema, UpdateSubscriptionSchema } from './signaling.ts';

/**
 * The media node's control API (edge → media node) and its events (media node → edge). Both
 * directions are authenticated by HS256 JWTs signed with MEDIA_NODE_SECRET, exp ≤ 60 s; the media
 * node requires `aud: "media-node"` and the edge requires `aud: "truegather-edge-internal"`.
 *
 * One verb per operation, from the signaling frame to the worker thread: each route is named after
 * the operation, and the edge's MediaNodeClient method, the control route and the worker command
 * all carry that name (as mediasoup's produce → Producer → close).
 *   publish              POST   …/publishers                         PublishRequest → PublishResponse
 *   unpublish            DELETE …/publishers/:participant_id         → OkResponse
 *   addIceCandidate      POST   …/peers/:participant_id/ice          AddIceCandidateRequest → OkResponse
 *   subscribe            PUT    …/subscribers/:participant_id        SubscribeRequest → SubscribeResponse
 *   setSubscriberAnswer  POST   …/subscribers/:participant_id/answer SubscriberAnswerRequest → OkResponse
 *   closeSubscriber      DELETE …/subscribers/:participant_id        → OkResponse
 *   mute                 PUT    …/publishers/:participant_id/mute    MuteRequest → OkResponse
 *   updateSubscription   PUT    …/subscribers/:participant_id/subscription UpdateSubscriptionRequest → OkResponse
 *   closeRoom            DELETE /v1/rooms/:room_id                   → OkResponse
 *   describeRoom         GET    /v1/rooms/:room_id                   → RoomPeersResponse (the edge's node probe)
 *   relay                PUT    /v1/rooms/:room_id/relays            RelayRequest → RelayResponse
 * Events are POSTed as MediaEvent to the edge's EDGE_MEDIA_EVENTS_PATH.
 *
 * Node to node (a relay: the pulling node → the origin node), the same scheme with the pulling node's
 * identity as issuer. The origin's end of a relay is a relay sender, set up like a subscriber:
 *   pull                 PUT    …/relay-senders/:relay_id            PullRequest → PullResponse
 *   setRelaySenderAnswer POST   …/relay-senders/:relay_id/answer     RelaySenderAnswerRequest → OkResponse
 *   closeRelaySender     DELETE …/relay-senders/:relay_id            → OkResponse
 */
export const MEDIA_CONTROL_ROUTES = {
  publish: { method: 'POST', path: '/v1/rooms/:room_id/publishers' },
  unpublish: { method: 'DELETE', path: '/v1/rooms/:room_id/publishers/:participant_id' },
  addIceCandidate: { method: 'POST', path: '/v1/rooms/:room_id/peers/:participant_id/ice' },
  subscribe: { method: 'PUT', path: '/v1/rooms/:room_id/subscribers/:participant_id' },
  setSubscriberAnswer: { method: 'POST', path: '/v1/rooms/:room_id/subscribers/:participant_id/answer' },
  closeSubscriber: { method: 'DELETE', path: '/v1/rooms/:room_id/subscribers/:participant_id' },
  closeRoom: { method: 'DELETE', path: '/v1/rooms/:room_id' },
  mute: { method: 'PUT', path: '/v1/rooms/:room_id/publishers/:participant_id/mute' },
  updateSubscription: { method: 'PUT', path: '/v1/rooms/:room_id/subscribers/:participant_id/subscription' },
  describeRoom: { method: 'GET', path: '/v1/rooms/:room_id' },
  relay: { method: 'PUT', path: '/v1/rooms/:room_id/relays' },
  pull: { method: 'PUT', path: '/v1/rooms/:room_id/relay-senders/:relay_id' },
  setRelaySenderAnswer: { method: 'POST', path: '/v1/rooms/:room_id/relay-senders/:relay_id/answer' },
  closeRelaySender: { method: 'DELETE', path: '/v1/rooms/:room_id/relay-senders/:relay_id' },
} as const satisfies Record<string, { method: 'GET' | 'POST' | 'PUT' | 'DELETE'; path: string }>;
export type MediaControlOperation = keyof typeof MEDIA_CONTROL_ROUTES;

/** The operations one media node calls on another (a relay); the edge calls the others. */
export const NODE_TO_NODE_OPERATIONS = ['pull', 'setRelaySenderAnswer', 'closeRelaySender'] as const;

/** A route's path with its `:room_id` and its `:participant_id` (or `:relay_id`) filled in. */
export function mediaControlPath(operation: MediaControlOperation, roomId: string, participantId = ''): string {
  return MEDIA_CONTROL_ROUTES[operation].path
    .replace(':room_id', encodeURIComponent(roomId))
    .replace(/:participant_id|:relay_id/, encodeURIComponent(participantId));
}

/**
 * A control call that got no answer within this long has failed: the edge counts it against the node
 * it called (MediaNodePlacement), so a node answers within it, even when it must call another node.
 */
export const MEDIA_CONTROL_TIMEOUT_MS = 10_000;

export const EDGE_MEDIA_EVENTS_PATH = '/internal/media-events';

export const PublishRequestSchema = z.strictObject({
  participant_id: ParticipantIdSchema,
  sdp: SdpSchema,
});
export type PublishRequest = z.infer<typeof PublishRequestSchema>;

export const PublishResponseSchema = z.object({
  sdp: SdpSchema,
  /** The streams negotiated in the answer; `publisher_ready` confirms when media actually flows. */
  streams: z.array(StreamSchema).max(8),
});
export type PublishResponse = z.infer<typeof PublishResponseSchema>;

export const AddIceCandidateRequestSchema = z.strictObject({
  target: IceTargetSchema,
  candidate: IceCandidateSchema.nullable(),
});
export type AddIceCandidateRequest = z.infer<typeof AddIceCandidateRequestSchema>;

/** The complete set of feeds the subscriber should receive (not a delta); an empty set is allowed. */
export const SubscribeRequestSchema = z.strictObject({
  feeds: z.union([FeedsSchema, z.array(ParticipantIdSchema).length(0)]),
});
export type SubscribeRequest = z.infer<typeof SubscribeRequestSchema>;

export const SubscribeResponseSchema = z.object({
  sdp: SdpSchema,
  /** The feeds the offer actually carries (unknown or unpublished feeds are left out). */
  feeds: z.array(ParticipantIdSchema),
});
export type SubscribeResponse = z.infer<typeof SubscribeResponseSchema>;

export const SubscriberAnswerRequestSchema = z.strictObject({ sdp: SdpSchema });
export type SubscriberAnswerRequest = z.infer<typeof SubscriberAnswerRequestSchema>;

/**
 * The peers a node holds for a room (none for a room it does not know). The room's coordinator
 * compares it with its own records to notice a node that died, restarted or lost a worker thread.
 */
export const RoomPeersResponseSchema = z.object({
  publishers: z.array(ParticipantIdSchema),
  subscribers: z.array(ParticipantIdSchema),
});
export type RoomPeersResponse = z.infer<typeof RoomPeersResponseSchema>;

/** Feeds one relay carries at most: a room's publishers fit. */
export const RELAY_FEEDS_MAX = 64;
const RelayFeedsSchema = z.array(ParticipantIdSchema).max(RELAY_FEEDS_MAX);

/**
 * `relay` (edge → pulling node): the complete set of feeds this node should pull from the origin
 * node for this room (not a delta); `feeds: []` closes that relay. The origin is named by the URL
 * the edge knows it by.
 */
export const RelayRequestSchema = z.strictObject({
  origin_url: z.url({ protocol: /^https?$/ }).max(2048),
  feeds: RelayFeedsSchema,
});
export type RelayRequest = z.infer<typeof RelayRequestSchema>;

/** The feeds the relay carries now: those asked that the origin has. */
export const RelayResponseSchema = z.object({ feeds: RelayFeedsSchema });
export type RelayResponse = z.infer<typeof RelayResponseSchema>;

/**
 * `pull` (pulling node → origin node): the feeds the relay should carry, and which peer connection of
 * the pulling node asks: the same one renegotiates, another one (the relay was re-established)
 * replaces the relay sender.
 */
export const PullRequestSchema = z.strictObject({
  feeds: RelayFeedsSchema,
  connection: ParticipantIdSchema,
});
export type PullRequest = z.infer<typeof PullRequestSchema>;

/** Media sections a relay offer carries at most: every layer of every track of its feeds. */
export const RELAY_TRACKS_MAX = 256;
const MidSchema = z.string().min(1).max(32);

/**
 * One m-line of a relay offer: which layer of which published track it carries. The relay carries
 * each simulcast layer as an m-line of its own; the pulling node regroups them by (`feed`, `track`),
 * in `layer` order, into one source track like the publisher's.
 */
export const RelayedTrackSchema = z.object({
  feed: ParticipantIdSchema,
  kind: z.enum(['audio', 'video']),
  /** The m-line's mid in the relay's offer. */
  mid: MidSchema,
  /** The mid of the track in the publisher's own connection: layers of one track share it. */
  track: MidSchema,
  /** The layer's position in the publisher's track, and its rid (none without simulcast). */
  layer: z.number().int().min(0).max(2),
  rid: z.string().min(1).max(16).nullable(),
});
export type RelayedTrack = z.infer<typeof RelayedTrackSchema>;

export const PullResponseSchema = z.object({
  sdp: RelaySdpSchema,
  feeds: RelayFeedsSchema,
  tracks: z.array(RelayedTrackSchema).max(RELAY_TRACKS_MAX),
  /**
   * The version of what the origin has of these feeds. The relay sender's RTCP keepalive carries it
   * too: when it moves (a publisher added, ended or replaced tracks, or left), the pulling node pulls again.
   */
  version: z.number().int().min(0),
});
export type PullResponse = z.infer<typeof PullResponseSchema>;

export const RelaySenderAnswerRequestSchema = z.strictObject({ sdp: RelaySdpSchema });
export type RelaySenderAnswerRequest = z.infer<typeof RelaySenderAnswerRequestSchema>;

export type { MuteRequest } from './rest.ts';
/**
 * Stops (or resumes) forwarding the publisher's tracks of one kind; the publisher keeps sending.
 * The node keeps the state for tracks that a renegotiation adds, not across a new connection: the
 * edge repeats it after such a publish.
 */
export { MuteRequestSchema };

/** The `update_subscription` frame's payload, as is: one feed's layer preference for this subscriber. */
export const UpdateSubscriptionRequestSchema = UpdateSubscriptionSchema;
export type UpdateSubscriptionRequest = z.infer<typeof UpdateSubscriptionRequestSchema>;

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
  /** A viewer's simulcast layer of a feed changed: relay as `layer_changed` to that viewer. */
  z.object({ type: z.literal('subscriber_layer'), ...eventBase, ...SubscriberLayerSchema.shape }),
  /**
   * Which layers of a publisher's simulcast video viewers need changed (dynacast): relay as
   * `publisher_layers` to that publisher. Layers join at once and leave after a delay (no flapping).
   */
  z.object({ type: z.literal('publisher_layers'), ...eventBase, ...PublisherLayersSchema.shape }),
  /** A local ICE candidate of the node's side of a peer connection: relay as `trickle_ice`. */
  z.object({
    type: z.literal('ice_candidate'),
    ...eventBase,
    target: IceTargetSchema,
    candidate: IceCandidateSchema.nullable(),
  }),
  /**
   * About the room, not one participant: the publishers the node hears speaking, loudest first (the
   * node's ActiveSpeakerObserver). Sent only on a change of the set or order, at most 4 times a
   * second; the edge relays it as `active_speakers`.
   */
  z.object({ type: z.literal('active_speakers'), room_id: RoomIdSchema, speakers: ActiveSpeakersSchema }),
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
  /**
   * HMAC-SHA256 of the other fields with MEDIA_NODE_SECRET (media-node-trust.ts). The store lists
   * entries as written; the edge places rooms only on those whose signature checks out.
   */
  signature: z.string().max(64).optional(),
});
export type MediaNodeRegistration = z.infer<typeof MediaNodeRegistrationSchema>;

export const MEDIA_NODE_REGISTRY_KEY_PREFIX = 'media-node:';
export const MEDIA_NODE_REGISTRY_SET = 'media-nodes';
