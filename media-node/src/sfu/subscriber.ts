import { MediaStream } from 'werift';
import type { SubscriberLayer } from '../../../shared/src/rest.ts';
import { badSdp, conflict, loggableError, notFound } from '../errors.ts';
import { DownlinkEstimator, type DownlinkFeedback, shareEstimate } from './downlink-estimator.ts';
import { ForwardedTrack, type SentBytes, type ViewerPreference } from './forwarded-track.ts';
import { MediaPeer, type MediaPeerOptions } from './media-peer.ts';
import {
  announceHostCandidates,
  fingerprintOf,
  iceUfragOf,
  midsOf,
  sdpShapeProblem,
  withoutMdnsCandidates,
} from './sdp-text.ts';
import type { SenderReportClock } from './sender-reports.ts';
import type { SourceTrack } from './source-track.ts';

export interface SubscriberOffer {
  sdp: string;
  /** The feeds (publisher ids) the offer carries. */
  feeds: string[];
}

interface SubscriberEvents {
  /** The layer this viewer gets of a simulcast feed's video changed (none: paused, or no layer flows). */
  layer: [SubscriberLayer];
  /** The node renegotiated by itself (a feed's tracks ended or appeared): relay to the client. */
  offer: [SubscriberOffer];
  closed: [reason: string, byRemote: boolean];
}

/** What the node sent a viewer is measured over at least this long (reports come several a second). */
const SENT_RATE_MIN_WINDOW_MS = 500;

/** The msid stream of a feed on one connection (created on first use): its id is the publisher's participant id. */
export function feedStream(streams: Map<string, MediaStream>, feed: string): MediaStream {
  let stream = streams.get(feed);
  if (!stream) {
    stream = new MediaStream({ id: feed });
    streams.set(feed, stream);
  }
  return stream;
}

/** The live source tracks of a publisher in the room, none when it does not publish. */
export type FeedTracks = (publisherId: string) => readonly SourceTrack[];

/**
 * A participant's egress peer connection. The node is always the offerer: the wanted feeds are set
 * with {@link update}, which returns an offer; {@link setAnswer} completes it. When a forwarded feed
 * changes by itself (its publisher leaves or adds a track), the node renegotiates on its own and
 * emits `offer` — after the pending offer, if any, has been answered.
 */
export class Subscriber extends MediaPeer<SubscriberEvents> {
  readonly #feedTracks: FeedTracks;
  readonly #senderReports: SenderReportClock;
  readonly #forwarded = new Map<SourceTrack, ForwardedTrack>();
  /** One msid stream per feed: its id is the publisher's participant id. */
  readonly #streams = new Map<string, MediaStream>();
  /** Answered tracks whose publisher has not yet been asked for a keyframe (waiting for DTLS). */
  #awaitingKeyframe = new Set<ForwardedTrack>();
  #wantedFeeds: string[] = [];
  /** `update_subscription` per feed: kept for the feed's tracks that appear later. */
  readonly #preferences = new Map<string, ViewerPreference>();
  /** Something changed since the last offer (a forwarded track ended by itself). */
  #offerOutdated = false;
  #refreshScheduled = false;
  readonly #downlink = new DownlinkEstimator(performance.now());
  readonly #sent: SentBytes = { bytes: 0 };
  /** The sent-rate measurement: bytes and time at its last sample, and the rate then. */
  #sentSample = { bytes: 0, at: performance.now(), bps: 0 };
  /** The tracks were last given finite budgets (the estimate was limited). */
  #budgeted = false;
  #bandwidthLimited = false;

  constructor(options: MediaPeerOptions & { feedTracks: FeedTracks; senderReports: SenderReportClock }) {
    super(options);
    this.#feedTracks = options.feedTracks;
    this.#senderReports = options.senderReports;
  }

  /** Some video of this viewer gets a lower layer than it asks for, for want of downlink bandwidth. */
  get bandwidthLimited(): boolean {
    return this.#bandwidthLimited;
  }

  get wantedFeeds(): readonly string[] {
    return this.#wantedFeeds;
  }

