import type { IceServer } from '../../shared/src/ice.ts';
import type { JoinRoomRequest, JoinRoomResponse, Publisher, StreamKind } from '../../shared/src/rest.ts';
import { fingerprintOf } from '../../shared/src/sdp-fingerprint.ts';
import type { IceTarget, Participant, ServerFrame } from '../../shared/src/signaling.ts';
import type { Grants } from '../../shared/src/token.ts';
import { CAMERA_SIMULCAST_ENCODINGS } from './camera-layers.ts';
import { RoomAdmin } from './room-admin.ts';
import {
  type ConnectionState,
  expectReply,
  type ReconnectPolicy,
  SignalingConnection,
  SignalingError,
} from './signaling-connection.ts';
import { TokenKeeper } from './token-keeper.ts';
import { TypedEmitter } from './typed-emitter.ts';

/** How long a connection may stay `disconnected` before it is restarted (browsers call it failed after ~30 s). */
const DISCONNECTED_GRACE_MS = 4_000;
/** The longest wait between attempts to publish again after the media node lost this participant's publishing. */
const REPUBLISH_MAX_RETRY_MS = 8_000;

/** A track received from another participant. */
export interface RemoteTrack {
  /** The participant who publishes it (also `stream.id`: the server names each forwarded stream after its publisher). */
  publisherId: string;
  /** The received audio or video track. */
  track: MediaStreamTrack;
  /** The publisher's stream this track belongs to: attach it to a `<video>` element's `srcObject`. */
  stream: MediaStream;
}

/** The events a `TrueGatherClient` emits; subscribe with `client.on(event, handler)`. */
export interface ClientEvents extends Record<string, unknown> {
  /**
   * The signaling connection's state changed: `open` once joined, `reconnecting` after a drop (the
   * client resumes within the server's grace period), `closed` for good (left, removed, room ended).
   */
  state: ConnectionState;
  /** Someone joined the room (hidden participants are never announced). */
  participant_joined: Participant;
  /** Someone left the room, was removed, or dropped and did not come back in time. */
  participant_left: Participant;
  /**
   * A participant's media flows (or its streams changed); the client subscribes to it by itself unless
   * `autoSubscribe` is false. `streams[].muted` says which kinds are muted.
   */
  publisher_joined: Publisher;
  /** A publisher stopped publishing or left; its tracks end. */
  publisher_left: { publisherId: string };
  /** A remote track arrived on the subscribing connection. */
  track: RemoteTrack;
  /** App data another participant sent with `sendData` (to everyone, or to this participant). */
  data: { from: string; data: string; topic?: string };
  /**
   * A publisher's tracks of one kind were muted or unmuted (this participant's own included).
   * `locked`: an admin's lock holds, so the participant cannot unmute; an admin lifting it sends
   * `locked: false` with `muted` unchanged.
   */
  track_muted: { publisherId: string; kind: StreamKind; muted: boolean; by: 'self' | 'admin'; locked: boolean };
  /**
   * An admin changed this participant's grants; they apply at once. A revoked `publish` or
   * `subscribe` has already ended that connection on the server, and the SDK closes its side.
   */
  grants_updated: { grants: Grants };
  /**
   * Who speaks now, loudest first (empty when nobody does); `level` is 0 (silence) … 1. Sent when the
   * set or order of speakers changes, at most 4 times a second, and once right after joining while
   * someone speaks. This participant can be among them.
   */
  activeSpeakers: { speakers: ActiveSpeaker[] };
  /**
   * The simulcast layer of `publisherId`'s video this participant now gets (after `setPreferredSize`,
   * or when the publisher's layers change), with its resolution when known; `rid: null`: none (paused,
   * or the publisher sends no layer).
   */
  layer_changed: { publisherId: string; rid: string | null; width?: number; height?: number };
  /**
   * Dynacast: the simulcast layers (rids) of this participant's video stream `mid` that viewers need
   * now. The SDK has already stopped sending the others (and resumed these); the lowest layer never stops.
   */
  publisher_layers: { mid: string; rids: string[] };
  /** Something failed in the background (a renegotiation, a token refresh, a server `error` event). */
  error: Error;
}

