import { EventEmitter } from 'node:events';
import type { RTCPeerConnection } from 'werift';
import type { IceCandidate } from '../../../shared/src/ice.ts';
import type { Logger } from '../../../shared/src/log.ts';
import type {
  MediaEvent,
  PublishResponse,
  PullResponse,
  RelayResponse,
  SubscribeResponse,
} from '../../../shared/src/media-control.ts';
import { mediaNodeIdentity } from '../../../shared/src/media-node-identity.ts';
import type { StreamKind } from '../../../shared/src/rest.ts';
import type { IceTarget } from '../../../shared/src/signaling.ts';
import { notFound, unavailable } from '../errors.ts';
import { ActiveSpeakerObserver, type SpeakerClock } from './active-speakers.ts';
import { Dynacast } from './dynacast.ts';
import type { ViewerPreference } from './forwarded-track.ts';
import type { ForwardingStats } from './forwarding-stats.ts';
import { createPeerConnection, type PeerRole } from './peer-connection.ts';
import type { PortAllocator } from './port-allocator.ts';
import { Publisher } from './publisher.ts';
import type { RelayReceiver } from './relay-receiver.ts';
import { RelaySender } from './relay-sender.ts';
import type { RtcSettings } from './rtc-settings.ts';
import { fingerprintOf } from './sdp-text.ts';
import type { SenderReportClock } from './sender-reports.ts';
import type { SourceTrack } from './source-track.ts';
import { Subscriber } from './subscriber.ts';

/**
 * Browsers trickle candidates right after sending their offer, so a candidate can arrive before the
 * peer connection it belongs to exists. They are kept this long, this many per peer.
 */
export const EARLY_CANDIDATE_TTL_MS = 15_000;
export const EARLY_CANDIDATES_PER_PEER = 32;

export interface RoomPeers {
  publishers: string[];
  subscribers: string[];
}

interface RoomEvents {
  /** An event for the edge. */
  event: [MediaEvent];
  /** Publishers or subscribers came or went. */
  peers: [RoomPeers];
  /** A local publisher's tracks, or their mute, changed: relays of its feed follow. */
  feed: [participantId: string];
  closed: [];
}

/**
 * The room's feeds whose publisher is not on this worker thread (a worker relay brings them from the
 * publisher's worker: workers/worker-relay.ts). Subscribers attach to their tracks as to a local
 * publisher's.
 */
export interface RelayedFeeds {
  /** The tracks of a feed relayed into this room here (none when it is not relayed). */
  tracksOf(roomId: string, feed: string): readonly SourceTrack[];
  /**
   * Sets the complete set of feeds the room's subscribers here want from elsewhere. Resolves once
   * each of them is described (its tracks exist here, or nobody holds it), or after a timeout.
   */
  want(roomId: string, feeds: ReadonlySet<string>): Promise<void>;
}

export interface RoomDependencies {
  settings: RtcSettings;
  ports: PortAllocator;
  stats: ForwardingStats;
  /** The worker's one timer for the RTCP sender reports of every forwarded track. */
  senderReports: SenderReportClock;
  /** The worker's one timer for the speaker detection of every room. */
  speakerClock: SpeakerClock;
  logger: Logger;
  connectTimeoutMs: number;
  /** MEDIA_NODE_SECRET: signs this node's calls to the origin nodes of its relays. */
  secret: Uint8Array;
  /** Feeds relayed from the node's other worker threads; none on a node of one worker. */
  relayedFeeds?: RelayedFeeds;
}

interface EarlyCandidates {
  candidates: (IceCandidate | null)[];
  expiresAt: number;
}

/**
 * The pulling end of a relay between nodes, loaded with a room's first relay: the origin client
 * validates the origin's answers with the wire contract's zod schemas and signs its calls with jose,
 * ~6 MB of heap that a worker which pulls nothing never loads. Node caches the modules.
 */
