import { DurableObject } from 'cloudflare:workers';
import { CodedError, type ErrorCode } from '../../../shared/src/errors.ts';
import { ParticipantIdSchema, RoomIdSchema } from '../../../shared/src/ids.ts';
import { createLogger, type Logger } from '../../../shared/src/log.ts';
import { type MediaEvent, MediaEventSchema, type RoomPeersResponse } from '../../../shared/src/media-control.ts';
import { mediaNodeIdentity } from '../../../shared/src/media-node-trust.ts';
import {
  type MuteRequest,
  MuteRequestSchema,
  type ParticipantDetails,
  type Stream,
  type UpdateParticipantRequest,
  UpdateParticipantRequestSchema,
} from '../../../shared/src/rest.ts';
import type { ClientFrame, ClientFrameType } from '../../../shared/src/signaling.ts';
import { CLOSE_CODES } from '../../../shared/src/signaling-socket.ts';
import { type EdgeConfig, edgeConfig } from '../config.ts';
import type { Env } from '../env.ts';
import { errorResponse } from '../http/errors.ts';
import { type MediaEventOrigin, MediaEventOriginCheck, type MediaEventVerdict } from '../media/media-event-origin.ts';
import { MediaNodeRefusedError } from '../media/media-node-client.ts';
import { createRoomMedia } from '../media/media-node-factory.ts';
import { PLACEMENT_KEYS } from '../media/media-node-placement.ts';
import { MEDIA_RELAYS_KEY, type RoomMedia } from '../media/room-media.ts';
import { type RoomMirror, type RoomRepository, roomRepository } from '../store/index.ts';
import { ActiveSpeakersRelay, visibleSpeakers } from './active-speakers.ts';
import {
  type Connection,
  type ConnectionAttachment,
  closeSocket,
  isOpen,
  participantTag,
  readAttachment,
  sendText,
  updateAttachment,
} from './connection.ts';
import { decodeClientFrame, encodeServerFrame } from './frames.ts';
import { frameHandlers, type SignalingRequest } from './handlers.ts';
import { decodeIdentity, IDENTITY_HEADER } from './identity.ts';
import { queueMediaEvent } from './media-events.ts';
import { participantDetailsOf, updateGrants } from './moderation.ts';
import { applyMute } from './mute.ts';
import {
  fullBucket,
  MAX_QUEUED_FRAMES,
  MAX_SOCKETS_PER_PARTICIPANT,
  SIGNALING_RATE_LIMIT,
  takeToken,
  UPGRADE_RATE_LIMIT,
} from './rate-limit.ts';
import {
  EMPTY_ROOM_LINGER_MS,
  errorCodeOf,
  errorName,
  JOIN_TIMEOUT_MS,
  MEDIA_PROBE_FAILURES_BEFORE_LOST,
  MEDIA_PROBE_INTERVAL_MS,
  PING_TIMEOUT_MS,
  REAP_INTERVAL_MS,
  ROOM_REFRESH_MARGIN_MS,
  type RoomHandle,
} from './room-handle.ts';
import { isListed, mirrorOf, type ParticipantRecord, participantOf, type RoomMeta, RoomState } from './room-state.ts';
import { StoreMirror } from './store-mirror.ts';
import { WEBHOOK_OUTBOX_KEY, WEBHOOK_SEQ_KEY, WebhookOutbox } from './webhook-outbox.ts';

/** Sockets a room accepts beyond its participant cap: connections that have not joined yet (join_room checks the cap). */
const CONNECTION_HEADROOM = 16;
/** Consecutive probes of one media node that failed (storage key prefix + node URL; gone with the room's state). */
const MEDIA_PROBE_FAILURES_PREFIX = 'media-probe-failures:';

/**
 * One room's coordinator (one instance per room id, `idFromName`), and the single authority on its
 * live state. On the Hibernation API: sockets are accepted with `ctx.acceptWebSocket`, keepalive
 * pings are answered by the runtime without waking the object. The connection lifecycle lives here
 * in one place (connect, receive, disconnect, alarm); frames and media events go to handlers by type,
 * which see the room through {@link RoomHandle}. Storage, sockets and the alarm stay in this class.
 *
 * RPC for the rest of the edge: `leaveParticipant` (REST leave), `hasLeft` (token refresh),
 * `admits` and `mirror` (REST join and room details), `handleMediaEvent` (media node events), and for
 * the admin routes `participantDetails`, `removeParticipant`, `updateGrants`, `muteParticipant` and `endRoom`.
 */
