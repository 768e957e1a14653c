import type { ErrorCode } from '../../../shared/src/errors.ts';
import type { Logger } from '../../../shared/src/log.ts';
import type { EdgeConfig } from '../config.ts';
import { MediaCallError, type MediaNodeClient } from '../media/media-node-client.ts';
import { type RoomRepository, StoreUnavailableError } from '../store/index.ts';
import {
  type Connection,
  closeSocket,
  isOpen,
  participantTag,
  RequestRefusedError,
  readAttachment,
  sendText,
} from './connection.ts';
import { encodeServerFrame } from './frames.ts';
import { participantOf, type RoomMeta, RoomState } from './room-state.ts';

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

export interface RoomOptions {
  ctx: DurableObjectState;
  config: EdgeConfig;
  /** Called on every use: a store client must not be shared between two requests (see store/index.ts). */
  repository: () => RoomRepository;
  /** Read on every use, so that a replaced client (a test fake) takes effect at once. */
  media: () => MediaNodeClient;
  logger: Logger;
}

/**
 * The room's coordinator state and the operations that several entry points share (frames, media
 * events, alarms, REST leave): targeted sends, fan-out, per-participant ordering, departure and
 * alarm scheduling. Everything durable lives in storage or in socket attachments.
 */
export class Room {
  readonly ctx: DurableObjectState;
  readonly state: RoomState;
  readonly config: EdgeConfig;
  readonly #logger: Logger;
  readonly #repository: () => RoomRepository;
  readonly #media: () => MediaNodeClient;
  /** Tails of the per-participant work queues; transient by nature (nothing is pending across hibernation). */
  readonly #queues = new Map<string, Promise<void>>();

  constructor(options: RoomOptions) {
    this.ctx = options.ctx;
    this.state = new RoomState(options.ctx.storage.kv);
    this.config = options.config;
    this.#repository = options.repository;
    this.#logger = options.logger;
    this.#media = options.media;
  }

  get media(): MediaNodeClient {
    return this.#media();
  }

  get repository(): RoomRepository {
    return this.#repository();
  }

  /** Log lines carry the room id (ids only: never tokens, SDP or display names). */
  get logger(): Logger {
    return this.#logger.child({ room_id: this.state.meta()?.roomId });
  }

  /** The room's metadata; it exists from the first connection on. */
  meta(): RoomMeta {
    const meta = this.state.meta();
    if (!meta) throw new Error('room state is not initialised');
    return meta;
  }

  get roomId(): string {
    return this.meta().roomId;
  }

  /** Sockets with their attachments, all or one participant's. */
  connections(participantId?: string): Connection[] {
    const sockets = this.ctx.getWebSockets(participantId === undefined ? undefined : participantTag(participantId));
    const connections: Connection[] = [];
    for (const ws of sockets) {
      const attachment = readAttachment(ws);
      if (attachment) connections.push({ ws, attachment });
    }
    return connections;
  }

  /** The participant's joined socket, if it has one. */
  joinedConnection(participantId: string): Connection | undefined {
    return this.connections(participantId).find(
      ({ ws, attachment }) => isOpen(ws) && attachment.joined && !attachment.replaced,
    );
  }

  /** Sends a frame to one participant's joined socket; dropped while the participant is reconnecting. */
  sendTo(participantId: string, text: string): boolean {
    const connection = this.joinedConnection(participantId);
    return connection ? sendText(connection.ws, text) : false;
  }

  /** Sends one serialized frame to every joined socket, optionally except one participant's. */
  broadcast(text: string, exceptParticipantId?: string): number {
    let sent = 0;
    for (const { ws, attachment } of this.connections()) {
      if (!attachment.joined || attachment.replaced || attachment.participantId === exceptParticipantId) continue;
      if (sendText(ws, text)) sent += 1;
    }
    return sent;
  }

  /** Sends an `error` event (no request_id) to a participant: for failures outside a request. */
  notifyError(participantId: string, code: ErrorCode, message: string): void {
    this.sendTo(participantId, encodeServerFrame('error', { code, message }));
  }

