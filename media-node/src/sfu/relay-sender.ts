import { type MediaStream, RtcpSourceDescriptionPacket, SourceDescriptionChunk, SourceDescriptionItem } from 'werift';
import type { PullResponse, RelayedTrack } from '../../../shared/src/media-control.ts';
import { badSdp, conflict, loggableError, notFound } from '../errors.ts';
import { ForwardedTrack, type SentBytes } from './forwarded-track.ts';
import { MediaPeer, type MediaPeerOptions } from './media-peer.ts';
import { announceHostCandidates, midsOf, sdpShapeProblem } from './sdp-text.ts';
import type { SenderReportClock } from './sender-reports.ts';
import type { SourceLayer, SourceTrack } from './source-track.ts';
import { type FeedTracks, feedStream } from './subscriber.ts';

/**
 * While connected, a relay sender sends an RTCP keepalive this often, whether media flows or not (a
 * muted or silent feed): the pulling node takes silence for a dropped relay. It is an SDES packet
 * whose NOTE item (RFC 3550 §6.5.7: the source's current state) tells the version of the relay's
 * track map ({@link relayNote}), and goes out at once when that changes.
 */
export const RELAY_KEEPALIVE_MS = 1_000;

/** The SDES item type NOTE (RFC 3550 §6.5.7). */
export const SDES_NOTE = 7;
const RELAY_NOTE_PREFIX = 'truegather-relay-tracks ';

/** The keepalive's NOTE text for a track map version. */
export function relayNote(version: number): string {
  return `${RELAY_NOTE_PREFIX}${version}`;
}

/** The track map version a keepalive's NOTE tells, if it is one. */
export function relayNoteVersion(text: string): number | undefined {
  if (!text.startsWith(RELAY_NOTE_PREFIX)) return undefined;
  const version = Number(text.slice(RELAY_NOTE_PREFIX.length));
  return Number.isSafeInteger(version) && version >= 0 ? version : undefined;
}

/**
 * The origin node's end of a relay: an egress peer connection to one pulling node, set up like a
 * {@link Subscriber} (the origin offers, the pulling node answers) but carrying every layer of every
 * track of its feeds, each layer on an m-line of its own ({@link ForwardedTrack} pinned to it): werift
 * sends no simulcast, and the pulling node's viewers choose their layers there. NACKs are answered
 * from the source's history and keyframe requests go to the publisher through the source's throttle,
 * as for a viewer. The pulling node renegotiates by calling {@link update} again (a `relay` after the
 * publisher renegotiated); a layer whose source ends just stops.
 */
export class RelaySender extends MediaPeer<{ closed: [reason: string, byRemote: boolean] }> {
  /** The pulling node's peer connection this sender is negotiated with (PullRequest.connection). */
  readonly connection: string;
  readonly #feedTracks: FeedTracks;
  readonly #senderReports: SenderReportClock;
  readonly #forwarded = new Map<SourceLayer, ForwardedTrack>();
  readonly #streams = new Map<string, MediaStream>();
  readonly #sent: SentBytes = { bytes: 0 };
  #wantedFeeds: string[] = [];
  #awaitingKeyframe = new Set<ForwardedTrack>();
  #keepalive: NodeJS.Timeout | undefined;
  /** Moves whenever what the wanted feeds offer changes by itself (see PullResponse.version). */
  #version = 0;

  constructor(
    options: MediaPeerOptions & { connection: string; feedTracks: FeedTracks; senderReports: SenderReportClock },
  ) {
    super(options);
    this.connection = options.connection;
    this.#feedTracks = options.feedTracks;
    this.#senderReports = options.senderReports;
  }

