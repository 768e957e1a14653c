import { EventEmitter } from 'node:events';
import {
  MediaStreamTrack,
  type RTCRtpTransceiver,
  type RtcpPacket,
  RtcpSourceDescriptionPacket,
  type RtpPacket,
} from 'werift';
import { newId } from '../../../shared/src/ids.ts';
import type { Logger } from '../../../shared/src/log.ts';
import type { PullResponse, RelayedTrack } from '../../../shared/src/media-control.ts';
import { badSdp, loggableError, MediaNodeError, notFound } from '../errors.ts';
import type { ForwardingStats } from './forwarding-stats.ts';
import { MediaPeer, type MediaPeerOptions } from './media-peer.ts';
import type { OriginClient } from './origin-client.ts';
import { RELAY_KEEPALIVE_MS, relayNoteVersion, SDES_NOTE } from './relay-sender.ts';
import { announceHostCandidates, sdpShapeProblem } from './sdp-text.ts';
import { SerialQueue } from './serial-queue.ts';
import { SourceTrack } from './source-track.ts';

/**
 * A relay that dropped is re-established after these delays (then every last one) while it is still
 * wanted; the first attempt that connects starts the sequence over.
 */
export const RELAY_RETRY_DELAYS_MS = [250, 500, 1_000, 2_000, 4_000] as const;

/**
 * A relay connection that heard nothing from the origin (RTP, or the RTCP keepalive its relay sender
 * sends every {@link RELAY_KEEPALIVE_MS}) for this long has dropped: ICE consent would take 30 s.
 */
export const RELAY_SILENCE_MS = 3_000;

/**
 * One peer connection of a relay's pulling end, answering the origin's offers. A relay that is
 * re-established gets a new one; the relayed feeds outlive it.
 */
interface RelayConnectionEvents {
  connected: [];
  /** The origin's keepalive told a track map version other than the last pull's. */
  version: [number];
  closed: [reason: string, byRemote: boolean];
}

class RelayConnection extends MediaPeer<RelayConnectionEvents> {
  readonly id = newId();
  /** The track map version of the last pull over this connection. */
  version = 0;
  #heardAt = 0;
  #watchdog: NodeJS.Timeout | undefined;
  #unsubscribers: (() => void)[] = [];

  constructor(options: MediaPeerOptions) {
    super(options);
  }

  answer(offerSdp: string): Promise<string> {
    return this.negotiations.run(async () => {
      if (this.closed) throw notFound('relay connection');
      const problem = sdpShapeProblem(offerSdp, { media: false });
      if (problem) throw badSdp(problem);
      await this.pc.setRemoteDescription({ type: 'offer', sdp: offerSdp });
      await this.pc.setLocalDescription(await this.pc.createAnswer());
      this.lifecycle.expectConnection();
      return announceHostCandidates(this.pc.localDescription?.sdp ?? '', this.announcedIp);
    });
  }

  transceiver(mid: string): RTCRtpTransceiver | undefined {
    return this.pc.getTransceivers().find((transceiver) => transceiver.mid === mid && !transceiver.stopped);
  }

