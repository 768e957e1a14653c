import type { MessagePort } from 'node:worker_threads';
import { RTCRtpCodecParameters, type RtpPacket } from 'werift';
import type { Logger } from '../../../shared/src/log.ts';
import { createForwardingStats } from '../sfu/forwarding-stats.ts';
import type { MediaRoom, RelayedFeeds } from '../sfu/room.ts';
import { type RtpSink, SOURCE_HISTORY_SIZE, type SourceLayer, SourceTrack } from '../sfu/source-track.ts';
import { RING_RETRANSMISSION, RingReader, RingWriter } from './packet-ring.ts';

/**
 * The worker relay: a room spread over the node's worker threads. The worker of a publisher (its
 * origin) relays each packet of a feed once to each other worker with viewers of it, through a
 * {@link RingWriter} in memory both threads share; a MessagePort carries what is not a packet (which
 * feeds a worker wants, their tracks, keyframe requests and NACKs) and one doorbell per batch of
 * packets. On the receiving worker the feed is a relayed feed: SourceTracks with the origin's layers,
 * their own NACK history and keyframe throttling, which Subscribers attach to as to a local
 * publisher's ({@link RelayedFeeds}).
 *
 * The main thread pairs the workers (a {@link LinkEnds} per pair, see workers/pool.ts); a worker
 * wants the feeds its subscribers need and no local publisher sends from every worker it is linked
 * to, and whichever holds the publisher answers with its tracks, now and at each change (tracks
 * added or ended, mute). A feed wanted before anyone publishes it arrives when it is published.
 */

/** One end of the link between two worker threads of a node. */
export interface LinkEnds {
  /** The other worker's index. */
  peer: number;
  port: MessagePort;
  /** The ring this worker writes packets into, and the one it reads the other's from. */
  outbound: SharedArrayBuffer;
  inbound: SharedArrayBuffer;
}

/** How long a subscribe waits for linked workers to describe a feed it wants. */
export const DESCRIBE_TIMEOUT_MS = 2_000;

interface CodecDescription {
  mimeType: string;
  clockRate: number;
  channels?: number;
  payloadType: number;
  rtcpFeedback: { type: string; parameter?: string }[];
  parameters?: string;
}

interface LayerDescription {
  /** The ring's stream id of this layer's packets. */
  stream: number;
  rid?: string;
  ssrc?: number;
  width: number;
  height: number;
}

interface TrackDescription {
  /** The origin's id of the track on this link: a new id is a new track (a republished feed). */
  id: number;
  kind: 'audio' | 'video';
  mid: string;
  codec: CodecDescription;
  muted: boolean;
  layers: LayerDescription[];
}

type LinkMessage =
  /** Packets are in the ring. */
  | { type: 'doorbell' }
  | { type: 'want'; roomId: string; feed: string }
  | { type: 'unwant'; roomId: string; feed: string }
  /** The complete set of a wanted feed's tracks at the origin (none: not published there). */
  | { type: 'feed'; roomId: string; feed: string; tracks: TrackDescription[] }
  | { type: 'keyframe'; stream: number }
  | { type: 'nack'; stream: number; sequenceNumbers: number[] };

const feedKey = (roomId: string, feed: string) => `${roomId}\n${feed}`;

export interface WorkerRelayDependencies {
  roomOf(roomId: string): MediaRoom | undefined;
  logger: Logger;
}

export class WorkerRelay implements RelayedFeeds {
  readonly #deps: WorkerRelayDependencies;
  readonly #links = new Map<number, WorkerLink>();
  /** Per room, the feeds its subscribers here want from other workers. */
  readonly #wanted = new Map<string, ReadonlySet<string>>();

  constructor(deps: WorkerRelayDependencies) {
    this.#deps = deps;
  }

