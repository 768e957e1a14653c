import type { Publisher, Stream, StreamKind } from '../../../shared/src/rest.ts';
import type { Participant } from '../../../shared/src/signaling.ts';
import type { Grants } from '../../../shared/src/token.ts';
import type { RoomMirror } from '../store/room-repository.ts';
import type { TokenBucket } from './rate-limit.ts';

export interface PublisherState {
  /** The streams negotiated in the answer; replaced by the media node's list at `publisher_ready`. */
  streams: Stream[];
  /** True once the media node reported `publisher_ready`: only then do others learn of the publisher. */
  ready: boolean;
}

/** A participant of the room, connected or within its reconnect grace period. */
export interface ParticipantRecord {
  id: string;
  display: string;
  grants: Grants;
  /** Position in the room's join order: lists of participants and publishers follow it. */
  joinOrder: number;
  /** When it first joined (ms); a resume keeps it. */
  joinedAt: number;
  publisher: PublisherState | null;
  /** The feeds the participant's subscriber peer connection carries; null while it has none. */
  subscription: string[] | null;
  /** Set while the participant has no socket: removed at this time unless it reconnects. */
  graceUntil: number | null;
  /** Kinds the participant or an admin muted; absent means unmuted. Kept across republishing. */
  mutes?: Partial<Record<StreamKind, MuteState>>;
}

/**
 * A kind's mute. `locked` is an admin's: while it holds, the participant cannot unmute. Lifting it
 * leaves the kind muted: only the participant unmutes itself.
 */
export interface MuteState {
  muted: boolean;
  locked: boolean;
}

export const UNMUTED: MuteState = { muted: false, locked: false };

export const muteOf = (record: ParticipantRecord, kind: StreamKind): MuteState => record.mutes?.[kind] ?? UNMUTED;

export interface RoomMeta {
  roomId: string;
  /** When the store expires the room unless it is touched; null until the first join. */
  expiresAt: number | null;
  /** Whether the media node ever held state for this room, so that closing it is worth a call. */
  mediaUsed: boolean;
  /** Participants who ever joined: the next one's joinOrder. */
  joins: number;
  /** The room record's max_publishers, read from the store at the first join. */
  maxPublishers: number | null;
  /** Whether this session of the room announced `room.started` (a webhook). */
  started?: boolean;
}

const META_KEY = 'meta';
const PARTICIPANT_PREFIX = 'participant:';
const LEFT_PREFIX = 'left:';
const ALLOWANCE_PREFIX = 'allowance:';

/**
 * What one participant may still send, whichever socket it uses: its frame bucket between sockets
 * (the open socket's attachment holds the live one) and its upgrade bucket.
 */
export interface Allowance {
  frames: TokenBucket;
  /** `send_data`'s bucket, once the participant sent data. */
  data?: TokenBucket;
  upgrades: TokenBucket;
}

/** A participant who left on purpose, remembered while tokens issued before could still be valid. */
interface LeftMarker {
  at: number;
  until: number;
}

/**
 * The room's live state, whose one authority is this object: participants with their publishing
 * and subscriptions, leave markers, metadata. Kept in the object's SQLite-backed synchronous KV
 * storage: a handler checks and updates it without another event interleaving. Every change to
 * the participants is reported to `onParticipantsChanged` in the same synchronous step, so that the
 * store mirror's outbox is written together with the change.
 */
export class RoomState {
  readonly #kv: SyncKvStorage;
  readonly #onParticipantsChanged: () => void;

  constructor(kv: SyncKvStorage, onParticipantsChanged: () => void) {
    this.#kv = kv;
    this.#onParticipantsChanged = onParticipantsChanged;
  }

  meta(): RoomMeta | undefined {
    return this.#kv.get<RoomMeta>(META_KEY);
  }

  updateMeta(patch: Partial<RoomMeta> & Pick<RoomMeta, 'roomId'>): RoomMeta {
    const meta: RoomMeta = {
      expiresAt: null,
      mediaUsed: false,
      joins: 0,
      maxPublishers: null,
      ...this.meta(),
      ...patch,
    };
    this.#kv.put(META_KEY, meta);
    return meta;
  }

