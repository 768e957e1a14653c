import { CodedError, type ErrorCode } from '../../../shared/src/errors.ts';
import type { Logger } from '../../../shared/src/log.ts';
import type { WebhookData, WebhookEventType } from '../../../shared/src/webhooks.ts';
import type { EdgeConfig } from '../config.ts';
import type { RoomMedia } from '../media/room-media.ts';
import { StoreUnavailableError } from '../store/index.ts';
import type { ActiveSpeakersRelay } from './active-speakers.ts';
import type { RoomState } from './room-state.ts';

/** How often the alarm looks for dead sockets while any are connected. */
export const REAP_INTERVAL_MS = 30_000;
/** A socket that answers pings stops being trusted once it has been silent this long. */
export const PING_TIMEOUT_MS = 90_000;
/** A socket must send `join_room` within this time of connecting. */
export const JOIN_TIMEOUT_MS = 30_000;
/** A room in use is touched this long before the store would expire it (capped at half the TTL). */
export const ROOM_REFRESH_MARGIN_MS = 60_000;
/** An empty room's state is wiped after this, unless someone connects again. */
export const EMPTY_ROOM_LINGER_MS = 60_000;
/**
 * How often the alarm asks the media node which peers it holds, while the room has media on it: a
 * node that died, restarted or lost a worker is noticed within about this plus the probe's timeout.
 */
export const MEDIA_PROBE_INTERVAL_MS = 3_000;
/** Probes that failed without refusing the connection (a slow or erroring node) before the node counts as lost. */
export const MEDIA_PROBE_FAILURES_BEFORE_LOST = 2;

/**
 * What frame handlers and media event handlers may do with their room: its state, its media node,
 * sends to its sockets and the operations several entry points share. The Durable Object behind it
 * keeps its storage, sockets and alarm to itself.
 */
export interface RoomHandle {
  readonly roomId: string;
  readonly state: RoomState;
  /** The room's media: each participant's calls go to its node; relays between nodes follow subscriptions. */
  readonly media: RoomMedia;
  /** Log lines carry the room id (ids only: never tokens, SDP or display names). */
  readonly logger: Logger;
  readonly config: Pick<EdgeConfig, 'ice' | 'roomTtlSeconds' | 'maxParticipants'>;

  /** Whether the participant may be in the room: already in it, or the participant cap has room. */
  admits(participantId: string): boolean;
  /** Checks with the store that the room still exists, and extends it; learns its max_publishers. */
  confirmRoom(): Promise<boolean>;
  /** The room's max_publishers, known from the first confirmed join. */
  readonly maxPublishers: number;

  /** Sends a frame to one participant's joined socket; dropped while the participant is reconnecting. */
  sendTo(participantId: string, text: string): boolean;
  /** Sends one serialized frame to every joined socket, optionally except one participant's. */
  broadcast(text: string, exceptParticipantId?: string): number;

  startGrace(participantId: string): Promise<void>;
  depart(participantId: string, reason: string, closeWith: { code: number; reason: string } | null): Promise<void>;
  stopPublishing(participantId: string, options: { unpublishOnMediaNode: boolean }): Promise<boolean>;
  scheduleAlarm(): Promise<void>;
  /** Records a webhook event of this room (numbered and queued; nothing when webhooks are off). */
  webhook(type: WebhookEventType, data?: Omit<WebhookData, 'room_id' | 'seq'>): void;
  /** Relays the media node's speaker reports to the room as `active_speakers`. */
  readonly speakers: ActiveSpeakersRelay;
}

/** The signaling error code a failure maps to; anything unexpected is an internal error. */
export function errorCodeOf(error: unknown): ErrorCode {
  if (error instanceof CodedError) return error.code;
  return error instanceof StoreUnavailableError ? 'service_unavailable' : 'internal_error';
}

/** Error names only in logs: messages of foreign errors may carry request data. */
export const errorName = (error: unknown) => (error instanceof Error ? error.name : typeof error);