const loadPullingEnd = async () => {
  const [{ OriginClient }, { RelayReceiver }] = await Promise.all([
    import('./origin-client.ts'),
    import('./relay-receiver.ts'),
  ]);
  return { OriginClient, RelayReceiver };
};
type PullingEnd = Awaited<ReturnType<typeof loadPullingEnd>>;

/**
 * A room on this node (mediasoup's Router): its publishers and subscribers, and the wiring that
 * makes subscribers follow the tracks of the feeds they want. It closes itself when its last peer
 * goes.
 */
export class MediaRoom extends EventEmitter<RoomEvents> {
  readonly id: string;
  readonly #deps: RoomDependencies;
  readonly #logger: Logger;
  readonly #publishers = new Map<string, Publisher>();
  readonly #subscribers = new Map<string, Subscriber>();
  /** The origin ends of relays to pulling nodes, by relay id. */
  readonly #relaySenders = new Map<string, RelaySender>();
  /** The pulling ends of relays from origin nodes, by the origin's identity. */
  readonly #relayReceivers = new Map<string, RelayReceiver>();
  readonly #earlyCandidates = new Map<string, EarlyCandidates>();
  /** Feeds of subscribe and pull commands under way, by count: wanted from elsewhere before anyone lists them. */
  readonly #subscribing = new Map<string, number>();
  readonly #speakers: ActiveSpeakerObserver;
  readonly #dynacast: Dynacast | undefined;
  #idleTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(id: string, deps: RoomDependencies) {
    super();
    this.id = id;
    this.#deps = deps;
    this.#logger = deps.logger.child({ room_id: id });
    this.#speakers = new ActiveSpeakerObserver(deps.speakerClock);
    this.#speakers.on('speakers', (speakers) => this.emit('event', { type: 'active_speakers', room_id: id, speakers }));
    this.#dynacast = deps.settings.dynacast
      ? new Dynacast(
          { publishers: () => this.#publishers.values(), subscribers: () => this.#subscribers.values() },
          (publisherId, layers) =>
            this.emit('event', { type: 'publisher_layers', room_id: id, participant_id: publisherId, ...layers }),
        )
      : undefined;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Subscribers that get a lower layer of some video than they ask for, for want of downlink bandwidth. */
  get bandwidthLimitedViewers(): number {
    let limited = 0;
    for (const subscriber of this.#subscribers.values()) if (subscriber.bandwidthLimited) limited++;
    return limited;
  }

  /** Relays of this room open on this node, by this node's end (metrics). */
  get relays(): { sending: number; receiving: number } {
    let receiving = 0;
    for (const receiver of this.#relayReceivers.values()) if (receiver.open) receiving++;
    return { sending: this.#relaySenders.size, receiving };
  }

  get peers(): RoomPeers {
    return { publishers: [...this.#publishers.keys()], subscribers: [...this.#subscribers.keys()] };
  }

  /**
   * A publisher's offer. From the browser connection that already publishes (same DTLS fingerprint)
   * it is a renegotiation, e.g. adding a screen track; from a new connection it replaces the old one.
   */
  async publish(participantId: string, offerSdp: string): Promise<PublishResponse> {
    this.#assertOpen();
    const existing = this.#publishers.get(participantId);
    if (existing && existing.fingerprint !== undefined && existing.fingerprint === fingerprintOf(offerSdp)) {
      return existing.negotiate(offerSdp);
    }
    const publisher = new Publisher({
      participantId,
      ...this.#peerConnection('ingress'),
      announcedIp: this.#deps.settings.announcedIp,
      stats: this.#deps.stats,
      connectTimeoutMs: this.#deps.connectTimeoutMs,
      logger: this.#logger.child({ participant_id: participantId, peer: 'publisher' }),
    });
    // The new publisher takes the place first, so the room never looks empty in between.
    this.#publishers.set(participantId, publisher);
    existing?.close('replaced by a new connection');
    publisher.on('track', (source) => {
      this.#speakers.add(source);
      this.refreshSubscribersOf(participantId);
      this.emit('feed', participantId);
    });
    publisher.on('ready', (streams) =>
      this.emit('event', { type: 'publisher_ready', room_id: this.id, participant_id: participantId, streams }),
    );
    publisher.once('closed', (reason, byRemote) => this.#peerClosed('publisher', publisher, reason, byRemote));
    this.#peersChanged();
    return this.#firstNegotiation('publisher', publisher, () => publisher.negotiate(offerSdp));
  }

  /**
   * The tracks of a feed sourced on this worker thread: a local publisher's, else the relay from
   * another node brings it here. What a worker relay carries to the node's other workers; never a
   * feed that a worker relay brought here, so no feed goes round in circles.
   */
  localFeedTracks(feed: string): readonly SourceTrack[] {
    const publisher = this.#publishers.get(feed);
    if (publisher) return publisher.tracks;
    for (const receiver of this.#relayReceivers.values()) {
      const tracks = receiver.tracksOf(feed);
      if (tracks.length > 0) return tracks;
    }
    return NO_TRACKS;
  }

  /** Stops or resumes forwarding a publisher's tracks of one kind (see Publisher.mute). */
  mute(participantId: string, kind: StreamKind, muted: boolean): void {
    const publisher = this.#publishers.get(participantId);
    if (!publisher) throw notFound('publisher');
    publisher.mute(kind, muted);
    this.emit('feed', participantId);
  }

  /** One feed's layer preference for a subscriber (see Subscriber.updateSubscription). */
  updateSubscription(participantId: string, feed: string, preference: ViewerPreference): void {
    const subscriber = this.#subscribers.get(participantId);
    if (!subscriber) throw notFound('subscriber');
    subscriber.updateSubscription(feed, preference);
  }

  unpublish(participantId: string): void {
    this.#publishers.get(participantId)?.close('removed');
  }

  /** Creates the subscriber if needed and returns an offer for exactly `feeds`. */
  async subscribe(participantId: string, feeds: readonly string[]): Promise<SubscribeResponse> {
    this.#assertOpen();
    return this.#wantingAlso(feeds, async () => {
      // Feeds whose publisher is on another worker must be here before the offer lists their tracks.
      await this.#syncRelayedFeeds();
      this.#assertOpen();
      const existing = this.#subscribers.get(participantId);
      if (existing) return existing.update(feeds);
      const subscriber = this.#createSubscriber(participantId);
      return this.#firstNegotiation('subscriber', subscriber, () => subscriber.update(feeds));
    });
  }

  /**
   * Runs a command that sets what a subscriber or relay sender wants, counting `feeds` as wanted while
   * it runs (before it lists them); afterwards, feeds no longer wanted may stop being relayed here.
   */
  async #wantingAlso<Result>(feeds: readonly string[], command: () => Promise<Result>): Promise<Result> {
    for (const feed of feeds) this.#subscribing.set(feed, (this.#subscribing.get(feed) ?? 0) + 1);
    try {
      return await command();
    } finally {
      for (const feed of feeds) {
        const count = (this.#subscribing.get(feed) ?? 1) - 1;
        if (count > 0) this.#subscribing.set(feed, count);
        else this.#subscribing.delete(feed);
      }
      void this.#syncRelayedFeeds();
    }
  }

  /** Asks the worker relays for the feeds this room's subscribers and relay senders want and no local publisher sends. */
  #syncRelayedFeeds(): Promise<void> {
    const relayed = this.#deps.relayedFeeds;
    if (!relayed) return Promise.resolve();
    const wanted = new Set<string>();
    if (!this.#closed) {
      for (const feed of this.#subscribing.keys()) wanted.add(feed);
      for (const subscriber of this.#subscribers.values()) for (const feed of subscriber.wantedFeeds) wanted.add(feed);
      for (const sender of this.#relaySenders.values()) for (const feed of sender.wantedFeeds) wanted.add(feed);
    }
    for (const publisherId of this.#publishers.keys()) wanted.delete(publisherId);
    return relayed.want(this.id, wanted);
  }

  setSubscriberAnswer(participantId: string, answerSdp: string): Promise<void> {
    const subscriber = this.#subscribers.get(participantId);
    if (!subscriber) throw notFound('subscriber');
    return subscriber.setAnswer(answerSdp);
  }

  closeSubscriber(participantId: string): void {
    this.#subscribers.get(participantId)?.close('removed');
  }

  async addIceCandidate(participantId: string, target: IceTarget, candidate: IceCandidate | null): Promise<void> {
    this.#assertOpen();
    const peer = target === 'publisher' ? this.#publishers.get(participantId) : this.#subscribers.get(participantId);
    if (peer) {
      await peer.addIceCandidate(candidate);
      return;
    }
    this.#keepEarlyCandidate(`${target}:${participantId}`, candidate);
  }

  #createSubscriber(participantId: string): Subscriber {
    const subscriber = new Subscriber({
      participantId,
      ...this.#peerConnection('egress'),
      feedTracks: (publisherId) => this.#feedTracks(publisherId),
      announcedIp: this.#deps.settings.announcedIp,
      stats: this.#deps.stats,
      senderReports: this.#deps.senderReports,
      connectTimeoutMs: this.#deps.connectTimeoutMs,
      logger: this.#logger.child({ participant_id: participantId, peer: 'subscriber' }),
    });
    this.#subscribers.set(participantId, subscriber);
    subscriber.on('offer', ({ sdp, feeds }) =>
      this.emit('event', { type: 'subscriber_offer', room_id: this.id, participant_id: participantId, sdp, feeds }),
    );
    subscriber.on('layer', (layer) =>
      this.emit('event', { type: 'subscriber_layer', room_id: this.id, participant_id: participantId, ...layer }),
    );
    subscriber.once('closed', (reason, byRemote) => this.#peerClosed('subscriber', subscriber, reason, byRemote));
    this.#peersChanged();
    return subscriber;
  }

  /**
   * A feed's live tracks: a local publisher's, else a relayed feed's (a source next to the publishers):
   * from another node, or from another worker thread of this node.
   */
  #feedTracks(feed: string): readonly SourceTrack[] {
    const local = this.localFeedTracks(feed);
    if (local.length > 0) return local;
    return this.#deps.relayedFeeds?.tracksOf(this.id, feed) ?? NO_TRACKS;
  }

  /**
   * Edge → pulling node: the feeds to pull from the origin node at `originUrl` (complete set; none
   * closes the relay). Resolves once the relayed tracks exist, so a following `subscribe` gets them.
   */
  async relay(originUrl: string, feeds: readonly string[], pullingNode: string): Promise<RelayResponse> {
    this.#assertOpen();
    const pulling = await loadPullingEnd();
    this.#assertOpen();
    const origin = mediaNodeIdentity(originUrl);
    const existing = this.#relayReceivers.get(origin);
    if (!existing && feeds.length === 0) {
      this.#peersChanged();
      return { feeds: [] };
    }
    const receiver = existing ?? this.#createRelayReceiver(pulling, originUrl, pullingNode);
    try {
      return { feeds: await receiver.relay(feeds) };
    } catch (error) {
      // A relay that never got established is not retried: the edge hears of it and asks again.
      if (!existing) receiver.close('establishing the relay failed');
      // A `feeds: []` queued just before closed the relay this call waited on: this one opens a new one.
      if (existing?.closed && feeds.length > 0) return this.relay(originUrl, feeds, pullingNode);
      throw error;
    }
  }

  #createRelayReceiver(
    { OriginClient, RelayReceiver }: PullingEnd,
    originUrl: string,
    pullingNode: string,
  ): RelayReceiver {
    const origin = new OriginClient({ originUrl, roomId: this.id, pullingNode, secret: this.#deps.secret });
    const receiver = new RelayReceiver({
      origin,
      connect: () => ({
        ...this.#peerConnection('ingress'),
        announcedIp: this.#deps.settings.announcedIp,
        stats: this.#deps.stats,
        connectTimeoutMs: this.#deps.connectTimeoutMs,
      }),
      stats: this.#deps.stats,
      logger: this.#logger.child({ peer: 'relay-receiver' }),
    });
    const key = mediaNodeIdentity(originUrl);
    this.#relayReceivers.set(key, receiver);
    receiver.on('track', (source) => {
      this.refreshSubscribersOf(source.publisherId);
      this.emit('feed', source.publisherId);
    });
    receiver.once('closed', () => {
      if (this.#relayReceivers.get(key) === receiver) this.#relayReceivers.delete(key);
      this.#peersChanged();
    });
    return receiver;
  }

  /**
   * Pulling node → origin node: the relay sender `relayId` carries `feeds` and offers them. From
   * another peer connection of the pulling node (the relay was re-established) it replaces the old one.
   */
  async pull(relayId: string, connection: string, feeds: readonly string[]): Promise<PullResponse> {
    this.#assertOpen();
    return this.#wantingAlso(feeds, async () => {
      // Feeds whose publisher is on another worker thread come through its worker relay.
      await this.#syncRelayedFeeds();
      this.#assertOpen();
      const existing = this.#relaySenders.get(relayId);
      if (existing && existing.connection === connection) return existing.update(feeds);
      const sender = new RelaySender({
        participantId: relayId,
        connection,
        ...this.#peerConnection('egress'),
        feedTracks: (feed) => this.#feedTracks(feed),
        announcedIp: this.#deps.settings.announcedIp,
        stats: this.#deps.stats,
        senderReports: this.#deps.senderReports,
        connectTimeoutMs: this.#deps.connectTimeoutMs,
        logger: this.#logger.child({ relay_id: relayId, peer: 'relay-sender' }),
      });
      this.#relaySenders.set(relayId, sender);
      existing?.close('replaced by a new connection');
      this.#logger.info('relay sender opened', { relay_id: relayId, replaces: existing !== undefined });
      sender.once('closed', () => {
        if (this.#relaySenders.get(relayId) === sender) this.#relaySenders.delete(relayId);
        void this.#syncRelayedFeeds();
        this.#peersChanged();
      });
      try {
        return await sender.update(feeds);
      } catch (error) {
        sender.close('negotiation failed');
        throw error;
      }
    });
  }

  setRelaySenderAnswer(relayId: string, answerSdp: string): Promise<void> {
    const sender = this.#relaySenders.get(relayId);
    if (!sender) throw notFound('relay sender');
    return sender.setAnswer(answerSdp);
  }

  closeRelaySender(relayId: string): void {
    this.#relaySenders.get(relayId)?.close('removed');
  }

  /** Forgets a closed peer (unless a newer connection took its place) and reports a close the edge did not ask for. */
  #peerClosed(role: IceTarget, peer: Publisher | Subscriber, reason: string, byRemote: boolean): void {
    const peers: Map<string, Publisher | Subscriber> = role === 'publisher' ? this.#publishers : this.#subscribers;
    const participantId = peer.participantId;
    if (peers.get(participantId) === peer) peers.delete(participantId);
    if (byRemote) {
      this.emit('event', { type: `${role}_closed`, room_id: this.id, participant_id: participantId, reason });
    }
    if (role === 'publisher') this.emit('feed', participantId);
    else void this.#syncRelayedFeeds();
    this.#peersChanged();
  }

  /** A peer connection with its own block of ports, released when werift has closed it. */
  #peerConnection(role: PeerRole) {
    const block = this.#deps.ports.acquire();
    if (!block) throw unavailable('no free RTC ports on this node', { reason: 'ports_exhausted' });
    let peerConnection: RTCPeerConnection;
    try {
      peerConnection = createPeerConnection(this.#deps.settings, role, block.range);
    } catch (error) {
      // No connection owns the block yet: it would be lost for the life of the worker.
      this.#deps.ports.release(block);
      throw error;
    }
    return { peerConnection, onReleased: () => this.#deps.ports.release(block) };
  }

  /** Subscribers of the feed take up its current tracks (a local publisher's, or a relayed feed's). */
  refreshSubscribersOf(publisherId: string): void {
    for (const subscriber of this.#subscribers.values()) {
      if (subscriber.wantedFeeds.includes(publisherId)) subscriber.refresh();
    }
    for (const sender of this.#relaySenders.values()) {
      if (sender.wantedFeeds.includes(publisherId)) sender.refresh();
    }
  }

  #keepEarlyCandidate(key: string, candidate: IceCandidate | null): void {
    this.#dropExpiredCandidates();
    const early = this.#earlyCandidates.get(key) ?? { candidates: [], expiresAt: Date.now() + EARLY_CANDIDATE_TTL_MS };
    if (early.candidates.length < EARLY_CANDIDATES_PER_PEER) early.candidates.push(candidate);
    this.#earlyCandidates.set(key, early);
    this.#peersChanged();
  }

  /**
   * A new peer's first negotiation: the candidates trickled before the peer existed apply once it
   * has negotiated; a failure ends the peer.
   */
  async #firstNegotiation<Result>(
    target: IceTarget,
    peer: Publisher | Subscriber,
    negotiate: () => Promise<Result>,
  ): Promise<Result> {
    try {
      const result = await negotiate();
      await this.#applyEarlyCandidates(peer.participantId, target, peer);
      return result;
    } catch (error) {
      peer.close('negotiation failed');
      throw error;
    }
  }

  async #applyEarlyCandidates(
    participantId: string,
    target: IceTarget,
    peer: { addIceCandidate(candidate: IceCandidate | null): Promise<void> },
  ): Promise<void> {
    const key = `${target}:${participantId}`;
    const early = this.#earlyCandidates.get(key);
    this.#earlyCandidates.delete(key);
    if (!early || early.expiresAt <= Date.now()) return;
    for (const candidate of early.candidates) {
      await peer.addIceCandidate(candidate).catch(() => this.#logger.debug('an early ICE candidate was rejected'));
    }
  }

  /**
   * Reports the peers, and closes the room once it has none. A room that only holds early
   * candidates lives until they expire.
   */
  #peersChanged(): void {
    if (this.#closed) return;
    this.emit('peers', this.peers);
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    if (this.#publishers.size > 0 || this.#subscribers.size > 0 || this.#holdsRelays()) return;
    this.#dropExpiredCandidates();
    if (this.#earlyCandidates.size === 0) {
      this.close();
      return;
    }
    this.#idleTimer = setTimeout(() => this.#peersChanged(), EARLY_CANDIDATE_TTL_MS);
    this.#idleTimer.unref();
  }

  #dropExpiredCandidates(): void {
    const now = Date.now();
    for (const [key, early] of this.#earlyCandidates) {
      if (early.expiresAt <= now) this.#earlyCandidates.delete(key);
    }
  }

  #holdsRelays(): boolean {
    return this.#relaySenders.size > 0 || this.#relayReceivers.size > 0;
  }

  /** After a failed command: a room that never got a peer must not linger. */
  closeIfUnused(): void {
    if (!this.#closed && this.#publishers.size === 0 && this.#subscribers.size === 0 && !this.#holdsRelays()) {
      this.#peersChanged();
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw notFound('room');
  }

  /** Closes every peer connection of the room; the edge asked for it, so no per-peer events. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#idleTimer);
    this.#speakers.close();
    this.#dynacast?.close();
    for (const publisher of this.#publishers.values()) publisher.close('room closed');
    for (const subscriber of this.#subscribers.values()) subscriber.close('room closed');
    for (const receiver of this.#relayReceivers.values()) receiver.close('room closed');
    for (const sender of this.#relaySenders.values()) sender.close('room closed');
    this.#publishers.clear();
    this.#subscribers.clear();
    this.#relayReceivers.clear();
    this.#relaySenders.clear();
    this.#earlyCandidates.clear();
    void this.#syncRelayedFeeds();
    this.emit('closed');
  }
}

const NO_TRACKS: readonly SourceTrack[] = [];
