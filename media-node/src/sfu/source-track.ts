import { EventEmitter } from 'node:events';
import type { MediaStreamTrack, RTCRtpCodecParameters, RTCRtpReceiver, RtpPacket } from 'werift';
import type { Logger } from '../../../shared/src/log.ts';
import { loggableError } from '../errors.ts';
import { AudioLevelMeter, NO_AUDIO_LEVEL, readAudioLevel } from './audio-level.ts';
import { BitrateMeter, PACKET_OVERHEAD_BYTES } from './bitrate.ts';
import type { ForwardingStats } from './forwarding-stats.ts';
import { FanoutBatch, SteadyLegs } from './rtp-egress.ts';
import { emptyVp8Descriptor, isH264KeyframeStart, readVp8Descriptor } from './video-frames.ts';

/** At most one keyframe request per second reaches a publisher's layer, as mediasoup does. */
export const KEYFRAME_REQUEST_INTERVAL_MS = 1_000;

/**
 * A simulcast layer that sent nothing for this long is gone (the browser stops its top layers when
 * its estimate drops): viewers move to a layer that still flows.
 */
export const LAYER_IDLE_MS = 1_000;
const LAYER_CHECK_INTERVAL_MS = 500;

/**
 * Incoming header extensions are dropped: their ids follow the publisher's negotiation, and the
 * egress sender copies unknown ids back into the packet, where a subscriber reads them with its own
 * id map (werift then delivered nothing). The publisher's audio level in particular is read here and
 * never forwarded: subscribers do not negotiate it. Frozen, so that no code path can fill the shared array.
 */
const NO_EXTENSIONS: RtpPacket['header']['extensions'] = Object.freeze([]) as never;

/**
 * Packets kept per layer for retransmissions (NACK), shared by every subscriber of the layer:
 * werift keeps 128 copies per subscriber leg instead. A power of two (indexed by sequence number).
 */
export const SOURCE_HISTORY_SIZE = 512;

/** Something that forwards a source's packets to one subscriber (a {@link ForwardedTrack}). */
export interface RtpSink {
  /**
   * A packet of `layer`, which the sink attached to; `keyframe`: the first packet of a keyframe. A
   * sink may stage its copy in `fanout`, which the source sends once every sink has seen the packet.
   */
  forward(packet: RtpPacket, layer: SourceLayer, keyframe: boolean, fanout: FanoutBatch): void;
  /** Layers appeared, stopped or announced their resolution: the sink may choose another. */
  layersChanged(): void;
  close(reason: string): void;
}

/**
 * One encoding of a track: the only one without simulcast, else one per rid (RFC 8853), each with
 * its own SSRC and sequence numbers. Its sinks are the viewers that get this layer, or wait for its
 * next keyframe to switch to it: packets of a layer without sinks go nowhere.
 */
export class SourceLayer {
  /** Position in the publisher's offer. */
  readonly index: number;
  readonly rid: string | undefined;
  ssrc: number | undefined;
  /** From the last keyframe (VP8); 0 while unknown. */
  width = 0;
  height = 0;
  /** Packets arrived within the last {@link LAYER_IDLE_MS}. */
  active = false;
  lastPacketAt = Number.NEGATIVE_INFINITY;
  /** What forwarding this layer costs a viewer's link (payload + {@link PACKET_OVERHEAD_BYTES} per packet). */
  readonly bitrate = new BitrateMeter();
  /** Replaced, never mutated, so the packet loop iterates a stable array. */
  sinks: readonly RtpSink[] = [];
  /**
   * The sinks called for each packet: every sink but those whose leg is among {@link steadyLegs}
   * (those are called only for packets the addon does not send: padding, CSRCs). Replaced, never mutated.
   */
  forwarders: readonly RtpSink[] = [];
  /** The subscriber legs the addon alone sends this layer's packets to (rtp-egress.ts). */
  readonly steadyLegs = new SteadyLegs();
  readonly history: (RtpPacket | undefined)[] = [];
  lastKeyframeRequestAt = Number.NEGATIVE_INFINITY;
  deferredKeyframeRequest: NodeJS.Timeout | undefined;