export class RoomCoordinator extends DurableObject<Env> {
  /**
   * How a room gets its media: each participant on a media node, over HTTP (nodes that answer
   * `media_unavailable` when none is configured). A class-level dependency, so that a deployment or
   * a test binds another class rather than reaching into an instance; static, so that RPC never exposes it.
   */
  static readonly createRoomMedia: typeof createRoomMedia = createRoomMedia;
  #roomMedia: RoomMedia | undefined;
  readonly #state: RoomState;
  readonly #handle: RoomHandle;
  readonly #storeMirror: StoreMirror;
  readonly #eventOrigins: MediaEventOriginCheck;
  readonly #webhooks: WebhookOutbox;
  readonly #speakers: ActiveSpeakersRelay;
  #config: EdgeConfig | undefined;
  #baseLogger: Logger | undefined;
  /** Tails of the per-participant work queues; transient by nature (nothing is pending across hibernation). */
  readonly #queues = new Map<string, Promise<void>>();
  /** Frames waiting in each participant's queue (bounded by MAX_QUEUED_FRAMES). */
  readonly #queuedFrames = new Map<string, number>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair('ping', 'pong'));
    this.#state = new RoomState(ctx.storage.kv, () => {
      const roomId = this.#state.meta()?.roomId;
      if (roomId) this.#storeMirror.changed(roomId);
    });
    this.#storeMirror = new StoreMirror({
      kv: ctx.storage.kv,
      repository: () => this.#repository(),
      snapshot: () => mirrorOf(this.#state),
      retryAt: (at) => this.#alarmNoLaterThan(at),
      logger: () => this.#logger(),
    });
    this.#webhooks = new WebhookOutbox({
      kv: ctx.storage.kv,
      queue: () => (this.#settings().webhooks ? this.env.WEBHOOKS : undefined),
      retryAt: (at) => this.#alarmNoLaterThan(at),
      logger: () => this.#logger(),
    });
    this.#speakers = new ActiveSpeakersRelay({
      visible: (speakers) => visibleSpeakers(this.#state, speakers),
      broadcast: (text) => this.#broadcast(text),
      sendTo: (participantId, text) => this.#sendTo(participantId, text),
    });
    this.#handle = this.#createHandle();
    this.#eventOrigins = new MediaEventOriginCheck(ctx.storage.kv);
  }

  /** The narrow view handlers get; the class's own members stay private (and out of RPC). */
  #createHandle(): RoomHandle {
    const room = this;
    return {
      get roomId() {
        return room.#meta().roomId;
      },
      state: this.#state,
      get media() {
        return room.#media();
      },
      get logger() {
        return room.#logger();
      },
      get config() {
        return room.#settings();
      },
      get maxPublishers() {
        return room.#maxPublishers();
      },
      admits: (participantId) => this.#admits(participantId),
      confirmRoom: () => this.#confirmRoom(),
      sendTo: (participantId, text) => this.#sendTo(participantId, text),
      broadcast: (text, exceptParticipantId) => this.#broadcast(text, exceptParticipantId),
      startGrace: (participantId) => this.#startGrace(participantId),
      depart: (participantId, reason, closeWith) => this.#depart(participantId, reason, closeWith),
      stopPublishing: (participantId, options) => this.#stopPublishing(participantId, options),
      scheduleAlarm: () => this.#scheduleAlarm(),
      webhook: (type, data) => this.#webhooks.record(type, this.#meta().roomId, data),
      speakers: this.#speakers,
    };
  }

  // ---- What the handle exposes to handlers ----

  /** Built on first use, so that a bad configuration fails requests with its ConfigError, not construction. */
  #settings(): EdgeConfig {
    this.#config ??= edgeConfig(this.env);
    return this.#config;
  }

  #media(): RoomMedia {
    const create = (this.constructor as typeof RoomCoordinator).createRoomMedia;
    // One object per room id: the id, once known, stays this room's after its state is wiped (closeRoom).
    let roomId = this.#state.meta()?.roomId;
    this.#roomMedia ??= create({
      config: this.#settings(),
      kv: this.ctx.storage.kv,
      repository: () => this.#repository(),
      logger: () => this.#logger(),
      roomId: () => {
        roomId ??= this.#meta().roomId;
        return roomId;
      },
      view: {
        subscriptions: () =>
          this.#state.participants().map((record) => ({ participantId: record.id, feeds: record.subscription })),
      },
    });
    return this.#roomMedia;
  }

  #logger(): Logger {
    this.#baseLogger ??= createLogger(this.#settings().logLevel, { component: 'room-coordinator' });
    return this.#baseLogger.child({ room_id: this.#state.meta()?.roomId });
  }

  #maxPublishers(): number {
    const maxPublishers = this.#meta().maxPublishers;
    if (maxPublishers === null) throw new Error('the room has not been confirmed with the store');
    return maxPublishers;
  }

  /** The participant cap, checked here alone: by join_room and, through RPC, by REST join. */
  #admits(participantId?: string): boolean {
    if (participantId !== undefined && this.#state.participant(participantId)) return true;
    return this.#state.participants().length < this.#settings().maxParticipants;
  }

  async #confirmRoom(): Promise<boolean> {
    const roomId = this.#meta().roomId;
    const repository = this.#repository();
    if (this.#meta().maxPublishers === null) {
      const record = await repository.getRoom(roomId);
      if (!record) return false;
      this.#state.updateMeta({ roomId, maxPublishers: record.max_publishers });
    }
    if (!(await repository.touchRoom(roomId))) return false;
    this.#state.updateMeta({ roomId, expiresAt: Date.now() + this.#settings().roomTtlSeconds * 1000 });
    return true;
  }

  #sendTo(participantId: string, text: string): boolean {
    const connection = this.#joinedConnection(participantId);
    return connection ? sendText(connection.ws, text) : false;
  }

  #broadcast(text: string, exceptParticipantId?: string): number {
    let sent = 0;
    for (const { ws, attachment } of this.#connections()) {
      if (!attachment.joined || attachment.replaced || attachment.participantId === exceptParticipantId) continue;
      if (sendText(ws, text)) sent += 1;
    }
    return sent;
  }

  /** Starts a participant's reconnect grace period, unless it is already running. */
  async #startGrace(participantId: string): Promise<void> {
    const graceUntil = Date.now() + this.#settings().reconnectGraceSeconds * 1000;
    const record = this.#state.updateParticipant(participantId, (record) => {
      record.graceUntil ??= graceUntil;
    });
    if (record) await this.#scheduleAlarm();
  }

  /**
   * Removes a participant from the room: what `leave`, REST leave and the end of the grace period
   * share. Its sockets are closed with `closeWith` (none when null), others hear `publisher_left`
   * and `participant_left`, the media node forgets it, and the store mirror follows.
   */
  async #depart(participantId: string, reason: string, closeWith: { code: number; reason: string } | null) {
    const record = this.#state.participant(participantId);
    // Deleted before any await: a concurrent subscribe to this publisher now fails with unknown_feed.
    this.#state.deleteParticipant(participantId);
    this.#state.deleteAllowance(participantId);
    if (reason === 'leave' || reason === 'rest_leave' || reason === 'removed') {
      // Leaving (or being removed) is final for this identity: tokens issued so far cannot bring it back.
      const now = Date.now();
      this.#state.markLeft(participantId, now, now + this.#settings().jwt.expirySeconds * 1000);
    }
    if (closeWith) {
      for (const { ws } of this.#connections(participantId)) closeSocket(ws, closeWith.code, closeWith.reason);
    }
    if (record) {
      const participant = participantOf(record);
      if (record.publisher?.ready) {
        this.#broadcast(encodeServerFrame('publisher_left', { publisher_id: participantId }), participantId);
        this.#webhooks.record('track.unpublished', this.#meta().roomId, {
          participant,
          streams: record.publisher.streams,
        });
      }
      this.#webhooks.record('participant.left', this.#meta().roomId, { participant, reason });
      if (isListed(record)) {
        this.#broadcast(encodeServerFrame('participant_left', { participant: participantOf(record) }), participantId);
      }
      if (record.publisher) this.#forgetFeed(participantId);
      // Both removals are idempotent and sent whenever the room used media: a control call that
      // timed out here may still have created the peer on the node, which must not outlive its owner.
      if (this.#state.meta()?.mediaUsed) {
        const media = this.#media();
        await this.#bestEffort('unpublish', () => media.unpublish(this.#meta().roomId, participantId));
        await this.#bestEffort('closeSubscriber', () => media.closeSubscriber(this.#meta().roomId, participantId));
        media.forget(participantId);
        // Relays that only this participant needed (as a viewer, or as the publisher) close.
        await media.settleRelays();
      }
    }
    await this.#scheduleAlarm();
    this.#logger().info('participant left', { participant_id: participantId, reason });
  }

  /**
   * Ends a participant's publishing: others hear `publisher_left` (if they were told it had
   * joined), and so does the publisher when the media node ended it; subscribers of its feed are
   * renegotiated, the slot is free again.
   */
  async #stopPublishing(participantId: string, options: { unpublishOnMediaNode: boolean }): Promise<boolean> {
    let wasReady = false;
    let wasPublishing = false;
    let streamsBefore: Stream[] = [];
    this.#state.updateParticipant(participantId, (record) => {
      wasPublishing = record.publisher !== null;
      streamsBefore = record.publisher?.streams ?? [];
      wasReady = record.publisher?.ready ?? false;
      record.publisher = null;
    });
    if (!wasPublishing) return false;
    const left = encodeServerFrame('publisher_left', { publisher_id: participantId });
    if (options.unpublishOnMediaNode) {
      if (wasReady) this.#broadcast(left, participantId);
    } else if (wasReady) {
      // The node ended it (its connection failed, its worker died): the publisher hears it too, and
      // its SDK publishes again.
      this.#broadcast(left);
    } else {
      this.#sendTo(participantId, left);
    }
    const record = this.#state.participant(participantId);
    if (wasReady && record) {
      this.#webhooks.record('track.unpublished', this.#meta().roomId, {
        participant: participantOf(record),
        streams: streamsBefore,
      });
    }
    this.#forgetFeed(participantId);
    if (options.unpublishOnMediaNode) {
      await this.#bestEffort('unpublish', () => this.#media().unpublish(this.#meta().roomId, participantId));
    }
    // Pulling nodes stop relaying the feed (their viewers are renegotiated by the node, as for a local publisher).
    await this.#media().settleRelays();
    return true;
  }

  /**
   * Points the object's single alarm at the next thing that needs doing: a grace period ending, the
   * next dead-socket sweep, the room's expiry, a store mirror retry, or wiping an empty room.
   * `force` overwrites the current alarm (from the alarm handler); otherwise the alarm only moves earlier.
   */
  async #scheduleAlarm(options: { force?: boolean } = {}): Promise<void> {
    if (!this.#state.meta()) return;
    const now = Date.now();
    const participants = this.#state.participants();
    const due: number[] = [];
    for (const record of participants) if (record.graceUntil !== null) due.push(record.graceUntil);
    const refreshAt = this.#roomRefreshAt();
    if (participants.length > 0 && refreshAt !== null) due.push(refreshAt);
    const webhookRetryAt = this.#webhooks.retryAt;
    if (webhookRetryAt !== null) due.push(webhookRetryAt);
    const mirrorRetryAt = this.#storeMirror.retryAt;
    if (mirrorRetryAt !== null) due.push(mirrorRetryAt);
    if (this.#mediaOnNode(participants).length > 0) due.push(now + MEDIA_PROBE_INTERVAL_MS);
    const empty = participants.length === 0 && this.ctx.getWebSockets().length === 0;
    due.push(now + (empty ? EMPTY_ROOM_LINGER_MS : REAP_INTERVAL_MS));
    const next = Math.min(...due);
    if (options.force) await this.ctx.storage.setAlarm(next);
    else await this.#alarmNoLaterThan(next);
  }

  // ---- RPC for the rest of the edge ----

  /**
   * Removes a participant exactly as a `leave` frame does (without the ack): its sockets close with
   * 1000, others hear `publisher_left` / `participant_left`, the media node and the store forget it.
   */
  async leaveParticipant(participantId: string): Promise<void> {
    const id = ParticipantIdSchema.parse(participantId);
    if (!this.#state.meta()) return;
    await this.#exclusive(id, () => this.#depart(id, 'rest_leave', { code: CLOSE_CODES.normal, reason: 'left' }));
  }

  /** Whether a token of `participantId` issued at `issuedAt` (seconds) predates that participant's leave. */
  async hasLeft(participantId: string, issuedAt: number): Promise<boolean> {
    const leftAt = this.#state.leftAt(ParticipantIdSchema.parse(participantId), Date.now());
    return leftAt !== undefined && issuedAt * 1000 <= leftAt;
  }

  // ---- RPC for the admin routes (routes/room-admin.ts has already checked the credential) ----

  /** Everyone in the room, hidden participants included, as admins see them. */
  async participantDetails(): Promise<ParticipantDetails[]> {
    return this.#state.participants().map(participantDetailsOf);
  }

  /**
   * Removes a participant for good: its socket closes with 4001 "removed", the others hear
   * `participant_left`, and its tokens can neither reconnect nor be refreshed. False if not in the room.
   */
  async removeParticipant(participantId: string): Promise<boolean> {
    const id = ParticipantIdSchema.parse(participantId);
    if (!this.#state.participant(id)) return false;
    await this.#exclusive(id, () => this.#depart(id, 'removed', { code: CLOSE_CODES.removed, reason: 'removed' }));
    return true;
  }

  /** Changes a participant's grants at once (moderation.ts); null if not in the room. */
  async updateGrants(participantId: string, grants: UpdateParticipantRequest['grants']) {
    const id = ParticipantIdSchema.parse(participantId);
    const parsed = UpdateParticipantRequestSchema.parse({ grants }).grants;
    return this.#exclusive(id, () => updateGrants(this.#handle, id, parsed));
  }

  /**
   * An admin's mute (mute.ts has the rules). The media node's refusal comes back as its code, which
   * RPC would not carry as an error class: the route answers it.
   */
  async muteParticipant(
    participantId: string,
    request: MuteRequest,
  ): Promise<{ participant: ParticipantDetails } | { refused: ErrorCode } | null> {
    const id = ParticipantIdSchema.parse(participantId);
    const { kind, muted } = MuteRequestSchema.parse(request);
    return this.#exclusive(id, async () => {
      if (!this.#state.participant(id)) return null;
      try {
        await applyMute(this.#handle, id, kind, muted, 'admin');
      } catch (error) {
        if (error instanceof CodedError) return { refused: error.code };
        throw error;
      }
      const record = this.#state.participant(id);
      return record ? { participant: participantDetailsOf(record) } : null;
    });
  }

  /** Ends the room now: every socket closes with 1000 "room closed", the media node and the store forget it. */
  async endRoom(roomId: string): Promise<void> {
    const id = RoomIdSchema.parse(roomId);
    if (!this.#state.meta()) this.#state.updateMeta({ roomId: id });
    await this.#closeRoom('room_deleted');
  }

  /** Whether REST join may issue a token for one more participant (the same cap join_room checks). */
  async admitsNewParticipant(): Promise<boolean> {
    return this.#admits();
  }

  /** The room's live state as REST shows it: participants (connected or reconnecting) and publishers. */
  async liveState(): Promise<RoomMirror> {
    return mirrorOf(this.#state);
  }

  /**
   * Turns a media node event into frames: publisher_ready → `publisher_joined`, publisher_closed →
   * `publisher_left` and renegotiation, subscriber_offer → `subscribe_offer`, ice_candidate →
   * `trickle_ice`, active_speakers → `active_speakers`. Resolves once the event is queued; its frames follow the participant's in-flight replies.
   */
  async handleMediaEvent(event: MediaEvent, node?: string): Promise<void> {
    const parsed = MediaEventSchema.parse(event);
    if (this.#state.meta()?.roomId !== parsed.room_id) {
      this.#logger().warn('media event for another room', { type: parsed.type });
      return;
    }
    queueMediaEvent(this.#handle, parsed, (participantId, task) => this.#exclusive(participantId, task), node);
  }

  /**
   * A media event as the node POSTs it (routes/internal.ts, token already verified and bound to this
   * room and body): accepted only from the node of the participant it is about (for an event about
   * the room, from one of the room's nodes) and once per token, then handled as
   * {@link handleMediaEvent}. Events for a room not open here are refused likewise.
   */
  async handleNodeEvent(event: MediaEvent, origin: MediaEventOrigin): Promise<MediaEventVerdict> {
    const parsed = MediaEventSchema.parse(event);
    let verdict: MediaEventVerdict = 'other_node';
    if (this.#state.meta()?.roomId === parsed.room_id) {
      const media = this.#media();
      const nodeOf = 'participant_id' in parsed ? media.placement.nodeOf(parsed.participant_id) : undefined;
      const nodes = 'participant_id' in parsed ? (nodeOf ? [nodeOf] : []) : media.nodes();
      verdict = this.#eventOrigins.admit(origin, nodes, Date.now());
    }
    if (verdict !== 'accepted') {
      this.#logger().warn('media event refused', { type: parsed.type, verdict });
      return verdict;
    }
    await this.handleMediaEvent(parsed, origin.issuer);
    return verdict;
  }

  // ---- The connection lifecycle ----

  override async fetch(request: Request): Promise<Response> {
    const identity = decodeIdentity(request.headers.get(IDENTITY_HEADER));
    if (!identity) return errorResponse(400, 'bad_request', 'missing connection identity');
    if (request.headers.get('Upgrade')?.toLowerCase() !== 'websocket') {
      return errorResponse(426, 'bad_request', 'expected a WebSocket upgrade');
    }
    const meta = this.#state.meta() ?? this.#state.updateMeta({ roomId: identity.roomId });
    if (meta.roomId !== identity.roomId) return errorResponse(400, 'bad_request', 'identity is for another room');
    // A participant who left is gone: its earlier tokens are refused (a new join gets a new identity).
    const leftAt = this.#state.leftAt(identity.participantId, Date.now());
    if (leftAt !== undefined && identity.issuedAt * 1000 <= leftAt) {
      return errorResponse(401, 'unauthorized', 'this participant has left the room; join it again');
    }
    const previous = this.ctx.getWebSockets(participantTag(identity.participantId));
    // Every open socket counts, replaced ones too: their peer may never complete the close.
    if (previous.length >= MAX_SOCKETS_PER_PARTICIPANT) {
      return rateLimited('this participant has too many open connections; close one first');
    }
    if (this.ctx.getWebSockets().length >= this.#settings().maxParticipants + CONNECTION_HEADROOM) {
      return errorResponse(409, 'room_full', 'the room has too many connections');
    }
    const now = Date.now();
    // The allowances follow the participant, not the socket: reconnecting gets neither more upgrades
    // nor a fresh frame allowance.
    const allowance = this.#state.allowance(identity.participantId) ?? {
      frames: fullBucket(now),
      upgrades: fullBucket(now, UPGRADE_RATE_LIMIT),
    };
    const upgrade = takeToken(allowance.upgrades, now, UPGRADE_RATE_LIMIT);
    allowance.upgrades = upgrade.bucket;
    for (const old of previous) {
      const current = readAttachment(old);
      if (!current || current.replaced) continue;
      allowance.frames = current.bucket;
      allowance.data = current.dataBucket;
    }
    this.#state.putAllowance(identity.participantId, allowance);
    if (!upgrade.allowed) return rateLimited('this participant reconnects too often; retry later');

    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    const attachment: ConnectionAttachment = {
      participantId: identity.participantId,
      grants: identity.grants,
      joined: false,
      replaced: false,
      connectedAt: now,
      lastMessageAt: now,
      bucket: allowance.frames,
      dataBucket: allowance.data,
      refusals: 0,
    };
    this.ctx.acceptWebSocket(server, [participantTag(identity.participantId)]);
    server.serializeAttachment(attachment);

    // One socket per participant: the newest wins. The participant keeps its identity, publishing
    // and subscriptions; until the new socket joins, it is in its grace period as after a drop.
    for (const old of previous) {
      updateAttachment(old, (replaced) => {
        replaced.replaced = true;
      });
      closeSocket(old, CLOSE_CODES.replaced, 'replaced');
    }
    if (this.#state.participant(identity.participantId)) await this.#startGrace(identity.participantId);
    await this.#scheduleAlarm();
    return new Response(null, { status: 101, webSocket: client });
  }

  /** One incoming message: rate limit, size and schema checks, then the frame's handler in order. */
  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const attachment = readAttachment(ws);
    if (!attachment || attachment.replaced) return;
    const now = Date.now();
    const { allowed, bucket } = takeToken(attachment.bucket, now);
    attachment.bucket = bucket;
    attachment.lastMessageAt = now;
    attachment.refusals = allowed ? 0 : attachment.refusals + 1;
    ws.serializeAttachment(attachment);
    if (attachment.refusals >= SIGNALING_RATE_LIMIT.refusalsBeforeClose) {
      this.#logger().warn('closing abusive connection', { participant_id: attachment.participantId });
      closeSocket(ws, CLOSE_CODES.policyViolation, 'rate limit exceeded');
      await this.#disconnect(ws);
      return;
    }

    const decoded = decodeClientFrame(message);
    if (!decoded.ok && decoded.tooLarge) {
      closeSocket(ws, CLOSE_CODES.messageTooBig, 'message too large');
      await this.#disconnect(ws);
      return;
    }
    // A bounded queue: frames beyond it are refused now, not held in memory behind slow ones.
    const queued = this.#queuedFrames.get(attachment.participantId) ?? 0;
    if (queued >= MAX_QUEUED_FRAMES) {
      const requestId = decoded.ok ? decoded.frame.request_id : decoded.requestId;
      sendError(ws, 'rate_limited', 'too many frames waiting: slow down', requestId);
      return;
    }
    this.#queuedFrames.set(attachment.participantId, queued + 1);
    await this.#exclusive(attachment.participantId, async () => {
      this.#frameDequeued(attachment.participantId);
      if (!allowed) {
        const requestId = decoded.ok ? decoded.frame.request_id : decoded.requestId;
        sendError(ws, 'rate_limited', 'too many frames: slow down', requestId);
        return;
      }
      if (!decoded.ok) {
        sendError(ws, decoded.code, decoded.message, decoded.requestId);
        return;
      }
      await this.#dispatch(ws, decoded.frame);
    });
  }

  override async webSocketClose(ws: WebSocket): Promise<void> {
    await this.#disconnect(ws);
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    await this.#disconnect(ws);
  }

  /** Reaps dead sockets, ends grace periods, keeps the room alive in the store, retries the mirror, closes an empty room. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    const nextLeaveExpiry = this.#state.pruneLeft(now);
    await this.#storeMirror.flush();
    await this.#webhooks.flush();
    const meta = this.#state.meta();
    if (!meta) {
      // A closed room: only leave markers (and perhaps an unsent mirror) remain, until they expire.
      await this.#scheduleAfterClose(nextLeaveExpiry);
      return;
    }

    for (const ws of this.ctx.getWebSockets()) {
      const attachment = readAttachment(ws);
      if (!attachment || attachment.replaced) continue;
      const pingedAt = this.ctx.getWebSocketAutoResponseTimestamp(ws)?.getTime();
      // Only sockets that ping can be judged dead by silence: a quiet client without keepalives is fine.
      const silent = pingedAt !== undefined && now - Math.max(pingedAt, attachment.lastMessageAt) > PING_TIMEOUT_MS;
      const neverJoined = !attachment.joined && now - attachment.connectedAt > JOIN_TIMEOUT_MS;
      if (silent || neverJoined) {
        closeSocket(
          ws,
          neverJoined ? CLOSE_CODES.policyViolation : CLOSE_CODES.goingAway,
          neverJoined ? 'join timeout' : 'ping timeout',
        );
        await this.#disconnect(ws);
      }
    }

    for (const record of this.#state.participants()) {
      if (record.graceUntil === null || record.graceUntil > now || this.#joinedConnection(record.id)) continue;
      await this.#exclusive(record.id, async () => {
        const current = this.#state.participant(record.id);
        if (current?.graceUntil != null && current.graceUntil <= now)
          await this.#depart(record.id, 'grace_expired', null);
      });
    }

    await this.#probeMediaNodes();

    const participants = this.#state.participants().length;
    const refreshAt = this.#roomRefreshAt();
    if (participants > 0 && refreshAt !== null && refreshAt <= now) {
      // A room lives while it is used: extend it, unless the store already dropped it.
      if (await this.#repository().touchRoom(meta.roomId)) {
        this.#state.updateMeta({ roomId: meta.roomId, expiresAt: now + this.#settings().roomTtlSeconds * 1000 });
      } else {
        await this.#closeRoom('room_expired');
        return;
      }
    }
    if (participants === 0 && this.ctx.getWebSockets().length === 0) {
      await this.#closeRoom('room_empty');
      return;
    }
    await this.#scheduleAlarm({ force: true });
  }

  // ---- Internals ----

  /** Called on every use: a store client must not be shared between two requests (see store/index.ts). */
  #repository(): RoomRepository {
    return roomRepository(this.env, this.#settings());
  }

  /** The room's metadata; it exists from the first connection on. */
  #meta(): RoomMeta {
    const meta = this.#state.meta();
    if (!meta) throw new Error('room state is not initialised');
    return meta;
  }

  /** Sockets with their attachments, all or one participant's. */
  #connections(participantId?: string): Connection[] {
    const sockets = this.ctx.getWebSockets(participantId === undefined ? undefined : participantTag(participantId));
    const connections: Connection[] = [];
    for (const ws of sockets) {
      const attachment = readAttachment(ws);
      if (attachment) connections.push({ ws, attachment });
    }
    return connections;
  }

  /** The participant's joined socket, if it has one. */
  #joinedConnection(participantId: string): Connection | undefined {
    return this.#connections(participantId).find(
      ({ ws, attachment }) => isOpen(ws) && attachment.joined && !attachment.replaced,
    );
  }

  /**
   * Runs `task` after every earlier task of the same participant. Frames of one socket, and media
   * events and renegotiations that concern one participant, must reach the media node and the
   * client in order even though each task awaits the network.
   */
  #exclusive<T>(participantId: string, task: () => Promise<T>): Promise<T> {
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

  #frameDequeued(participantId: string): void {
    const queued = (this.#queuedFrames.get(participantId) ?? 1) - 1;
    if (queued > 0) this.#queuedFrames.set(participantId, queued);
    else this.#queuedFrames.delete(participantId);
  }

  /** Runs a media node call whose failure must not stop the caller (cleanup); failures are logged. */
  async #bestEffort(operation: string, call: () => Promise<unknown>): Promise<void> {
    try {
      await call();
    } catch (error) {
      this.#logger().warn('media node call failed', { operation, error: errorName(error) });
    }
  }

  /**
   * Drops a feed that ended from everyone's subscription. The media node renegotiates those
   * subscribers by itself when a feed's tracks end (whoever ended them) and reports it as
   * `subscriber_offer`, which reaches the clients as `subscribe_offer`: asking it for an offer here
   * too would cross that one and leave clients answering a superseded offer.
   */
  #forgetFeed(publisherId: string): void {
    for (const record of this.#state.participants()) {
      if (!record.subscription?.includes(publisherId)) continue;
      this.#state.updateParticipant(record.id, (fresh) => {
        fresh.subscription = fresh.subscription?.filter((feed) => feed !== publisherId) ?? null;
      });
    }
  }

  /** Participants whose media lives on a node: a publisher it reported ready, or a subscription with feeds. */
  #mediaOnNode(participants = this.#state.participants()): ParticipantRecord[] {
    return participants.filter((record) => record.publisher?.ready || (record.subscription?.length ?? 0) > 0);
  }

  /** Probes every node that holds media of the room's participants (each on its own: one node's loss is its own). */
  async #probeMediaNodes(): Promise<void> {
    const withMedia = this.#mediaOnNode();
    if (withMedia.length === 0) return;
    const media = this.#media();
    const nodes = new Set(withMedia.flatMap((record) => media.placement.nodeOf(record.id) ?? []));
    for (const url of nodes) await this.#probeMediaNode(media, url);
  }

  /**
   * Asks one media node which of the room's peers it holds, and treats what it lost as gone: a node
   * that refuses connections (killed), fails {@link MEDIA_PROBE_FAILURES_BEFORE_LOST} probes in a row
   * (hung), or no longer knows the room (restarted) lost everything its participants had there; a node
   * that misses some publishers (a worker thread died) lost those. Participants on other nodes lose
   * only the feeds they received from it, and the relays from it close.
   */
  async #probeMediaNode(media: RoomMedia, url: string): Promise<void> {
    const kv = this.ctx.storage.kv;
    const failuresKey = MEDIA_PROBE_FAILURES_PREFIX + url;
    let peers: RoomPeersResponse | null;
    try {
      peers = await media.describeNode(this.#meta().roomId, url);
      kv.delete(failuresKey);
    } catch (error) {
      const failures = (kv.get<number>(failuresKey) ?? 0) + 1;
      // A refused connection: that node is gone, no second chance. Nor for a node the room's placement
      // already left (it kept timing out, and is now suspect for every room).
      const refused = error instanceof MediaNodeRefusedError;
      const left = media.placement.isLost(url);
      this.#logger().warn('media node probe failed', { error: errorName(error), failures, refused, left });
      if (!refused && !left && failures < MEDIA_PROBE_FAILURES_BEFORE_LOST) {
        kv.put(failuresKey, failures);
        return;
      }
      kv.delete(failuresKey);
      // New participants keep away from it while the registry may still list it.
      if (!left) await media.placement.release(url);
      peers = null;
    }
    const onNode = new Set(media.placement.participantsOn(url));
    const nodeLost = peers === null || (peers.publishers.length === 0 && peers.subscribers.length === 0);
    const lostPublishers = this.#state
      .participants()
      .filter(
        (record) =>
          onNode.has(record.id) &&
          (nodeLost ? record.publisher !== null : record.publisher?.ready && !peers?.publishers.includes(record.id)),
      );
    if (!nodeLost && lostPublishers.length === 0) return;
    this.#logger().warn('media node lost the room’s media', { room_lost: nodeLost, publishers: lostPublishers.length });
    for (const record of lostPublishers) {
      this.#state.updateParticipant(record.id, (fresh) => {
        fresh.publisher = null;
      });
      // Everyone hears it, the publisher too: that is its SDK's cue to publish again (on a live node).
      this.#broadcast(encodeServerFrame('publisher_left', { publisher_id: record.id }));
      this.#forgetFeed(record.id);
    }
    if (nodeLost) {
      // Nothing the node held survives: its participants' next calls place them again, on a node that
      // answers, and a subscribe there starts a new subscriber.
      for (const participantId of onNode) {
        this.#state.updateParticipant(participantId, (fresh) => {
          fresh.subscription = null;
        });
        media.forget(participantId);
      }
      // Whoever it heard speaking is not heard any more.
      this.#speakers.forgetNode(mediaNodeIdentity(url));
    }
    // Relays from the node close on the pulling nodes; relays it pulled are forgotten with it.
    await media.settleRelays();
  }

  /** When the alarm must touch the room in the store so that it does not expire while in use. */
  #roomRefreshAt(): number | null {
    const expiresAt = this.#state.meta()?.expiresAt;
    if (expiresAt == null) return null;
    return expiresAt - Math.min(ROOM_REFRESH_MARGIN_MS, (this.#settings().roomTtlSeconds * 1000) / 2);
  }

  async #alarmNoLaterThan(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }

  /** After a close: the alarm comes back for a mirror retry or a leave marker's expiry, and then for nothing. */
  async #scheduleAfterClose(nextLeaveExpiry: number | null): Promise<void> {
    const due = [nextLeaveExpiry, this.#storeMirror.retryAt, this.#webhooks.retryAt].filter(
      (at): at is number => at !== null,
    );
    // No later than: a session that began since the close may have set an earlier alarm.
    if (due.length > 0) await this.#alarmNoLaterThan(Math.min(...due));
  }

  async #dispatch(ws: WebSocket, frame: ClientFrame): Promise<void> {
    // Re-read: a join earlier in this participant's queue may have changed it.
    const attachment = readAttachment(ws);
    if (!attachment || attachment.replaced) return;
    if (frame.type !== 'join_room' && !attachment.joined) {
      sendError(ws, 'not_joined', 'send join_room first', frame.request_id);
      return;
    }
    let replied = false;
    const request: SignalingRequest<ClientFrameType> = {
      frame,
      ws,
      attachment,
      reply(type, payload) {
        if (replied) throw new Error(`second reply to ${frame.type}`);
        replied = true;
        sendText(ws, encodeServerFrame(type, payload, frame.request_id));
      },
    };
    const handler = frameHandlers[frame.type] as (
      room: RoomHandle,
      request: SignalingRequest<ClientFrameType>,
    ) => Promise<void>;
    try {
      await handler(this.#handle, request);
      if (!replied && isOpen(ws)) throw new Error(`${frame.type} handler did not reply`);
    } catch (error) {
      const code = errorCodeOf(error);
      if (code === 'internal_error') {
        this.#logger().error('frame handler failed', { type: frame.type, error: errorName(error) });
      } else if (code === 'media_unavailable') {
        // The client is told; operators need to see it too (a node down, a MEDIA_NODE_SECRET mismatch).
        this.#logger().warn('media node call failed', { type: frame.type, error: (error as Error).message });
      }
      const message = code === 'internal_error' ? 'internal error' : (error as Error).message;
      if (!replied) sendError(ws, code, message, frame.request_id);
    }
  }

  /**
   * A socket closed or failed. If it was the participant's current socket, the participant enters its
   * grace period: it may reconnect and resume until the alarm removes it.
   */
  async #disconnect(ws: WebSocket): Promise<void> {
    const attachment = readAttachment(ws);
    // Completes the closing handshake. Codes 1005/1006 may not be sent, so the reply is always 1000.
    closeSocket(ws, CLOSE_CODES.normal, 'closed');
    // Without meta the room was closed and wiped: nothing to keep, nothing to schedule.
    if (!attachment || attachment.replaced || !this.#state.meta()) return;
    // The next socket of this participant starts from what this one left of the frame allowance.
    const allowance = this.#state.allowance(attachment.participantId);
    if (allowance) {
      const left = { frames: attachment.bucket, data: attachment.dataBucket };
      this.#state.putAllowance(attachment.participantId, { ...allowance, ...left });
    }
    if (this.#state.participant(attachment.participantId)) await this.#startGrace(attachment.participantId);
    else await this.#scheduleAlarm();
  }

  /**
   * Ends the room on this object: sockets closed, all state wiped but the leave markers, the store's
   * mirror emptied (or, for a room the store dropped, every key deleted), the media node told.
   */
  async #closeRoom(reason: 'room_empty' | 'room_expired' | 'room_deleted'): Promise<void> {
    const meta = this.#meta();
    const media = this.#media();
    for (const ws of this.ctx.getWebSockets()) closeSocket(ws, CLOSE_CODES.normal, 'room closed');
    this.#speakers.close();
    // State goes first, before anything awaits the network: a client that connects while the media
    // nodes are being told must find an empty room, not have its fresh join wiped afterwards. The
    // placement stays until the nodes are told, so that the room is closed where it was.
    await this.ctx.storage.deleteAlarm();
    // Only a session that started finishes (ending a room nobody ever joined is not an event).
    if (meta.started) this.#webhooks.record('room.finished', meta.roomId, { reason });
    // The webhook outbox and sequence outlive the close: room.finished must still go out, and a
    // later session of the same room goes on numbering where this one stopped.
    this.#state.clearExceptLeaveMarkers([...PLACEMENT_KEYS, MEDIA_RELAYS_KEY, WEBHOOK_OUTBOX_KEY, WEBHOOK_SEQ_KEY]);
    this.#storeMirror.changed(meta.roomId, { deleteRoom: reason !== 'room_empty' });
    await this.#storeMirror.flush();
    if (meta.mediaUsed) await this.#bestEffort('closeRoom', () => media.closeRoom(meta.roomId));
    // Unless a new session began meanwhile (and uses the placement), nothing of the room is left behind.
    if (!this.#state.meta()) media.placement.forget();
    await this.#scheduleAfterClose(this.#state.pruneLeft(Date.now()));
    this.#logger().info('room closed', { reason });
  }
}

/** An upgrade refused for its rate: the client may retry after the bucket refilled a little. */
function rateLimited(message: string): Response {
  return errorResponse(429, 'rate_limited', message, undefined, {
    'Retry-After': String(Math.ceil(1 / UPGRADE_RATE_LIMIT.refillPerSecond)),
  });
}

function sendError(ws: WebSocket, code: ErrorCode, message: string, requestId?: string): void {
  sendText(ws, encodeServerFrame('error', { code, message }, requestId));
}