  /** The feeds the current negotiation carries, in the order they were asked for. */
  get carriedFeeds(): string[] {
    const carried = new Set([...this.#forwarded.keys()].map((source) => source.publisherId));
    return this.#wantedFeeds.filter((feed) => carried.has(feed));
  }

  /**
   * Sets the complete set of wanted feeds and returns a fresh offer. An offer still waiting for its
   * answer is withdrawn (rolled back): this one supersedes it, and an answer to the old one is
   * refused with 409.
   */
  update(feeds: readonly string[]): Promise<SubscriberOffer> {
    return this.negotiations.run(async () => {
      if (this.closed) throw notFound('subscriber');
      if (this.pc.signalingState === 'have-local-offer') {
        await this.pc.setLocalDescription({ type: 'rollback' });
      }
      this.#wantedFeeds = [...new Set(feeds)];
      this.#applyWantedFeeds();
      return this.#offer();
    });
  }

  setAnswer(answerSdp: string): Promise<void> {
    return this.negotiations.run(async () => {
      if (this.closed) throw notFound('subscriber');
      if (this.pc.signalingState !== 'have-local-offer') throw conflict('no offer is waiting for an answer');
      const problem = sdpShapeProblem(answerSdp, { media: false });
      if (problem) throw badSdp(problem);
      const offered = midsOf(this.pc.localDescription?.sdp ?? '');
      if (midsOf(answerSdp).join(' ') !== offered.join(' ')) {
        throw conflict('the answer does not match the current offer (was it superseded?)');
      }
      // An established connection cannot continue with another browser connection (a client that
      // reconnected): the subscriber has to be removed and created again. The node never restarts
      // ICE, so a new ICE ufrag (or DTLS fingerprint) in an answer means a new connection.
      const current = this.pc.remoteDescription?.sdp ?? '';
      const changed = (read: (sdp: string) => string | undefined) =>
        read(current) !== undefined && read(current) !== read(answerSdp);
      if (changed(iceUfragOf) || changed(fingerprintOf)) {
        throw conflict('the answer comes from another peer connection: remove the subscriber and subscribe again');
      }
      try {
        await this.pc.setRemoteDescription({ type: 'answer', sdp: withoutMdnsCandidates(answerSdp) });
      } catch (error) {
        throw badSdp(error instanceof Error ? error.message : 'rejected by the WebRTC stack');
      }
      // The connect timeout started with the offer; an answer without any m-line has nothing to connect.
      if (offered.length === 0) this.lifecycle.expectNoConnection();
      for (const track of this.#forwarded.values()) {
        if (track.markNegotiated()) this.#awaitingKeyframe.add(track);
      }
      if (this.lifecycle.connected) this.#requestKeyframes();
      if (this.#offerOutdated) this.#scheduleRefresh();
    });
  }

  /** What this viewer last asked of `feed`'s video (`update_subscription`), if anything. */
  preferenceOf(feed: string): ViewerPreference | undefined {
    return this.#preferences.get(feed);
  }

  /**
   * Which layer of `feed`'s video this viewer gets (the smallest covering the size), or none
   * (paused). Takes effect without renegotiation; replaces the feed's previous preference.
   */
  updateSubscription(feed: string, preference: ViewerPreference): void {
    if (this.closed) throw notFound('subscriber');
    this.#preferences.set(feed, preference);
    for (const track of this.#forwarded.values()) {
      if (track.source.publisherId === feed) track.setPreference(preference);
    }
    this.#allocate(performance.now());
  }

  /** A receiver-report block: the estimate learns from it, and the tracks' layers follow the estimate. */
  #onFeedback(feedback: DownlinkFeedback): void {
    const now = performance.now();
    const before = this.#downlink.estimateBps;
    this.#downlink.report(feedback, this.#sentBps(now), now);
    if (this.#downlink.estimateBps !== before) this.#logEstimate('congestion', feedback);
    this.#allocate(now);
  }

  #logEstimate(cause: 'congestion' | 'rise', feedback?: DownlinkFeedback): void {
    this.logger.debug('downlink estimate changed', {
      cause,
      estimate_bps: Math.round(this.#downlink.estimateBps),
      sent_bps: Math.round(this.#sentSample.bps),
      hold_ms: this.#downlink.holdMs,
      fraction_lost: feedback?.fractionLost,
    });
  }

  /** What the node sent this viewer lately, over at least {@link SENT_RATE_MIN_WINDOW_MS}. */
  #sentBps(now: number): number {
    const sample = this.#sentSample;
    const elapsed = now - sample.at;
    if (elapsed >= SENT_RATE_MIN_WINDOW_MS) {
      for (const track of this.#forwarded.values()) track.collectSent();
      this.#sentSample = {
        bytes: this.#sent.bytes,
        at: now,
        bps: ((this.#sent.bytes - sample.bytes) * 8_000) / elapsed,
      };
    }
    return this.#sentSample.bps;
  }

  /**
   * Shares the downlink estimate among the tracks ({@link shareEstimate}). When the estimate may rise,
   * it rises by the cheapest next layer, or to unlimited when every track already gets what it asks for.
   */
  #allocate(now: number): void {
    if (this.closed || (!this.#budgeted && !Number.isFinite(this.#downlink.estimateBps))) return;
    let plan = shareEstimate(this.#downlink.estimateBps, this.#forwarded.values(), now);
    const estimate = this.#downlink.estimateBps;
    // Limited with no next layer of known cost (not measured yet): nothing to rise to for now.
    const priced = !plan.limited || Number.isFinite(plan.upgradeBps);
    if (priced && this.#downlink.canRaise(now)) {
      const next = plan.limited ? Math.max(plan.usedBps, estimate) + plan.upgradeBps : Number.POSITIVE_INFINITY;
      if (this.#downlink.raise(next, now)) {
        this.#logEstimate('rise');
        plan = shareEstimate(this.#downlink.estimateBps, this.#forwarded.values(), now);
      }
    }
    this.#budgeted = Number.isFinite(this.#downlink.estimateBps);
    this.#bandwidthLimited = plan.limited;
  }

  /**
   * The room calls this when the tracks of a feed change. Changes made in the same turn of the
   * event loop (every track of a leaving publisher) become one renegotiation.
   */
  refresh(): void {
    this.#scheduleRefresh();
  }

  #scheduleRefresh(): void {
    if (this.#refreshScheduled || this.closed) return;
    this.#refreshScheduled = true;
    setImmediate(() => {
      this.#refreshScheduled = false;
      this.negotiations
        .run(() => this.#renegotiateByItself())
        .catch((error: unknown) => {
          this.logger.warn('renegotiating a subscriber failed', { error: loggableError(error) });
        });
    });
  }

  async #renegotiateByItself(): Promise<void> {
    if (this.closed) return;
    const changed = this.#applyWantedFeeds() || this.#offerOutdated;
    if (!changed) return;
    if (this.pc.signalingState !== 'stable') {
      // The pending offer is answered first; setAnswer schedules this again.
      this.#offerOutdated = true;
      return;
    }
    this.emit('offer', await this.#offer());
  }

  /** Adds and removes forwarded tracks to match the wanted feeds; true when anything changed. */
  #applyWantedFeeds(): boolean {
    const wanted = new Set(this.#wantedFeeds.flatMap((feed) => this.#feedTracks(feed)));
    let changed = false;
    for (const [source, track] of this.#forwarded) {
      if (wanted.has(source)) continue;
      this.#forwarded.delete(source);
      track.close('unsubscribed');
      changed = true;
    }
    for (const feed of this.#streams.keys()) {
      if (!this.#wantedFeeds.includes(feed)) this.#streams.delete(feed);
    }
    for (const feed of this.#preferences.keys()) {
      if (!this.#wantedFeeds.includes(feed)) this.#preferences.delete(feed);
    }
    for (const source of wanted) {
      if (this.#forwarded.has(source) || source.closed) continue;
      this.#forwarded.set(source, this.#forward(source));
      changed = true;
    }
    if (changed) this.#allocate(performance.now());
    return changed;
  }

  #forward(source: SourceTrack): ForwardedTrack {
    const track = new ForwardedTrack({
      source,
      peerConnection: this.pc,
      stream: feedStream(this.#streams, source.publisherId),
      stats: this.stats,
      senderReports: this.#senderReports,
      logger: this.logger,
      preference: this.#preferences.get(source.publisherId),
      sent: this.#sent,
    });
    track.on('feedback', (feedback) => this.#onFeedback(feedback));
    track.on('layer', (layer) => {
      const size = layer && layer.width > 0 ? { width: layer.width, height: layer.height } : {};
      this.emit('layer', { feed: source.publisherId, rid: layer ? (layer.rid ?? String(layer.index)) : null, ...size });
    });
    track.once('closed', () => {
      // Closed from the source side (publisher left, track ended): the m-line must go.
      if (this.#forwarded.get(source) !== track) return;
      this.#forwarded.delete(source);
      this.#offerOutdated = true;
      this.#scheduleRefresh();
    });
    return track;
  }

  async #offer(): Promise<SubscriberOffer> {
    this.#offerOutdated = false;
    await this.pc.setLocalDescription(await this.pc.createOffer());
    // From the offer on, not the answer: a subscriber whose offer is never answered would otherwise
    // hold its ports and a share of MEDIA_CAPACITY forever.
    this.lifecycle.expectConnection();
    const sdp = this.pc.localDescription?.sdp ?? '';
    return { sdp: announceHostCandidates(sdp, this.announcedIp), feeds: this.carriedFeeds };
  }

  protected override onConnected(): void {
    this.#requestKeyframes();
  }

  protected override onClosed(reason: string, byRemote: boolean): void {
    this.#downlink.close();
    this.#bandwidthLimited = false;
    for (const track of this.#forwarded.values()) track.close('subscriber closed');
    this.#forwarded.clear();
    this.#awaitingKeyframe.clear();
    this.emit('closed', reason, byRemote);
  }

  /**
   * Newly negotiated tracks ask their publisher for a keyframe once media can flow: a subscriber
   * joining late decodes nothing until the next keyframe, and browsers send keyframes rarely.
   */
  #requestKeyframes(): void {
    for (const track of this.#awaitingKeyframe) {
      if (!track.closed) track.requestKeyframe();
    }
    this.#awaitingKeyframe.clear();
  }
}