  link(ends: LinkEnds): void {
    this.#links.get(ends.peer)?.close();
    const link = new WorkerLink(ends, this.#deps, () => {
      if (this.#links.get(ends.peer) === link) this.#links.delete(ends.peer);
    });
    this.#links.set(ends.peer, link);
    for (const [roomId, feeds] of this.#wanted) for (const feed of feeds) link.want(roomId, feed);
  }

  unlink(peer: number): void {
    this.#links.get(peer)?.close();
  }

  tracksOf(roomId: string, feed: string): readonly SourceTrack[] {
    if (this.#links.size === 0) return [];
    const tracks: SourceTrack[] = [];
    for (const link of this.#links.values()) tracks.push(...link.tracksOf(roomId, feed));
    return tracks;
  }

  async want(roomId: string, feeds: ReadonlySet<string>): Promise<void> {
    const current = this.#wanted.get(roomId) ?? new Set<string>();
    for (const link of this.#links.values()) {
      for (const feed of feeds) if (!current.has(feed)) link.want(roomId, feed);
      for (const feed of current) if (!feeds.has(feed)) link.unwant(roomId, feed);
    }
    if (feeds.size > 0) this.#wanted.set(roomId, new Set(feeds));
    else this.#wanted.delete(roomId);
    if (feeds.size === 0 || this.#links.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, DESCRIBE_TIMEOUT_MS);
    });
    const described = [...this.#links.values()].flatMap((link) =>
      [...feeds].map((feed) => link.described(roomId, feed)),
    );
    await Promise.race([Promise.all(described), timeout]);
    clearTimeout(timer);
  }

  /** A local publisher's tracks or mute changed: workers that want its feed hear of it. */
  feedChanged(roomId: string, feed: string): void {
    for (const link of this.#links.values()) link.feedChanged(roomId, feed);
  }

  close(): void {
    for (const link of this.#links.values()) link.close();
  }
}

/** The origin's side of one relayed track: an RtpSink on every layer, writing into the ring. */
class OutgoingTrack implements RtpSink {
  readonly roomId: string;
  readonly feed: string;
  readonly id: number;
  readonly source: SourceTrack;
  readonly streams = new Map<SourceLayer, number>();
  readonly #link: WorkerLink;

  constructor(link: WorkerLink, roomId: string, feed: string, source: SourceTrack, nextId: () => number) {
    this.#link = link;
    this.roomId = roomId;
    this.feed = feed;
    this.source = source;
    this.id = nextId();
    for (const layer of source.layers) {
      this.streams.set(layer, nextId());
      source.attach(this, layer);
    }
  }

  forward(packet: RtpPacket, layer: SourceLayer): void {
    this.#link.send(this.streams.get(layer)!, 0, packet);
  }

  /** The relayed feed measures its layers itself, from the packets it gets. */
  layersChanged(): void {}

  /** The source ended (track removed, publisher gone): the other worker hears the feed's new set of tracks. */
  close(): void {
    this.#link.outgoingEnded(this);
  }

  release(): void {
    this.source.release(this);
  }

  describe(): TrackDescription {
    const { source } = this;
    const codec = source.codec;
    return {
      id: this.id,
      kind: source.kind,
      mid: source.mid,
      codec: {
        mimeType: codec.mimeType,
        clockRate: codec.clockRate,
        channels: codec.channels,
        payloadType: codec.payloadType,
        rtcpFeedback: codec.rtcpFeedback.map(({ type, parameter }) => ({ type, parameter })),
        parameters: codec.parameters,
      },
      muted: source.muted,
      layers: source.layers.map((layer) => ({
        stream: this.streams.get(layer)!,
        rid: layer.rid,
        ssrc: layer.ssrc,
        width: layer.width,
        height: layer.height,
      })),
    };
  }
}

/** The receiving side of one relayed feed: its tracks, as the origin last described them. */
interface IncomingFeed {
  roomId: string;
  feed: string;
  tracks: Map<number, SourceTrack>;
  /** Resolved at the origin's first description. */
  described: Promise<void>;
  resolveDescribed: () => void;
}

/** Both directions between this worker and one other. */
class WorkerLink {
  readonly #port: MessagePort;
  readonly #writer: RingWriter;
  readonly #reader: RingReader;
  readonly #deps: WorkerRelayDependencies;
  readonly #logger: Logger;
  readonly #onClosed: () => void;
  #nextId = 1;
  #closed = false;
  #doorbellScheduled = false;
  // As the origin: what the other worker wants, and the tracks relayed to it.
  readonly #interests = new Set<string>();
  readonly #outgoing = new Map<SourceTrack, OutgoingTrack>();
  readonly #outgoingLayers = new Map<number, { track: OutgoingTrack; layer: SourceLayer }>();
  readonly #describeScheduled = new Set<string>();
  // As the receiving side: the feeds wanted from the other worker.
  readonly #incoming = new Map<string, IncomingFeed>();
  readonly #incomingLayers = new Map<number, { track: SourceTrack; layer: SourceLayer }>();
  /** Relayed tracks count nothing in the worker's stats: their packets were counted by the origin. */
  readonly #uncounted = createForwardingStats();
  /** NACKs the relayed histories could not answer, sent to the origin once per event-loop turn. */
  readonly #missing = new Map<number, number[]>();
  #missingScheduled = false;

  constructor(ends: LinkEnds, deps: WorkerRelayDependencies, onClosed: () => void) {
    this.#port = ends.port;
    this.#writer = new RingWriter(ends.outbound);
    this.#reader = new RingReader(ends.inbound);
    this.#deps = deps;
    this.#logger = deps.logger.child({ linked_worker: ends.peer });
    this.#onClosed = onClosed;
    this.#port.on('message', (message: LinkMessage) => this.#onMessage(message));
    // The other thread ended (terminated, crashed): its relayed feeds end too.
    this.#port.once('close', () => this.close());
    this.#drain();
  }

  // --- as the origin ---

  send(stream: number, flags: number, packet: RtpPacket): void {
    this.#writer.write(stream, flags, packet);
    if (this.#doorbellScheduled) return;
    this.#doorbellScheduled = true;
    // One doorbell for every packet of this event-loop turn, and only if the reader waits for one.
    setImmediate(this.#ringDoorbell);
  }

  readonly #ringDoorbell = (): void => {
    this.#doorbellScheduled = false;
    if (!this.#closed && this.#writer.takeDoorbell()) this.#post({ type: 'doorbell' });
  };

  feedChanged(roomId: string, feed: string): void {
    if (this.#interests.has(feedKey(roomId, feed))) this.#scheduleDescribe(roomId, feed);
  }

  outgoingEnded(track: OutgoingTrack): void {
    this.#dropOutgoing(track);
    this.#scheduleDescribe(track.roomId, track.feed);
  }

  #scheduleDescribe(roomId: string, feed: string): void {
    const key = feedKey(roomId, feed);
    if (this.#describeScheduled.has(key)) return;
    this.#describeScheduled.add(key);
    queueMicrotask(() => {
      this.#describeScheduled.delete(key);
      if (this.#interests.has(key)) this.#describe(roomId, feed);
    });
  }

  /** Relays the feed's current tracks (and only those) and tells the other worker what they are. */
  #describe(roomId: string, feed: string): void {
    if (this.#closed) return;
    const sources = (this.#deps.roomOf(roomId)?.localFeedTracks(feed) ?? []).filter((source) => !source.closed);
    for (const track of [...this.#outgoing.values()]) {
      if (track.roomId === roomId && track.feed === feed && !sources.includes(track.source)) {
        this.#dropOutgoing(track);
        track.release();
      }
    }
    const tracks = sources.map((source) => {
      let track = this.#outgoing.get(source);
      if (!track) {
        track = new OutgoingTrack(this, roomId, feed, source, () => this.#nextId++);
        this.#outgoing.set(source, track);
        for (const [layer, stream] of track.streams) this.#outgoingLayers.set(stream, { track, layer });
      }
      return track.describe();
    });
    this.#post({ type: 'feed', roomId, feed, tracks });
  }

  #dropOutgoing(track: OutgoingTrack): void {
    if (this.#outgoing.get(track.source) !== track) return;
    this.#outgoing.delete(track.source);
    for (const stream of track.streams.values()) this.#outgoingLayers.delete(stream);
  }

  #onWant(roomId: string, feed: string): void {
    this.#interests.add(feedKey(roomId, feed));
    this.#describe(roomId, feed);
  }

  #onUnwant(roomId: string, feed: string): void {
    this.#interests.delete(feedKey(roomId, feed));
    for (const track of [...this.#outgoing.values()]) {
      if (track.roomId !== roomId || track.feed !== feed) continue;
      this.#dropOutgoing(track);
      track.release();
    }
  }

  /** Retransmits what the other worker's relayed history lacks, from this worker's history. */
  #onNack(stream: number, sequenceNumbers: number[]): void {
    const entry = this.#outgoingLayers.get(stream);
    if (!entry) return;
    for (const sequenceNumber of sequenceNumbers) {
      const packet = entry.layer.packetBySequenceNumber(sequenceNumber);
      if (packet) this.send(stream, RING_RETRANSMISSION, packet);
    }
  }

  // --- as the receiving side ---

  tracksOf(roomId: string, feed: string): SourceTrack[] {
    const incoming = this.#incoming.get(feedKey(roomId, feed));
    return incoming ? [...incoming.tracks.values()] : [];
  }

  want(roomId: string, feed: string): void {
    const key = feedKey(roomId, feed);
    if (this.#closed || this.#incoming.has(key)) return;
    let resolveDescribed = () => {};
    const described = new Promise<void>((resolve) => {
      resolveDescribed = resolve;
    });
    this.#incoming.set(key, { roomId, feed, tracks: new Map(), described, resolveDescribed });
    this.#post({ type: 'want', roomId, feed });
  }

  unwant(roomId: string, feed: string): void {
    const key = feedKey(roomId, feed);
    const incoming = this.#incoming.get(key);
    if (!incoming) return;
    this.#incoming.delete(key);
    incoming.resolveDescribed();
    this.#post({ type: 'unwant', roomId, feed });
    for (const track of incoming.tracks.values()) track.close();
  }

  described(roomId: string, feed: string): Promise<void> {
    return this.#incoming.get(feedKey(roomId, feed))?.described ?? Promise.resolve();
  }

  /** Makes the relayed feed's tracks match the origin's description; its subscribers follow. */
  #onFeed(roomId: string, feed: string, descriptions: TrackDescription[]): void {
    const incoming = this.#incoming.get(feedKey(roomId, feed));
    if (!incoming) return;
    const ids = new Set(descriptions.map((description) => description.id));
    for (const [id, track] of incoming.tracks) {
      if (ids.has(id)) continue;
      incoming.tracks.delete(id);
      track.close();
    }
    let added = false;
    for (const description of descriptions) {
      const existing = incoming.tracks.get(description.id);
      if (existing) {
        existing.setMuted(description.muted);
        continue;
      }
      incoming.tracks.set(description.id, this.#createIncoming(feed, description));
      added = true;
    }
    incoming.resolveDescribed();
    if (added) this.#deps.roomOf(roomId)?.refreshSubscribersOf(feed);
  }

  #createIncoming(feed: string, description: TrackDescription): SourceTrack {
    const streamOf = new Map<SourceLayer, number>();
    const track = new SourceTrack({
      publisherId: feed,
      kind: description.kind,
      mid: description.mid,
      codec: new RTCRtpCodecParameters(description.codec),
      tracks: description.layers.map((layer) => ({ rid: layer.rid, ssrc: layer.ssrc })),
      // Throttled per layer by the relayed track as by any source, and again by the origin.
      sendKeyframeRequest: (layer) => {
        this.#post({ type: 'keyframe', stream: streamOf.get(layer)! });
        return Promise.resolve();
      },
      stats: this.#uncounted,
      logger: this.#logger,
    });
    track.layers.forEach((layer, index) => {
      const stream = description.layers[index]!.stream;
      layer.width = description.layers[index]!.width;
      layer.height = description.layers[index]!.height;
      layer.onHistoryMiss = (sequenceNumber) => this.#askOrigin(stream, sequenceNumber);
      streamOf.set(layer, stream);
      this.#incomingLayers.set(stream, { track, layer });
    });
    if (description.muted) track.setMuted(true);
    track.once('closed', () => {
      for (const stream of streamOf.values()) this.#incomingLayers.delete(stream);
    });
    return track;
  }

  #askOrigin(stream: number, sequenceNumber: number): void {
    const missing = this.#missing.get(stream);
    if (missing) missing.push(sequenceNumber);
    else this.#missing.set(stream, [sequenceNumber]);
    if (this.#missingScheduled) return;
    this.#missingScheduled = true;
    setImmediate(() => {
      this.#missingScheduled = false;
      for (const [missingStream, sequenceNumbers] of this.#missing) {
        this.#post({ type: 'nack', stream: missingStream, sequenceNumbers });
      }
      this.#missing.clear();
    });
  }

  /** Reads every packet in the ring, then waits for the next doorbell. */
  #drain(): void {
    do {
      this.#reader.read(this.#onPacket);
    } while (!this.#closed && !this.#reader.arm());
  }

  readonly #onPacket = (stream: number, flags: number, packet: RtpPacket): void => {
    const entry = this.#incomingLayers.get(stream);
    if (!entry) return;
    if (flags & RING_RETRANSMISSION) {
      // For the viewer's next NACK of it (werift and browsers repeat theirs); a newer packet in its
      // slot stays.
      const history = entry.layer.history;
      const slot = packet.header.sequenceNumber & (SOURCE_HISTORY_SIZE - 1);
      const held = history[slot];
      if (!held || ((packet.header.sequenceNumber - held.header.sequenceNumber) & 0xffff) < 0x8000) {
        history[slot] = packet;
      }
      return;
    }
    try {
      entry.track.receive(entry.layer, packet);
    } catch (error) {
      this.#logger.debug('a relayed packet failed', { error: String(error) });
    }
  };

  #onMessage(message: LinkMessage): void {
    switch (message.type) {
      case 'doorbell':
        this.#drain();
        return;
      case 'want':
        this.#onWant(message.roomId, message.feed);
        return;
      case 'unwant':
        this.#onUnwant(message.roomId, message.feed);
        return;
      case 'feed':
        this.#onFeed(message.roomId, message.feed, message.tracks);
        return;
      case 'keyframe': {
        const entry = this.#outgoingLayers.get(message.stream);
        entry?.track.source.requestKeyframe(entry.layer);
        return;
      }
      case 'nack':
        this.#onNack(message.stream, message.sequenceNumbers);
        return;
    }
  }

  #post(message: LinkMessage): void {
    if (!this.#closed) this.#port.postMessage(message);
  }

  /** Ends both directions: relayed tracks here close (their viewers renegotiate), sinks there are released. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const track of this.#outgoing.values()) track.release();
    this.#outgoing.clear();
    this.#outgoingLayers.clear();
    this.#interests.clear();
    for (const incoming of this.#incoming.values()) {
      incoming.resolveDescribed();
      for (const track of incoming.tracks.values()) track.close();
    }
    this.#incoming.clear();
    this.#port.close();
    this.#onClosed();
  }
}