/** One entry of the `activeSpeakers` event. */
export interface ActiveSpeaker {
  /** The participant who speaks. */
  participantId: string;
  /** The speaker's smoothed audio level: 0 (silence) … 1 (full scale), linear. */
  level: number;
}

/** How `publish()` sends video. */
export interface PublishOptions {
  /**
   * Three simulcast layers (¼, ½ and full resolution) of each camera track, so that every viewer
   * gets the one that fits its tile and link. Default: on for cameras, off for screen shares.
   */
  simulcast?: boolean;
}

/** A screen share's track says which surface it captures; a camera's does not. */
const isScreenCapture = (track: MediaStreamTrack) => 'displaySurface' in track.getSettings();

/** What this participant asked of one feed's video (`update_subscription`), re-sent to a new subscriber connection. */
interface FeedPreference {
  max_width?: number;
  max_height?: number;
  paused?: boolean;
}

/** Options of `sendData`. */
export interface SendDataOptions {
  /** Lets receivers tell messages apart, e.g. `chat` (≤ 64 characters). */
  topic?: string;
  /** Only these participants receive it (1–100 ids); everyone else in the room by default. */
  to?: string[];
}

/** Options of a `TrueGatherClient`: which room to join, as whom, and how. */
export interface JoinOptions {
  /** The edge's base URL, e.g. `http://localhost:8080`. */
  baseUrl: string;
  /** The room to join: the `id` from `POST /api/v1/rooms` (the invitation). */
  roomId: string;
  /** The name others see (1–64 characters; control and bidi-override characters are refused). */
  display: string;
  /** Subscribe to every publisher, present and future (default true). */
  autoSubscribe?: boolean;
  /** How long and how often to reconnect after a dropped socket (default `DEFAULT_RECONNECT`: 20 s, the server's grace period). */
  reconnect?: ReconnectPolicy;
  /** ICE transport policy of both peer connections (default `all`); `relay` forces TURN. */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** Grants to ask for (e.g. `{admin: true}` for a host, `{hidden: true}` for a recorder); needs `adminCredential`. */
  grants?: JoinRoomRequest['grants'];
  /** The room's `admin_token` (its creator has it), which authorizes `grants`. */
  adminCredential?: string;
  /** The `fetch` used for REST calls (default: the global one). */
  fetch?: typeof fetch;
  /** The WebSocket class used for signaling (default: the global one; e.g. the `ws` package in older Node). */
  WebSocket?: typeof WebSocket;
}

/**
 * A participant in a TrueGather room: REST join, signaling, one publishing and one subscribing peer
 * connection, automatic subscription, trickle ICE both ways, reconnection within the server's grace
 * period, and ICE restart (republish/resubscribe) when a peer connection fails.
 */
export class TrueGatherClient extends TypedEmitter<ClientEvents> {
  /** The room this client joins. */
  readonly roomId: string;
  /** This participant's display name. */
  readonly display: string;
  /** The room's publishers by participant id, with their streams and muted state; kept current from events. */
  readonly publishers = new Map<string, Publisher>();
  /** The room's visible participants by id (from `joined` and `participant_joined`/`_left`). */
  readonly participants = new Map<string, Participant>();
  #activeSpeakers: readonly ActiveSpeaker[] = [];
  #session: { participantId: string; connection: SignalingConnection; tokens: TokenKeeper } | undefined;
  #iceServers: IceServer[] = [];
  readonly #options: JoinOptions;
  #publishing: { pc: RTCPeerConnection; stream: MediaStream; options: PublishOptions } | undefined;
  /** Encoding changes (dynacast) run one at a time: each reads the parameters the previous one set. */
  #encodingChanges: Promise<void> = Promise.resolve();
  #subscriber: RTCPeerConnection | undefined;
  readonly #subscribedFeeds = new Set<string>();
  readonly #feedPreferences = new Map<string, FeedPreference>();
  /**
   * Subscription negotiations run one at a time, each from its request to the answer of its offer:
   * a `subscribe` sent while an offer waits for its answer supersedes that offer on the server, and
   * the answer is then refused (`conflict`).
   */
  #offerChain: Promise<void> = Promise.resolve();
  /** Peer connections whose candidates may be trickled now, and the flush for those still queued. */
  readonly #trickleReady = new WeakSet<RTCPeerConnection>();
  readonly #flushCandidates = new WeakMap<RTCPeerConnection, () => void>();