  protected override onConnected(): void {
    const transport = this.pc.getTransceivers()[0]?.receiver.dtlsTransport;
    if (transport) {
      this.#heardAt = performance.now();
      const heard = () => {
        this.#heardAt = performance.now();
      };
      this.#unsubscribers = [
        transport.onRtp.subscribe(heard).unSubscribe,
        transport.onRtcp.subscribe((packet) => {
          heard();
          this.#readKeepalive(packet);
        }).unSubscribe,
      ];
      this.#watchdog = setInterval(() => {
        if (performance.now() - this.#heardAt > RELAY_SILENCE_MS) this.close('the origin went silent', true);
      }, RELAY_KEEPALIVE_MS);
      this.#watchdog.unref();
    }
    this.emit('connected');
  }

  #readKeepalive(packet: RtcpPacket): void {
    if (!(packet instanceof RtcpSourceDescriptionPacket)) return;
    for (const chunk of packet.chunks) {
      for (const item of chunk.items) {
        const version = item.type === SDES_NOTE ? relayNoteVersion(item.text) : undefined;
        if (version !== undefined && version !== this.version) this.emit('version', version);
      }
    }
  }

  protected override onClosed(reason: string, byRemote: boolean): void {
    clearInterval(this.#watchdog);
    for (const unsubscribe of this.#unsubscribers) unsubscribe();
    this.emit('closed', reason, byRemote);
  }
}

/**
 * One layer of a relayed track: the stable input of its {@link SourceTrack}'s layer, fed by whichever
 * relay m-line carries the layer now. When that changes (the relay was re-established, or the origin
 * renegotiated the m-line), the new stream's sequence numbers and timestamps are shifted to continue
 * where the old one stopped: the source's history, and every viewer's stream, stay continuous.
 */
class RelayedLayer {
  readonly input: MediaStreamTrack;
  readonly #clockRate: number;
  readonly #stats: ForwardingStats;
  #bound: MediaStreamTrack | undefined;
  #unsubscribe: (() => void) | undefined;
  #started = false;
  #rebase = false;
  #sequenceOffset = 0;
  #timestampOffset = 0;
  #highestSequenceNumber = 0;
  #lastTimestamp = 0;
  #lastArrivalMs = 0;

  constructor(kind: 'audio' | 'video', rid: string | undefined, clockRate: number, stats: ForwardingStats) {
    this.input = new MediaStreamTrack({ kind, rid, remote: true });
    this.#clockRate = clockRate;
    this.#stats = stats;
  }

  bind(track: MediaStreamTrack): void {
    if (track === this.#bound) return;
    this.#unsubscribe?.();
    this.#bound = track;
    this.#rebase = this.#started;
    this.#unsubscribe = track.onReceiveRtp.subscribe(this.#onRtp).unSubscribe;
  }

  /** werift hands this listener its own copy of the packet: the header is rewritten in place. */
  readonly #onRtp = (packet: RtpPacket): void => {
    this.#stats.relayReceivedPackets++;
    this.#stats.relayReceivedBytes += packet.payload.length;
    const header = packet.header;
    const now = performance.now();
    if (this.#rebase) {
      this.#rebase = false;
      this.#sequenceOffset = (this.#highestSequenceNumber + 1 - header.sequenceNumber) & 0xffff;
      const elapsedTicks = Math.max(1, Math.round(((now - this.#lastArrivalMs) * this.#clockRate) / 1000));
      this.#timestampOffset = (this.#lastTimestamp + elapsedTicks - header.timestamp) >>> 0;
    }
    const sequenceNumber = (header.sequenceNumber + this.#sequenceOffset) & 0xffff;
    const timestamp = (header.timestamp + this.#timestampOffset) >>> 0;
    header.sequenceNumber = sequenceNumber;
    header.timestamp = timestamp;
    // Retransmissions are older than the highest packet: they do not move the continuation point.
    if (!this.#started || ((sequenceNumber - this.#highestSequenceNumber) & 0xffff) < 0x8000) {
      this.#started = true;
      this.#highestSequenceNumber = sequenceNumber;
      this.#lastTimestamp = timestamp;
      this.#lastArrivalMs = now;
    }
    this.input.onReceiveRtp.execute(packet);
  };

  close(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#bound = undefined;
  }
}

/** A track of a relayed feed: the source viewers attach to, and its layers' relay inputs. */
class RelayedSource {
  readonly track: SourceTrack;
  readonly #layers: RelayedLayer[];
  readonly #shape: string;

  constructor(options: {
    feed: string;
    entries: readonly RelayedTrack[];
    transceivers: readonly RTCRtpTransceiver[];
    stats: ForwardingStats;
    logger: Logger;
  }) {
    const first = options.entries[0]!;
    const codec = options.transceivers[0]!.codecs[0]!;
    this.#shape = RelayedSource.shapeOf(options.entries, options.transceivers);
    this.#layers = options.entries.map(
      (entry) => new RelayedLayer(entry.kind, entry.rid ?? undefined, codec.clockRate, options.stats),
    );
    this.track = new SourceTrack({
      publisherId: options.feed,
      kind: first.kind,
      mid: first.track,
      codec,
      receiver: options.transceivers[0]!.receiver,
      tracks: this.#layers.map((layer) => layer.input),
      stats: options.stats,
      logger: options.logger,
    });
  }

  /** What must not change for the source to go on: its kind, codec and layers. */
  static shapeOf(entries: readonly RelayedTrack[], transceivers: readonly RTCRtpTransceiver[]): string {
    const codec = transceivers[0]?.codecs[0];
    return JSON.stringify([
      entries[0]?.kind,
      codec?.mimeType.toLowerCase(),
      codec?.clockRate,
      entries.map((e) => e.rid),
    ]);
  }

  matches(shape: string): boolean {
    return shape === this.#shape && !this.track.closed;
  }

  /** Feeds the layers from these m-lines (in layer order); keyframe requests go out on the first. */
  bind(transceivers: readonly RTCRtpTransceiver[]): void {
    transceivers.forEach((transceiver, index) => {
      const received = transceiver.receiver.tracks[0] ?? transceiver.receiver.track;
      if (received) this.#layers[index]?.bind(received);
    });
    this.track.receiver = transceivers[0]!.receiver;
  }

  /** A new connection is up: viewers decode nothing of it until a keyframe. */
  requestKeyframes(): void {
    for (const layer of this.track.layers) if (layer.sinks.length > 0) this.track.requestKeyframe(layer);
  }

  close(): void {
    for (const layer of this.#layers) layer.close();
    this.track.close();
  }
}

interface RelayReceiverEvents {
  /** A relayed track appeared: the viewers of its feed get it. */
  track: [SourceTrack];
  closed: [];
}

export interface RelayReceiverOptions {
  origin: OriginClient;
  /** A new ingress peer connection of the room (its own ports), for each (re-)establishment. */
  connect: (relayId: string) => Omit<MediaPeerOptions, 'participantId' | 'logger'>;
  stats: ForwardingStats;
  logger: Logger;
}

/**
 * The pulling node's end of a relay: the feeds this node's viewers need from one origin node, for
 * one room, over one werift peer connection whatever the number of viewers. Each published track
 * becomes a {@link SourceTrack} of a relayed feed, its layers regrouped from the relay's m-lines by
 * the origin's track map, so subscribers attach to it as to a local publisher's. A connection that
 * fails is replaced with backoff ({@link RELAY_RETRY_DELAYS_MS}) while feeds are wanted; the relayed
 * tracks and their viewers stay in place meanwhile (a gap, not a close).
 */
export class RelayReceiver extends EventEmitter<RelayReceiverEvents> {
  /** The origin knows this relay by this id (its relay sender's). */
  readonly relayId = newId();
  readonly #options: RelayReceiverOptions;
  readonly #logger: Logger;
  readonly #queue = new SerialQueue();
  /** Relayed sources by feed, then by the publisher's track mid. */
  readonly #feeds = new Map<string, Map<string, RelayedSource>>();
  #wanted: string[] = [];
  #connection: RelayConnection | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #attempt = 0;
  #closed = false;

  constructor(options: RelayReceiverOptions) {
    super();
    this.#options = options;
    this.#logger = options.logger.child({ relay_id: this.relayId });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The relay has a peer connection to the origin (not idle, not between two of them). */
  get open(): boolean {
    return this.#connection !== undefined && !this.#connection.closed;
  }

  /** The feeds the relay carries now. */
  get feeds(): string[] {
    return this.#wanted.filter((feed) => this.#feeds.has(feed));
  }

  /** The live source tracks of a relayed feed (none if this relay does not carry it). */
  tracksOf(feed: string): SourceTrack[] {
    return [...(this.#feeds.get(feed)?.values() ?? [])].map((source) => source.track);
  }

  /**
   * Sets the complete set of feeds to pull and negotiates with the origin; resolves once the relayed
   * tracks exist. No feeds: the relay closes (on the origin too).
   */
  relay(feeds: readonly string[]): Promise<string[]> {
    return this.#queue.run(async () => {
      if (this.#closed) throw notFound('relay');
      this.#wanted = [...new Set(feeds)];
      if (this.#wanted.length === 0) {
        this.close('no feeds wanted');
        return [];
      }
      await this.#negotiate();
      return this.feeds;
    });
  }

  /** One pull from the origin over the current connection, or a new one if there is none. */
  async #negotiate(): Promise<void> {
    const existing = this.#connection;
    const fresh = !existing || existing.closed;
    const connection = fresh ? this.#newConnection() : existing;
    try {
      const offer = await this.#options.origin.pull(this.relayId, { feeds: this.#wanted, connection: connection.id });
      if (offer.tracks.length === 0 && fresh) {
        // The origin has none of the feeds: nothing to connect until the edge asks again. (A relay
        // that is up stays up without tracks: the publisher may be republishing on the origin.)
        this.#endFeeds(() => true);
        connection.close('nothing to relay');
        await this.#options.origin.closeRelaySender(this.relayId);
        return;
      }
      connection.version = offer.version;
      const answer = await connection.answer(offer.sdp);
      this.#applyTracks(connection, offer);
      await this.#options.origin.setRelaySenderAnswer(this.relayId, answer);
    } catch (error) {
      if (fresh) connection.close('negotiation failed');
      if (error instanceof MediaNodeError && error.code === 'not_found') {
        // The origin holds nothing of this room (any more): none of the feeds is there.
        this.#endFeeds(() => true);
        return;
      }
      throw error;
    }
  }

  #newConnection(): RelayConnection {
    const connection = new RelayConnection({
      ...this.#options.connect(this.relayId),
      participantId: this.relayId,
      logger: this.#logger,
    });
    this.#connection = connection;
    connection.on('connected', () => {
      this.#attempt = 0;
      for (const sources of this.#feeds.values()) for (const source of sources.values()) source.requestKeyframes();
    });
    connection.on('version', (version) => this.#pullAgain(connection, version));
    connection.once('closed', (reason, byRemote) => {
      if (this.#connection === connection) this.#connection = undefined;
      if (byRemote && !this.#closed) {
        this.#logger.info('relay dropped; re-establishing it', { reason });
        this.#scheduleReconnect();
      }
    });
    return connection;
  }

  /** The origin's feeds changed by themselves: pull the same feeds again (renegotiating the relay). */
  #pullAgain(connection: RelayConnection, version: number): void {
    this.#queue
      .run(async () => {
        if (this.#closed || this.#connection !== connection || connection.closed || connection.version === version) {
          return;
        }
        await this.#negotiate();
      })
      .catch((error: unknown) => {
        // The keepalive tells the version again; a connection that failed is re-established.
        this.#logger.warn('renegotiating a relay failed', { error: loggableError(error) });
      });
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#retryTimer || this.#wanted.length === 0) return;
    const delay = RELAY_RETRY_DELAYS_MS[Math.min(this.#attempt, RELAY_RETRY_DELAYS_MS.length - 1)]!;
    this.#attempt++;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#queue
        .run(async () => {
          if (this.#closed || this.#wanted.length === 0 || (this.#connection && !this.#connection.closed)) return;
          await this.#negotiate();
        })
        .catch((error: unknown) => {
          this.#logger.warn('re-establishing a relay failed', { error: loggableError(error), attempt: this.#attempt });
          this.#scheduleReconnect();
        });
    }, delay);
  }

  /** Makes the relayed sources match the origin's track map: new ones start, missing ones end. */
  #applyTracks(connection: RelayConnection, offer: PullResponse): void {
    const groups = new Map<string, Map<string, RelayedTrack[]>>();
    for (const entry of offer.tracks) {
      const tracks = groups.get(entry.feed) ?? new Map<string, RelayedTrack[]>();
      groups.set(entry.feed, tracks);
      tracks.set(entry.track, [...(tracks.get(entry.track) ?? []), entry]);
    }
    this.#endFeeds((feed) => !groups.has(feed));
    const created: SourceTrack[] = [];
    for (const [feed, tracks] of groups) {
      const sources = this.#feeds.get(feed) ?? new Map<string, RelayedSource>();
      this.#feeds.set(feed, sources);
      for (const [key, source] of sources) {
        if (tracks.has(key)) continue;
        sources.delete(key);
        source.close();
      }
      for (const [key, unordered] of tracks) {
        const entries = [...unordered].sort((a, b) => a.layer - b.layer);
        const transceivers = entries.map((entry) => connection.transceiver(entry.mid));
        if (!transceivers.every((transceiver) => transceiver && transceiver.codecs.length > 0)) {
          this.#logger.warn('a relayed track has no negotiated m-line', { feed });
          continue;
        }
        const negotiated = transceivers as RTCRtpTransceiver[];
        let source = sources.get(key);
        if (source && !source.matches(RelayedSource.shapeOf(entries, negotiated))) {
          sources.delete(key);
          source.close();
          source = undefined;
        }
        if (!source) {
          source = new RelayedSource({
            feed,
            entries,
            transceivers: negotiated,
            stats: this.#options.stats,
            logger: this.#logger,
          });
          sources.set(key, source);
          created.push(source.track);
        }
        source.bind(negotiated);
      }
    }
    for (const track of created) this.emit('track', track);
  }

  /** Ends the relayed feeds `ended` selects: their viewers renegotiate as when a publisher leaves. */
  #endFeeds(ended: (feed: string) => boolean): void {
    for (const [feed, sources] of this.#feeds) {
      if (!ended(feed)) continue;
      this.#feeds.delete(feed);
      for (const source of sources.values()) source.close();
    }
  }

  /** Ends the relay: its relayed feeds end, and the origin is told to close its end. */
  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    this.#logger.debug('relay closing', { reason });
    this.#endFeeds(() => true);
    this.#connection?.close(reason);
    this.#options.origin.closeRelaySender(this.relayId).catch((error: unknown) => {
      this.#logger.debug('closing the origin end of a relay failed', { error: loggableError(error) });
    });
    this.emit('closed');
  }
}