  /**
   * Told of a NACKed packet the history does not hold: a relayed feed asks its origin for it
   * (workers/worker-relay.ts). A publisher's layer has none: what it lacks, nobody has.
   */
  onHistoryMiss: ((sequenceNumber: number) => void) | undefined;

  constructor(index: number, rid: string | undefined, ssrc: number | undefined) {
    this.index = index;
    this.rid = rid;
    this.ssrc = ssrc;
  }

  /** The packet with this (source) sequence number, while it is among the last {@link SOURCE_HISTORY_SIZE}. */
  readonly packetBySequenceNumber = (sequenceNumber: number): RtpPacket | undefined => {
    const packet = this.history[sequenceNumber & (SOURCE_HISTORY_SIZE - 1)];
    if (packet?.header.sequenceNumber === sequenceNumber) return packet;
    this.onHistoryMiss?.(sequenceNumber);
    return undefined;
  };
}

/**
 * Where a layer's packets come from: werift's track of one rid (or the only one) of a publisher's
 * receiver, or, for a relayed feed, a description without a track ({@link SourceTrack.receive} is fed).
 */
export type LayerInput = Pick<MediaStreamTrack, 'rid' | 'ssrc'> & Partial<Pick<MediaStreamTrack, 'onReceiveRtp'>>;

/** What a viewer asks of a video track (`update_subscription`): the smallest layer covering this size. */
export interface LayerPreference {
  maxWidth?: number;
  maxHeight?: number;
}

interface SourceTrackEvents {
  /** The first RTP packet arrived. */
  flowing: [];
  closed: [];
}

/**
 * One track a publisher sends (mediasoup's Producer): its negotiated codec, its layers, and the
 * fan-out of each layer's RTP to the {@link RtpSink}s attached to it. Keyframe requests from any
 * subscriber go through {@link requestKeyframe}, which throttles them per layer.
 */
export class SourceTrack extends EventEmitter<SourceTrackEvents> {
  readonly publisherId: string;
  readonly kind: 'audio' | 'video';
  readonly mid: string;
  readonly codec: RTCRtpCodecParameters;
  /** In the publisher's order; more than one with simulcast. */
  readonly layers: readonly SourceLayer[];
  /**
   * The werift receiver keyframe requests go to: a publisher's, or a node relay's (replaced when the
   * relay is re-established); none for a feed a worker relay brings (its keyframe requests go to the
   * publisher's worker).
   */
  receiver: RTCRtpReceiver | undefined;
  readonly #keyframeRequestSender: (layer: SourceLayer) => Promise<void>;
  readonly #stats: ForwardingStats;
  readonly #logger: Logger;
  readonly #unsubscribers: (() => void)[] = [];
  readonly #readsVp8: boolean;
  readonly #readsH264: boolean;
  readonly #vp8 = emptyVp8Descriptor();
  /** Every sink attached to any layer. */
  readonly #sinks = new Set<RtpSink>();
  #layerCheck: NodeJS.Timeout | undefined;
  #flowing = false;
  #closed = false;
  /** Muted by the room: packets still arrive (and count as flowing) but reach no subscriber. */
  #muted = false;
  /** The negotiated id of the RFC 6464 audio level extension (audio tracks that carry it). */
  readonly #audioLevelId: number | undefined;
  /** The speaker detection's meter of this track, when the publisher sends audio levels. */
  readonly audioLevel: AudioLevelMeter | undefined;
  /** performance.now() at the last packet's arrival; the legs' sender reports pair it with their RTP time. */
  #arrivalMs = 0;
  /** The subscriber legs a packet goes to with one call into the SRTP addon (rtp-egress.ts). */
  readonly #fanout = new FanoutBatch();