  /** Subscribe to events with `on()` first, then call `join()`: no track or event is missed. */
  constructor(options: JoinOptions) {
    super();
    this.roomId = options.roomId;
    this.display = options.display;
    this.#options = options;
  }

  /** This participant's id, known once `join()` has resolved. */
  get participantId(): string {
    if (!this.#session) throw new Error('not joined yet');
    return this.#session.participantId;
  }

  /** Joins over REST, opens signaling and sends join_room (subscribing to the present publishers). */
  async join(): Promise<void> {
    if (this.#session) throw new Error('already joined');
    const fetchImpl = this.#options.fetch ?? fetch;
    const response = await fetchImpl(`${this.#options.baseUrl}/api/v1/rooms/${encodeURIComponent(this.roomId)}/join`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(this.#options.adminCredential ? { authorization: `Bearer ${this.#options.adminCredential}` } : {}),
      },
      body: JSON.stringify({ display: this.display, grants: this.#options.grants } satisfies JoinRoomRequest),
    });
    const body = await response.json();
    if (!response.ok) {
      const error = (body as { error?: { code?: string; message?: string } }).error;
      throw new Error(`join failed: ${error?.code ?? response.status} ${error?.message ?? ''}`.trim());
    }
    const join = body as JoinRoomResponse;
    this.#iceServers = join.ice_servers;
    const connection = new SignalingConnection({
      url: join.ws_url,
      token: join.token,
      reconnect: this.#options.reconnect,
      WebSocket: this.#options.WebSocket,
    });
    const tokens = new TokenKeeper({
      baseUrl: this.#options.baseUrl,
      roomId: this.roomId,
      token: join.token,
      expiresAt: new Date(join.expires_at),
      fetch: this.#options.fetch,
      onToken: (token) => {
        connection.token = token;
      },
      onError: (error) => this.emit('error', error),
    });
    connection.on('state', (state) => {
      if (state === 'closed') tokens.stop();
      this.emit('state', state);
    });
    connection.on('frame', (frame) => this.#onEvent(frame));
    connection.on('reopened', () => {
      // The server tells a participant who speaks as it joins only when somebody does.
      this.#activeSpeakers = [];
      this.#joinRoom().catch((error) => this.emit('error', error));
    });
    this.#session = { participantId: join.participant_id, connection, tokens };
    await connection.open();
    tokens.start();
    await this.#joinRoom();
  }

  get #connection(): SignalingConnection {
    if (!this.#session) throw new Error('not joined yet');
    return this.#session.connection;
  }

  /**
   * Who speaks now, loudest first: the last `activeSpeakers` event's list, so that code that starts
   * listening late still knows it. Empty after a reconnection until the server says otherwise.
   */
  get activeSpeakers(): readonly ActiveSpeaker[] {
    return this.#activeSpeakers;
  }

  /** The signaling connection's state (`connecting` until `join()` opened it). */
  get state(): ConnectionState {
    return this.#session?.connection.state ?? 'connecting';
  }

  /** WebRTC statistics of both peer connections (e.g. `framesDecoded` of inbound video). */
  async getStats(): Promise<{ publisher?: RTCStatsReport; subscriber?: RTCStatsReport }> {
    return {
      publisher: await this.#publishing?.pc.getStats(),
      subscriber: await this.#subscriber?.getStats(),
    };
  }

  /** Publishes every track of `stream` on one sendonly peer connection; cameras as simulcast by default. */
  async publish(stream: MediaStream, options: PublishOptions = {}): Promise<void> {
    if (this.#publishing) await this.unpublish();
    const pc = this.#newPeerConnection('publisher');
    for (const track of stream.getTracks()) {
      const simulcast = track.kind === 'video' && (options.simulcast ?? !isScreenCapture(track));
      pc.addTransceiver(track, {
        direction: 'sendonly',
        streams: [stream],
        ...(simulcast ? { sendEncodings: CAMERA_SIMULCAST_ENCODINGS.map((encoding) => ({ ...encoding })) } : {}),
      });
    }
    this.#publishing = { pc, stream, options };
    // A broken publishing connection is replaced whole: the media node behind it may be a new one.
    this.#recoverWhenBroken(pc, async () => {
      if (this.#publishing?.pc === pc) await this.publish(stream, options);
    });
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const reply = expectReply(
      await this.#connection.request('publish_offer', { sdp: offer.sdp ?? '' }),
      'publish_answer',
    );
    await pc.setRemoteDescription({ type: 'answer', sdp: reply.payload.sdp });
    this.#flushCandidates.get(pc)?.();
  }

  /**
   * Calls `recover` when a connection failed, or stayed disconnected for a few seconds (a network
   * switch, a media node that went away).
   */
  #recoverWhenBroken(pc: RTCPeerConnection, recover: () => Promise<void>): void {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const attempt = () => recover().catch((error) => this.emit('error', error));
    pc.addEventListener('iceconnectionstatechange', () => {
      clearTimeout(timer);
      if (pc.iceConnectionState === 'failed') void attempt();
      else if (pc.iceConnectionState === 'disconnected') {
        timer = setTimeout(() => {
          if (pc.iceConnectionState === 'disconnected') void attempt();
        }, DISCONNECTED_GRACE_MS);
      }
    });
  }

  /**
   * Publishes the same stream again from a new connection, retrying while no media node answers
   * (one that is restarting): after 1, 2, 4 and 8 s, then it reports the error.
   */
  #republish(): void {
    const publishing = this.#publishing;
    if (!publishing) return;
    this.#publishing = undefined;
    publishing.pc.close();
    const attempt = async (retryInMs: number): Promise<void> => {
      try {
        await this.publish(publishing.stream, publishing.options);
      } catch (error) {
        const retryable = error instanceof SignalingError && error.code === 'media_unavailable';
        if (!retryable || retryInMs > REPUBLISH_MAX_RETRY_MS || this.state === 'closed') throw error;
        this.#publishing?.pc.close();
        this.#publishing = undefined;
        await new Promise((resolve) => setTimeout(resolve, retryInMs));
        // Someone published or unpublished meanwhile: that choice stands.
        if (this.#publishing) return;
        await attempt(retryInMs * 2);
      }
    };
    attempt(1_000).catch((error) => this.emit('error', error));
  }

  /**
   * Sends app data (≤ 16 KiB of UTF-8) beside the media; resolves once the server accepted it.
   * Needs the `publish_data` grant; the server limits the rate per connection (`rate_limited`).
   */
  async sendData(data: string, options: SendDataOptions = {}): Promise<void> {
    expectReply(await this.#connection.request('send_data', { data, ...options }), 'ack');
  }

  /**
   * Mutes this participant's published tracks of `kind`: the server stops forwarding them. The local
   * tracks follow every `track_muted` about this participant (an admin's mute too): disabled while muted.
   */
  async mute(kind: StreamKind): Promise<void> {
    expectReply(await this.#connection.request('mute', { kind, muted: true }), 'ack');
  }

  /** Unmutes `kind`; rejects with a SignalingError `forbidden` while an admin's lock holds. */
  async unmute(kind: StreamKind): Promise<void> {
    expectReply(await this.#connection.request('mute', { kind, muted: false }), 'ack');
  }

  #enableLocal(kind: StreamKind, enabled: boolean): void {
    for (const track of this.#publishing?.stream.getTracks() ?? []) if (track.kind === kind) track.enabled = enabled;
  }

  /**
   * The room's admin routes, authorized by this participant's token (kept fresh): they answer 403
   * unless the token carries the `admin` grant.
   */
  get admin(): RoomAdmin {
    const session = this.#session;
    if (!session) throw new Error('not joined yet');
    return new RoomAdmin({
      baseUrl: this.#options.baseUrl,
      roomId: this.roomId,
      credential: () => session.tokens.token,
      fetch: this.#options.fetch,
    });
  }

  /** Stops publishing: the publishing connection closes and everyone gets `publisher_left`. */
  async unpublish(): Promise<void> {
    const publishing = this.#publishing;
    if (!publishing) return;
    this.#publishing = undefined;
    publishing.pc.close();
    await this.#connection.request('unpublish', {});
  }

  /** Adds feeds (publisher ids) to the subscription. */
  async subscribe(feeds: string[]): Promise<void> {
    const wanted = feeds.filter((feed) => feed !== this.participantId);
    if (wanted.length === 0) return;
    for (const feed of wanted) this.#subscribedFeeds.add(feed);
    await this.#negotiate(async () => {
      const reply = expectReply(await this.#connection.request('subscribe', { feeds: wanted }), 'subscribe_offer');
      await this.#answerOffer(reply.payload.sdp);
    });
  }

  /**
   * Asks for the smallest layer of `publisherId`'s video that covers `width` × `height` (a tile's
   * size in device pixels); the server switches at the layer's next keyframe. Without arguments:
   * no cap (the largest layer the server can send).
   */
  async setPreferredSize(publisherId: string, width?: number, height?: number): Promise<void> {
    const { paused } = this.#feedPreferences.get(publisherId) ?? {};
    await this.#updateSubscription(publisherId, {
      max_width: width === undefined ? undefined : Math.max(0, Math.round(width)),
      max_height: height === undefined ? undefined : Math.max(0, Math.round(height)),
      paused,
    });
  }

  /** Stops `publisherId`'s video for this participant (a hidden tile) without renegotiating; audio keeps flowing. */
  async pauseVideo(publisherId: string): Promise<void> {
    await this.#updateSubscription(publisherId, { ...this.#feedPreferences.get(publisherId), paused: true });
  }

  /** Resumes `publisherId`'s video, from its next keyframe (which the server asks for). */
  async resumeVideo(publisherId: string): Promise<void> {
    await this.#updateSubscription(publisherId, { ...this.#feedPreferences.get(publisherId), paused: false });
  }

  async #updateSubscription(feed: string, preference: FeedPreference): Promise<void> {
    this.#feedPreferences.set(feed, preference);
    const payload = { feed, ...preference };
    expectReply(await this.#connection.request('update_subscription', payload), 'ack');
  }

  /** Removes feeds (publisher ids) from the subscription; their tracks end. */
  async unsubscribe(feeds: string[]): Promise<void> {
    for (const feed of feeds) {
      this.#subscribedFeeds.delete(feed);
      this.#feedPreferences.delete(feed);
    }
    await this.#negotiate(async () => {
      const reply = expectReply(await this.#connection.request('unsubscribe', { feeds }), 'subscribe_offer');
      await this.#answerOffer(reply.payload.sdp);
    });
  }

  /** Leaves the room: the server acknowledges and closes the socket; local peer connections close. */
  async leave(): Promise<void> {
    try {
      await this.#connection.request('leave', {}, 5_000);
    } finally {
      this.#publishing?.pc.close();
      this.#publishing = undefined;
      this.#subscriber?.close();
      this.#subscriber = undefined;
      this.#connection.close();
    }
  }

  async #joinRoom(): Promise<void> {
    const reply = expectReply(
      await this.#connection.request('join_room', { room_id: this.roomId, display: this.display }),
      'joined',
    );
    this.#iceServers = reply.payload.ice_servers;
    this.publishers.clear();
    for (const publisher of reply.payload.publishers) this.publishers.set(publisher.id, publisher);
    for (const participant of reply.payload.participants ?? []) this.participants.set(participant.id, participant);
    if (this.#options.autoSubscribe ?? true) {
      const others = [...this.publishers.keys()].filter((id) => id !== this.participantId);
      if (others.length > 0) await this.subscribe(others);
    }
  }

  #onEvent(frame: ServerFrame): void {
    switch (frame.type) {
      case 'participant_joined':
        this.participants.set(frame.payload.participant.id, frame.payload.participant);
        this.emit('participant_joined', frame.payload.participant);
        break;
      case 'participant_left':
        this.participants.delete(frame.payload.participant.id);
        this.emit('participant_left', frame.payload.participant);
        break;
      case 'publisher_joined': {
        const publisher = frame.payload.publisher;
        this.publishers.set(publisher.id, publisher);
        this.emit('publisher_joined', publisher);
        const wanted = (this.#options.autoSubscribe ?? true) && publisher.id !== this.participantId;
        // Announced again (its streams changed) while subscribed: the server renegotiates by itself.
        if (wanted && !this.#subscribedFeeds.has(publisher.id)) {
          this.subscribe([publisher.id]).catch((error) => this.emit('error', error));
        }
        break;
      }
      case 'publisher_left':
        // About this participant: the media node lost its publishing (it died or restarted). Publish
        // again: the edge places the room on a node that answers.
        if (frame.payload.publisher_id === this.#session?.participantId) {
          this.#republish();
          break;
        }
        this.publishers.delete(frame.payload.publisher_id);
        this.#subscribedFeeds.delete(frame.payload.publisher_id);
        this.#feedPreferences.delete(frame.payload.publisher_id);
        this.emit('publisher_left', { publisherId: frame.payload.publisher_id });
        break;
      case 'subscribe_offer':
        this.#applyOffer(frame.payload.sdp).catch((error) => this.emit('error', error));
        break;
      case 'trickle_ice': {
        const pc = frame.payload.target === 'publisher' ? this.#publishing?.pc : this.#subscriber;
        if (pc && frame.payload.candidate) pc.addIceCandidate(frame.payload.candidate).catch(() => undefined);
        break;
      }
      case 'data':
        this.emit('data', frame.payload);
        break;
      case 'track_muted': {
        const { publisher_id: publisherId, kind, muted, by, locked } = frame.payload;
        const publisher = this.publishers.get(publisherId);
        if (publisher) {
          const streams = publisher.streams.map((stream) => (stream.kind === kind ? { ...stream, muted } : stream));
          this.publishers.set(publisherId, { ...publisher, streams });
        }
        if (this.#session?.participantId === publisherId) this.#enableLocal(kind, !muted);
        this.emit('track_muted', { publisherId, kind, muted, by, locked });
        break;
      }
      case 'grants_updated': {
        const { grants } = frame.payload;
        // The server already ended what was revoked: close this side without publishing again.
        if (!grants.publish) {
          this.#publishing?.pc.close();
          this.#publishing = undefined;
        }
        if (!grants.subscribe) {
          this.#subscriber?.close();
          this.#subscriber = undefined;
          this.#subscribedFeeds.clear();
        }
        this.emit('grants_updated', { grants });
        break;
      }
      case 'active_speakers': {
        const speakers = frame.payload.speakers.map(({ participant_id: participantId, level }) => ({
          participantId,
          level,
        }));
        this.#activeSpeakers = speakers;
        this.emit('activeSpeakers', { speakers });
        break;
      }
      case 'publisher_layers': {
        const { mid, rids } = frame.payload;
        this.#encodingChanges = this.#encodingChanges
          .then(async () => {
            await this.#sendOnlyLayers(mid, rids);
            this.emit('publisher_layers', { mid, rids });
          })
          .catch((error) => this.emit('error', error));
        break;
      }
      case 'layer_changed': {
        const { feed, ...layer } = frame.payload;
        this.emit('layer_changed', { publisherId: feed, ...layer });
        break;
      }
      case 'error':
        this.emit('error', new SignalingError(frame.payload.code, frame.payload.message));
        break;
      default:
        break;
    }
  }

  /**
   * Turns on the encodings of the publishing stream `mid` whose rid the server lists and turns off the
   * others, without renegotiating (`RTCRtpSender.setParameters`). The first encoding, the lowest
   * layer, stays on whatever the list says: a new viewer gets a picture at once.
   */
  async #sendOnlyLayers(mid: string, rids: string[]): Promise<void> {
    const sender = this.#publishing?.pc.getTransceivers().find((transceiver) => transceiver.mid === mid)?.sender;
    if (!sender) return;
    const parameters = sender.getParameters();
    let changed = false;
    parameters.encodings.forEach((encoding, index) => {
      if (encoding.rid === undefined) return;
      const active = index === 0 || rids.includes(encoding.rid);
      if (encoding.active !== active) {
        encoding.active = active;
        changed = true;
      }
    });
    if (changed) await sender.setParameters(parameters);
  }

  #negotiate(task: () => Promise<void>): Promise<void> {
    const step = this.#offerChain.then(task);
    this.#offerChain = step.catch(() => undefined);
    return step;
  }