  /**
   * Runs `task` after every earlier task of the same participant. Frames of one socket, and media
   * events and renegotiations that concern one participant, must reach the media node and the
   * client in order even though each task awaits the network.
   */
  exclusive<T>(participantId: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(participantId) ?? Promise.resolve();
    const run = previous.then(task);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.#queues.set(participantId, tail);
    void tail.then(() => {
      if (this.#queues.get(participantId) === tail) this.#queues.delete(participantId);
    });
    return run;
  }

  /** Runs a media node call whose failure must not stop the caller (cleanup); failures are logged. */
  async bestEffort(operation: string, call: () => Promise<unknown>): Promise<void> {
    try {
      await call();
    } catch (error) {
      this.logger.warn('media node call failed', { operation, error: errorName(error) });
    }
  }

  /** Starts a participant's reconnect grace period, unless it is already running. */
  async startGrace(participantId: string): Promise<void> {
    const graceUntil = Date.now() + this.config.reconnectGraceSeconds * 1000;
    const record = this.state.updateParticipant(participantId, (record) => {
      record.graceUntil ??= graceUntil;
    });
    if (record) await this.scheduleAlarm();
  }

  /**
   * Removes a participant from the room: what `leave`, REST leave and the end of the grace period
   * share. Its sockets are closed with `closeWith` (none when null), others hear `publisher_left`
   * and `participant_left`, the media node and the store forget it.
   */
  async depart(participantId: string, reason: string, closeWith: { code: number; reason: string } | null) {
    const record = this.state.participant(participantId);
    // Deleted before any await: a concurrent subscribe to this publisher now fails with unknown_feed.
    this.state.deleteParticipant(participantId);
    if (reason === 'leave' || reason === 'rest_leave') {
      // Leaving is final for this identity: tokens issued so far cannot bring it back.
      const now = Date.now();
      this.state.markLeft(participantId, now, now + this.config.jwt.expirySeconds * 1000);
    }
    if (closeWith) {
      for (const { ws } of this.connections(participantId)) closeSocket(ws, closeWith.code, closeWith.reason);
    }
    if (record) {
      if (record.publisher?.ready) {
        this.broadcast(encodeServerFrame('publisher_left', { publisher_id: participantId }), participantId);
      }
      this.broadcast(encodeServerFrame('participant_left', { participant: participantOf(record) }), participantId);
      if (record.publisher) this.forgetFeed(participantId);
      // Both removals are idempotent and sent whenever the room used media: a control call that
      // timed out here may still have created the peer on the node, which must not outlive its owner.
      if (this.state.meta()?.mediaUsed) {
        await this.bestEffort('unpublish', () => this.media.unpublish(this.roomId, participantId));
        await this.bestEffort('closeSubscriber', () => this.media.closeSubscriber(this.roomId, participantId));
      }
    }
    await this.repository.removeParticipant(this.roomId, participantId);
    await this.scheduleAlarm();
    this.logger.info('participant left', { participant_id: participantId, reason });
  }

  /**
   * Ends a participant's publishing: others hear `publisher_left` (if they were told it had
   * joined), subscribers of its feed are renegotiated, the store releases the slot.
   */
  async stopPublishing(participantId: string, options: { removeFromMediaNode: boolean }): Promise<boolean> {
    let wasReady = false;
    let wasPublishing = false;
    this.state.updateParticipant(participantId, (record) => {
      wasPublishing = record.publisher !== null;
      wasReady = record.publisher?.ready ?? false;
      record.publisher = null;
    });
    if (!wasPublishing) return false;
    if (wasReady) this.broadcast(encodeServerFrame('publisher_left', { publisher_id: participantId }), participantId);
    this.forgetFeed(participantId);
    if (options.removeFromMediaNode) {
      await this.bestEffort('unpublish', () => this.media.unpublish(this.roomId, participantId));
    }
    await this.repository.releasePublisher(this.roomId, participantId);
    return true;
  }

  /**
   * Drops a feed that ended from everyone's subscription. The media node renegotiates those
   * subscribers by itself when a feed's tracks end (whoever ended them) and reports it as
   * `subscriber_offer`, which reaches the clients as `subscribe_offer`: asking it for an offer here
   * too would cross that one and leave clients answering a superseded offer.
   */
  forgetFeed(publisherId: string): void {
    for (const record of this.state.participants()) {
      if (!record.subscription?.includes(publisherId)) continue;
      this.state.updateParticipant(record.id, (fresh) => {
        fresh.subscription = fresh.subscription?.filter((feed) => feed !== publisherId) ?? null;
      });
    }
  }

  /** When the alarm must touch the room in the store so that it does not expire while in use. */
  roomRefreshAt(): number | null {
    const expiresAt = this.state.meta()?.expiresAt;
    if (expiresAt == null) return null;
    return expiresAt - Math.min(ROOM_REFRESH_MARGIN_MS, (this.config.roomTtlSeconds * 1000) / 2);
  }

  /**
   * Points the object's single alarm at the next thing that needs doing: a grace period ending, the
   * next dead-socket sweep, the room's expiry, or wiping an empty room. `force` overwrites the
   * current alarm (from the alarm handler); otherwise the alarm only moves earlier.
   */
  async scheduleAlarm(options: { force?: boolean } = {}): Promise<void> {
    if (!this.state.meta()) return;
    const now = Date.now();
    const participants = this.state.participants();
    const socketCount = this.ctx.getWebSockets().length;
    const due: number[] = [];
    for (const record of participants) if (record.graceUntil !== null) due.push(record.graceUntil);
    const refreshAt = this.roomRefreshAt();
    if (participants.length > 0 && refreshAt !== null) due.push(refreshAt);
    const empty = participants.length === 0 && socketCount === 0;
    due.push(now + (empty ? EMPTY_ROOM_LINGER_MS : REAP_INTERVAL_MS));
    const next = Math.min(...due);
    const current = await this.ctx.storage.getAlarm();
    if (options.force || current === null || current > next) await this.ctx.storage.setAlarm(next);
  }
}

/** The signaling error code a failure maps to; anything unexpected is an internal error. */
export function errorCodeOf(error: unknown): ErrorCode {
  if (error instanceof RequestRefusedError || error instanceof MediaCallError) return error.code;
  return error instanceof StoreUnavailableError ? 'service_unavailable' : 'internal_error';
}

/** Error names only in logs: messages of foreign errors may carry request data. */
export const errorName = (error: unknown) => (error instanceof Error ? error.name : typeof error);