  participant(id: string): ParticipantRecord | undefined {
    return this.#kv.get<ParticipantRecord>(PARTICIPANT_PREFIX + id);
  }

  /** All participants, in join order. */
  participants(): ParticipantRecord[] {
    return [...this.#kv.list<ParticipantRecord>({ prefix: PARTICIPANT_PREFIX })]
      .map(([, record]) => record)
      .sort((a, b) => a.joinOrder - b.joinOrder);
  }

  /** Takes the next position in the join order (counted in the metadata). */
  takeJoinOrder(roomId: string): number {
    const meta = this.updateMeta({ roomId, joins: (this.meta()?.joins ?? 0) + 1 });
    return meta.joins;
  }

  /** Participants whose publishing counts against max_publishers (offered, ready or not). */
  publishers(): (ParticipantRecord & { publisher: PublisherState })[] {
    return this.participants().filter((record): record is ParticipantRecord & { publisher: PublisherState } =>
      Boolean(record.publisher),
    );
  }

  putParticipant(record: ParticipantRecord): void {
    this.#kv.put(PARTICIPANT_PREFIX + record.id, record);
    this.#onParticipantsChanged();
  }

  /** Applies `change` to the stored record, if the participant is still there; returns the result. */
  updateParticipant(id: string, change: (record: ParticipantRecord) => void): ParticipantRecord | undefined {
    const record = this.participant(id);
    if (!record) return undefined;
    const before = JSON.stringify(record);
    change(record);
    // An update that changes nothing writes nothing (and gives the store mirror nothing to send).
    if (JSON.stringify(record) !== before) this.putParticipant(record);
    return record;
  }

  deleteParticipant(id: string): void {
    if (this.#kv.delete(PARTICIPANT_PREFIX + id)) this.#onParticipantsChanged();
  }

  allowance(id: string): Allowance | undefined {
    return this.#kv.get<Allowance>(ALLOWANCE_PREFIX + id);
  }

  putAllowance(id: string, allowance: Allowance): void {
    this.#kv.put(ALLOWANCE_PREFIX + id, allowance);
  }

  deleteAllowance(id: string): void {
    this.#kv.delete(ALLOWANCE_PREFIX + id);
  }

  /** Remembers that a participant left at `at`, until `until` (when its tokens have all expired). */
  markLeft(id: string, at: number, until: number): void {
    this.#kv.put(LEFT_PREFIX + id, { at, until } satisfies LeftMarker);
  }

  /** When the participant left, if that still matters at `now`. */
  leftAt(id: string, now: number): number | undefined {
    const marker = this.#kv.get<LeftMarker>(LEFT_PREFIX + id);
    return marker && marker.until > now ? marker.at : undefined;
  }

  /** Forgets leaves whose tokens have all expired; returns when the next remaining one may go. */
  pruneLeft(now: number): number | null {
    let next: number | null = null;
    for (const [key, marker] of this.#kv.list<LeftMarker>({ prefix: LEFT_PREFIX })) {
      if (marker.until <= now) this.#kv.delete(key);
      else next = Math.min(next ?? marker.until, marker.until);
    }
    return next;
  }

  /**
   * Ends the room's state: everything goes but the leave markers, which must outlive the room until
   * the tokens they refuse have expired (a token issued before a leave must not rejoin an emptied
   * room), and the keys in `keep`.
   */
  clearExceptLeaveMarkers(keep: readonly string[] = []): void {
    for (const [key] of this.#kv.list()) {
      if (!key.startsWith(LEFT_PREFIX) && !keep.includes(key)) this.#kv.delete(key);
    }
  }
}

/** Whether others are told about the participant (hidden ones are recorders and bots). */
export const isListed = (record: ParticipantRecord): boolean => !record.grants.hidden;

export const mirrorOf = (state: RoomState): RoomMirror => ({
  participants: state.participants().filter(isListed).map(participantOf),
  publishers: state.publishers().map(publisherOf),
});

export const participantOf = (record: ParticipantRecord): Participant => ({ id: record.id, display: record.display });

export const publisherOf = (record: ParticipantRecord & { publisher: PublisherState }): Publisher => ({
  id: record.id,
  display: record.display,
  streams: record.publisher.streams.map((stream) => ({ ...stream, muted: muteOf(record, stream.kind).muted })),
});