  constructor(options: {
    publisherId: string;
    kind: 'audio' | 'video';
    mid: string;
    codec: RTCRtpCodecParameters;
    /** The publisher's receiver: keyframe requests go out as its RTCP PLI. */
    receiver?: RTCRtpReceiver;
    /** Where keyframe requests go without a receiver (a relayed feed: to its origin). */
    sendKeyframeRequest?: (layer: SourceLayer) => Promise<void>;
    /** One per layer: werift's track of each rid, or its single track. */
    tracks: readonly LayerInput[];
    stats: ForwardingStats;
    logger: Logger;
    /** The id the publisher's answer gave `urn:ietf:params:rtp-hdrext:ssrc-audio-level`, if any. */
    audioLevelExtensionId?: number;
  }) {
    super();
    this.publisherId = options.publisherId;
    this.kind = options.kind;
    this.mid = options.mid;
    this.codec = options.codec;
    this.receiver = options.receiver;
    this.#keyframeRequestSender =
      options.sendKeyframeRequest ??
      ((layer) =>
        this.receiver && layer.ssrc !== undefined ? this.receiver.sendRtcpPLI(layer.ssrc) : Promise.resolve());
    this.#stats = options.stats;
    this.#logger = options.logger;
    if (options.kind === 'audio' && options.audioLevelExtensionId !== undefined) {
      this.#audioLevelId = options.audioLevelExtensionId;
      this.audioLevel = new AudioLevelMeter();
    }
    const mimeType = options.codec.mimeType.toLowerCase();
    this.#readsVp8 = options.kind === 'video' && mimeType === 'video/vp8';
    this.#readsH264 = options.kind === 'video' && mimeType === 'video/h264';
    this.layers = options.tracks.map((track, index) => {
      const layer = new SourceLayer(index, track.rid, track.ssrc);
      if (track.onReceiveRtp) {
        this.#unsubscribers.push(track.onReceiveRtp.subscribe((packet) => this.#onRtp(layer, packet)).unSubscribe);
      }
      return layer;
    });
    if (this.layers.length > 1) {
      this.#layerCheck = setInterval(this.#checkLayers, LAYER_CHECK_INTERVAL_MS);
      this.#layerCheck.unref();
    }
  }

  get simulcast(): boolean {
    return this.layers.length > 1;
  }