  /** Answers an offer the server sent by itself (a subscribed publisher left, or added a track). */
  #applyOffer(sdp: string): Promise<void> {
    return this.#negotiate(() => this.#answerOffer(sdp));
  }

  /** Answers a subscriber offer, creating the receiving peer connection on first use. */
  async #answerOffer(sdp: string): Promise<void> {
    // A new DTLS fingerprint means a new connection on the server (the media node restarted, or the
    // subscription was restarted): it needs a new connection here too.
    if (this.#subscriber && fingerprintOf(this.#subscriber.remoteDescription?.sdp ?? '') !== fingerprintOf(sdp)) {
      this.#subscriber.close();
      this.#subscriber = undefined;
    }
    const fresh = this.#subscriber === undefined;
    const pc = this.#subscriber ?? this.#createSubscriber();
    await pc.setRemoteDescription({ type: 'offer', sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    await this.#connection.request('subscribe_answer', { sdp: answer.sdp ?? '' });
    this.#flushCandidates.get(pc)?.();
    // The server's new subscriber connection starts with no preference: tell it each one again.
    if (fresh) {
      for (const [feed, preference] of this.#feedPreferences) {
        if (this.#subscribedFeeds.has(feed)) {
          this.#updateSubscription(feed, preference).catch((error) => this.emit('error', error));
        }
      }
    }
  }

  #createSubscriber(): RTCPeerConnection {
    const pc = this.#newPeerConnection('subscriber');
    pc.addEventListener('track', (event) => {
      const stream = event.streams[0] ?? new MediaStream([event.track]);
      this.emit('track', { publisherId: stream.id, track: event.track, stream });
    });
    // Subscribing again to feeds already subscribed asks the server to restart the subscription: its
    // offer comes from a new connection, which #applyOffer answers with a new one here.
    this.#recoverWhenBroken(pc, async () => {
      if (this.#subscriber === pc && this.#subscribedFeeds.size > 0) await this.subscribe([...this.#subscribedFeeds]);
    });
    this.#subscriber = pc;
    return pc;
  }

  /**
   * A peer connection whose local candidates are trickled to the server once the server knows the
   * peer (after the publish answer / our subscribe answer); earlier ones wait in a queue.
   */
  #newPeerConnection(target: IceTarget): RTCPeerConnection {
    const pc = new RTCPeerConnection({
      iceServers: this.#iceServers,
      iceTransportPolicy: this.#options.iceTransportPolicy ?? 'all',
      bundlePolicy: 'max-bundle',
    });
    const queue: (RTCIceCandidateInit | null)[] = [];
    const send = (init: RTCIceCandidateInit | null) =>
      this.#connection.notify('trickle_ice', {
        target,
        candidate: init ? { ...init, candidate: init.candidate ?? '' } : null,
      });
    pc.addEventListener('icecandidate', (event) => {
      const init = event.candidate ? event.candidate.toJSON() : null;
      if (this.#trickleReady.has(pc)) send(init);
      else queue.push(init);
    });
    this.#flushCandidates.set(pc, () => {
      this.#trickleReady.add(pc);
      for (const init of queue.splice(0)) send(init);
    });
    return pc;
  }
}

export { SignalingError };