  /** Sets the feeds the relay carries and returns a fresh offer with its track map. */
  update(feeds: readonly string[]): Promise<PullResponse> {
    return this.negotiations.run(async () => {
      if (this.closed) throw notFound('relay sender');
      if (this.pc.signalingState === 'have-local-offer') await this.pc.setLocalDescription({ type: 'rollback' });
      this.#wantedFeeds = [...new Set(feeds)];
      this.#applyWantedFeeds();
      await this.pc.setLocalDescription(await this.pc.createOffer());
      this.lifecycle.expectConnection();
      const sdp = announceHostCandidates(this.pc.localDescription?.sdp ?? '', this.announcedIp);
      const tracks = this.#trackMap();
      const carried = new Set(tracks.map((track) => track.feed));
      return { sdp, feeds: this.#wantedFeeds.filter((feed) => carried.has(feed)), tracks, version: this.#version };
    });
  }

  setAnswer(answerSdp: string): Promise<void> {
    return this.negotiations.run(async () => {
      if (this.closed) throw notFound('relay sender');
      if (this.pc.signalingState !== 'have-local-offer') throw conflict('no offer is waiting for an answer');
      const problem = sdpShapeProblem(answerSdp, { media: false });
      if (problem) throw badSdp(problem);
      if (midsOf(answerSdp).join(' ') !== midsOf(this.pc.localDescription?.sdp ?? '').join(' ')) {
        throw conflict('the answer does not match the current offer (was it superseded?)');
      }
      try {
        await this.pc.setRemoteDescription({ type: 'answer', sdp: answerSdp });
      } catch (error) {
        throw badSdp(error instanceof Error ? error.message : 'rejected by the WebRTC stack');
      }
      for (const track of this.#forwarded.values()) {
        if (track.markNegotiated()) this.#awaitingKeyframe.add(track);
      }
      if (this.lifecycle.connected) this.#requestKeyframes();
    });
  }

  /** One pinned forwarded track per layer of every live track of the wanted feeds. */
  #applyWantedFeeds(): void {
    const wanted = new Map<SourceLayer, { source: SourceTrack; layer: SourceLayer }>();
    for (const feed of this.#wantedFeeds) {
      for (const source of this.#feedTracks(feed)) {
        if (source.closed) continue;
        for (const layer of source.layers) wanted.set(layer, { source, layer });
      }
    }
    for (const [layer, track] of this.#forwarded) {
      if (wanted.has(layer) && !track.closed) continue;
      this.#forwarded.delete(layer);
      track.close('no longer relayed');
    }
    for (const feed of this.#streams.keys()) if (!this.#wantedFeeds.includes(feed)) this.#streams.delete(feed);
    for (const { source, layer } of wanted.values()) {
      if (this.#forwarded.has(layer)) continue;
      const track = new ForwardedTrack({
        source,
        peerConnection: this.pc,
        stream: feedStream(this.#streams, source.publisherId),
        stats: this.stats,
        senderReports: this.#senderReports,
        logger: this.logger,
        sent: this.#sent,
        relayLayer: layer,
      });
      // A source that ends by itself (its publisher left or renegotiated) changes the track map.
      track.once('closed', () => {
        if (this.#forwarded.get(layer) !== track) return;
        this.#forwarded.delete(layer);
        this.refresh();
      });
      this.#forwarded.set(layer, track);
    }
  }

  get wantedFeeds(): readonly string[] {
    return this.#wantedFeeds;
  }

  /**
   * The tracks of a wanted feed changed by themselves (the room calls this as it does
   * Subscriber.refresh): the pulling node hears it from the next keepalive, sent at once, and pulls again.
   */
  refresh(): void {
    if (this.closed) return;
    this.#version++;
    this.#sendKeepalive();
  }

  #sendKeepalive(): void {
    const transport = this.pc.getTransceivers()[0]?.sender.dtlsTransport;
    if (!this.lifecycle.connected || transport?.state !== 'connected') return;
    const note = new SourceDescriptionItem({ type: SDES_NOTE, text: relayNote(this.#version) });
    const packet = new RtcpSourceDescriptionPacket({
      chunks: [new SourceDescriptionChunk({ source: 1, items: [note] })],
    });
    transport.sendRtcp([packet]).catch((error: unknown) => {
      this.logger.debug('a relay keepalive failed', { error: loggableError(error) });
    });
  }

  #trackMap(): RelayedTrack[] {
    const tracks: RelayedTrack[] = [];
    for (const [layer, track] of this.#forwarded) {
      const mid = track.transceiver.mid;
      if (!mid || track.closed) continue;
      const source = track.source;
      tracks.push({
        feed: source.publisherId,
        kind: source.kind,
        mid,
        track: source.mid,
        layer: layer.index,
        rid: layer.rid ?? null,
      });
    }
    return tracks;
  }

  protected override onConnected(): void {
    this.#requestKeyframes();
    this.#keepalive = setInterval(() => this.#sendKeepalive(), RELAY_KEEPALIVE_MS);
    this.#keepalive.unref();
  }

  /** The pulling node's viewers decode nothing until a keyframe: ask each layer once media can flow. */
  #requestKeyframes(): void {
    for (const track of this.#awaitingKeyframe) if (!track.closed) track.requestKeyframe();
    this.#awaitingKeyframe.clear();
  }

  protected override onClosed(reason: string, byRemote: boolean): void {
    clearInterval(this.#keepalive);
    for (const track of this.#forwarded.values()) track.close('relay closed');
    this.#forwarded.clear();
    this.#awaitingKeyframe.clear();
    this.emit('closed', reason, byRemote);
  }
}