  get flowing(): boolean {
    return this.#flowing;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** A packet of a source without werift tracks (a relayed feed), handled as werift's would be. */
  receive(layer: SourceLayer, packet: RtpPacket): void {
    this.#onRtp(layer, packet);
  }

  /** The hot path. werift delivers a clone of each received packet and this is its only listener: edit in place. */
  #onRtp(layer: SourceLayer, packet: RtpPacket): void {
    if (this.#closed) return;
    this.#stats.receivedPackets++;
    const header = packet.header;
    if (!this.#flowing) {
      this.#flowing = true;
      this.emit('flowing');
    }
    const meter = this.audioLevel;
    const level = meter ? readAudioLevel(header.extensions, this.#audioLevelId!) : NO_AUDIO_LEVEL;
    header.extensions = NO_EXTENSIONS;
    header.extension = false;
    const now = performance.now();
    this.#arrivalMs = now;
    layer.lastPacketAt = now;
    layer.ssrc = header.ssrc;
    const keyframe = this.#keyframeStart(layer, packet.payload);
    if (!layer.active) {
      layer.active = true;
      this.#notifyLayersChanged();
    }
    // Before the history too: a NACK after unmuting must not retransmit what was said or shown muted.
    if (this.#muted) return;
    layer.bitrate.add(packet.payload.length + PACKET_OVERHEAD_BYTES, now);
    meter?.observe(level);
    layer.history[header.sequenceNumber & (SOURCE_HISTORY_SIZE - 1)] = packet;
    // Padding and CSRCs need werift's path: every sink is called for those.
    const plain = !header.padding && header.csrc.length === 0;
    if (plain) {
      // First: a sink that joins the steady legs while it is called below gets this packet from that call.
      try {
        layer.steadyLegs.send(packet, now);
      } catch (error) {
        this.#logger.debug('forwarding a packet failed', { error: loggableError(error) });
      }
    }
    const sinks = plain ? layer.forwarders : layer.sinks;
    const fanout = this.#fanout;
    for (let index = 0; index < sinks.length; index++) {
      // A sink that throws (a send failing on one subscriber's leg) must not cost the sinks after
      // it their copy of this packet.
      try {
        sinks[index]!.forward(packet, layer, keyframe, fanout);
      } catch (error) {
        this.#logger.debug('forwarding a packet failed', { error: loggableError(error) });
      }
    }
    try {
      fanout.send(packet);
    } catch (error) {
      this.#logger.debug('forwarding a packet failed', { error: loggableError(error) });
    }
  }

  /** True for the first packet of a keyframe; a VP8 keyframe also tells the layer's resolution. */
  #keyframeStart(layer: SourceLayer, payload: Buffer): boolean {
    if (this.#readsVp8) {
      const vp8 = this.#vp8;
      if (!readVp8Descriptor(payload, vp8) || !vp8.keyframe) return false;
      if (vp8.width > 0 && (vp8.width !== layer.width || vp8.height !== layer.height)) {
        layer.width = vp8.width;
        layer.height = vp8.height;
        this.#notifyLayersChanged();
      }
      return true;
    }
    return this.#readsH264 && isH264KeyframeStart(payload);
  }

  readonly #checkLayers = (): void => {
    const idleSince = performance.now() - LAYER_IDLE_MS;
    let changed = false;
    for (const layer of this.layers) {
      if (layer.active && layer.lastPacketAt < idleSince) {
        layer.active = false;
        changed = true;
      }
    }
    if (changed) this.#notifyLayersChanged();
  };

  #notifyLayersChanged(): void {
    for (const sink of this.#sinks) sink.layersChanged();
  }

  /**
   * The layers a viewer with this preference may get, lowest first, up to the one its size asks for:
   * the smallest active layer covering the size, else the largest. Layers are ranked by the resolution
   * their keyframes announce once every active layer has told it, else by the publisher's rid order
   * (lowest first, as browsers send them). No dimension given: up to the largest. Empty while no
   * layer flows.
   */
  ladderFor(preference: LayerPreference): SourceLayer[] {
    const active = this.layers.filter((layer) => layer.active);
    if (active.length === 0) return active;
    const byResolution = active.every((layer) => layer.width > 0);
    active.sort((a, b) => (byResolution ? a.width * a.height - b.width * b.height : a.index - b.index));
    const { maxWidth, maxHeight } = preference;
    if (maxWidth === undefined && maxHeight === undefined) return active;
    if (!byResolution) return active.slice(0, 1);
    const covering = active.findIndex((layer) => layer.width >= (maxWidth ?? 0) && layer.height >= (maxHeight ?? 0));
    return covering < 0 ? active : active.slice(0, covering + 1);
  }

  /** The layer a viewer with this preference gets when its link is not short: the top of its ladder. */
  layerFor(preference: LayerPreference): SourceLayer | undefined {
    return this.ladderFor(preference).at(-1);
  }

  /**
   * The layer's rank for metrics: 0 (low), 1 (mid) or 2 (high); a source of two layers has a low and
   * a high one. By resolution once every layer announced it, else by rid order.
   */
  rankOf(layer: SourceLayer): number {
    const layers = this.layers;
    const byResolution = layers.every((candidate) => candidate.width > 0);
    const area = (candidate: SourceLayer) => candidate.width * candidate.height;
    const below = layers.filter((candidate) =>
      byResolution ? area(candidate) < area(layer) : candidate.index < layer.index,
    ).length;
    return below === layers.length - 1 ? 2 : below;
  }

  /** performance.now() at the last packet's arrival (any layer). */
  get arrivalMs(): number {
    return this.#arrivalMs;
  }

  get muted(): boolean {
    return this.#muted;
  }

  /** Stops or resumes the fan-out; a video track that resumes asks for keyframes, so viewers recover at once. */
  setMuted(muted: boolean): void {
    if (this.#muted === muted) return;
    this.#muted = muted;
    // What was said before the mute must not keep the track among the speakers.
    if (muted) this.audioLevel?.reset();
    if (!muted) for (const layer of this.layers) if (layer.sinks.length > 0) this.requestKeyframe(layer);
  }

  /**
   * The sink hears of layer changes without taking a layer yet: a simulcast viewer whose track exists
   * before any layer is active (a relayed feed's tracks exist before their first packets) picks its
   * layer when they come.
   */
  watch(sink: RtpSink): void {
    if (this.#closed) throw new Error('source track is closed');
    this.#sinks.add(sink);
  }

  attach(sink: RtpSink, layer: SourceLayer): void {
    if (this.#closed) throw new Error('source track is closed');
    this.#sinks.add(sink);
    if (!layer.sinks.includes(sink)) {
      layer.sinks = [...layer.sinks, sink];
      layer.forwarders = [...layer.forwarders, sink];
    }
  }

  detach(sink: RtpSink, layer: SourceLayer): void {
    layer.sinks = layer.sinks.filter((attached) => attached !== sink);
    layer.forwarders = layer.forwarders.filter((attached) => attached !== sink);
  }

  /**
   * Whether `sink`, attached to `layer`, is called for each of its packets; false while its leg is
   * among the layer's {@link SourceLayer.steadyLegs} (the sink joins them itself).
   */
  forwardEachPacket(sink: RtpSink, layer: SourceLayer, each: boolean): void {
    const listed = layer.forwarders.includes(sink);
    if (each && !listed && layer.sinks.includes(sink)) layer.forwarders = [...layer.forwarders, sink];
    else if (!each && listed) layer.forwarders = layer.forwarders.filter((attached) => attached !== sink);
  }

  /** The sink leaves every layer and hears of no more layer changes. */
  release(sink: RtpSink): void {
    this.#sinks.delete(sink);
    for (const layer of this.layers) this.detach(sink, layer);
  }

  /**
   * Asks the publisher for a keyframe on `layer` (RTCP PLI to its SSRC). Within a second of the
   * last request, one request is deferred to the end of that second rather than dropped: a
   * subscriber that joins right after another one's request would otherwise wait for the
   * publisher's next periodic keyframe.
   */
  requestKeyframe(layer: SourceLayer = this.layers[0]!): void {
    if (this.kind !== 'video' || this.#closed) return;
    const wait = layer.lastKeyframeRequestAt + KEYFRAME_REQUEST_INTERVAL_MS - performance.now();
    if (wait <= 0) {
      this.#sendKeyframeRequest(layer);
      return;
    }
    layer.deferredKeyframeRequest ??= setTimeout(() => {
      layer.deferredKeyframeRequest = undefined;
      this.#sendKeyframeRequest(layer);
    }, wait);
  }

  #sendKeyframeRequest(layer: SourceLayer): void {
    if (this.#closed || layer.ssrc === undefined) return;
    layer.lastKeyframeRequestAt = performance.now();
    this.#stats.keyframeRequests++;
    this.#keyframeRequestSender(layer).catch((error: unknown) => {
      this.#logger.debug('keyframe request failed', { error: loggableError(error) });
    });
  }

  /** Ends the track: every forwarded copy of it closes too. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const unsubscribe of this.#unsubscribers) unsubscribe();
    clearInterval(this.#layerCheck);
    const sinks = [...this.#sinks];
    this.#sinks.clear();
    for (const layer of this.layers) {
      clearTimeout(layer.deferredKeyframeRequest);
      layer.sinks = [];
      layer.forwarders = [];
      layer.history.length = 0;
    }
    for (const sink of sinks) sink.close('source track ended');
    this.emit('closed');
  }
}
