import { EventEmitter } from 'node:events';
import {
  type MediaStream,
  MediaStreamTrack,
  type RTCPeerConnection,
  type RTCRtpSender,
  type RTCRtpTransceiver,
  type RtcpPacket,
  RtcpPayloadSpecificFeedback,
  RtcpRrPacket,
  RtcpSrPacket,
  type RtpPacket,
} from 'werift';
import type { Logger } from '../../../shared/src/log.ts';
import { loggableError } from '../errors.ts';
import { PACKET_OVERHEAD_BYTES } from './bitrate.ts';
import type { BudgetTaker, BudgetUse, DownlinkFeedback } from './downlink-estimator.ts';
import type { ForwardingStats } from './forwarding-stats.ts';
import { EgressLeg, type FanoutBatch, type SenderBookkeeping } from './rtp-egress.ts';
import type { SenderReportClock } from './sender-reports.ts';
import type { LayerPreference, RtpSink, SourceLayer, SourceTrack } from './source-track.ts';
import { Vp8PictureIdRewriter } from './video-frames.ts';

/**
 * A viewer waiting for its target layer's keyframe asks again after this long: the first request
 * can go unanswered (Chromium ignores a request within 300 ms of the layer's last keyframe, which
 * may have gone by just before this viewer started waiting), or the keyframe's first packet be lost.
 */
export const KEYFRAME_RETRY_MS = 1_000;

/** RTCP payload-specific feedback format 4 (RFC 5104), which werift does not export by name. */
const FULL_INTRA_REQUEST_FMT = 4;

/**
 * Within a bandwidth budget, the layer a viewer already gets (or waits for) stays while it costs up to
 * this much more than the budget: layer bitrates breathe (keyframes, the encoder's own adaptation),
 * and a layer is only taken up when it fits outright. Hysteresis against flapping between two layers.
 */
export const KEEP_LAYER_TOLERANCE = 1.2;

interface ForwardedTrackEvents {
  /** A simulcast source's viewer now gets this layer (from its keyframe), or none (paused, no layer flows). */
  layer: [SourceLayer | undefined];
  /** A receiver-report block of the viewer about this track. */
  feedback: [DownlinkFeedback];
  closed: [reason: string];
}

/** Bytes sent to one viewer, counted by every track forwarded to it (payload + per-packet overhead). */
export interface SentBytes {
  bytes: number;
}

/** What one viewer asks of one track: a size to cover, or nothing at all (paused). */
export interface ViewerPreference extends LayerPreference {
  paused?: boolean;
}

/**
 * One source track forwarded to one subscriber (mediasoup's Consumer): a sendonly m-line on the
 * subscriber's connection. Once the connection is up, packets go out through the fast path
 * ({@link EgressLeg}: the leg's SSRC, sequence number, timestamp and payload type written into a
 * fresh header, SRTP, one datagram), NACKs are answered from the source's shared history and
 * sender reports come from the worker's {@link SenderReportClock}. werift's own sender path remains
 * for what the fast path does not cover (packets with CSRCs or padding, TURN or TCP candidates).
 * The subscriber's PLI/FIR become a (throttled) keyframe request to the publisher.
 *
 * The viewer gets one layer of the source (simulcast): the one its preference asks for. A switch
 * (or a resume after a pause) asks the target layer for a keyframe and keeps forwarding the current
 * layer until that keyframe arrives; from there the sequence numbers, timestamps and, for VP8, the
 * picture ID and TL0PICIDX continue from what the viewer last saw, so it sees one stream.
 */
export class ForwardedTrack extends EventEmitter<ForwardedTrackEvents> implements RtpSink, BudgetTaker {
  readonly source: SourceTrack;
  readonly transceiver: RTCRtpTransceiver;
  readonly #sender: RTCRtpSender;
  readonly #stats: ForwardingStats;
  readonly #logger: Logger;
  readonly #unsubscribers: (() => void)[];
  readonly #senderReports: SenderReportClock;
  #leg: EgressLeg | undefined;
  /** The connection is up and the fast path cannot serve it: werift's path only. */
  #legUnavailable = false;
  /** The leg's DTLS transport is connected (from its state-change events, once the leg is open). */
  #legTransportConnected = false;
  #negotiated = false;
  #closed = false;
  /** The layer being forwarded; undefined before the first keyframe, or while paused. */
  #current: SourceLayer | undefined;
  /** The layer switched to at its next keyframe. */
  #target: SourceLayer | undefined;
  #preference: ViewerPreference = {};
  /** What this track may cost the viewer's link (bits per second), from its downlink estimate. */
  #budgetBps = Number.POSITIVE_INFINITY;
  readonly #sent: SentBytes;
  /** Only for a VP8 source that can switch layers or pause: created on the first switch. */
  #pictureIds: Vp8PictureIdRewriter | undefined;
  /**
   * The leg's sequence number of the current layer's first packet, from the first switch on: older
   * ones are not retransmitted from this layer's history.
   */
  #layerStartSequenceNumber: number | undefined;
  /** The current layer's rank in a simulcast source (metrics), -1 for a single-layer source. */
  #rank = -1;
  /** When the target layer was last asked for a keyframe (source arrival clock). */
  #targetRequestedAt = 0;
  /** When the last forwarded packet arrived: a switch advances the timestamps by the time since. */
  #lastForwardedAt = 0;
  /** A relay's m-line: one layer for good, counted as relayed rather than forwarded to a viewer. */
  readonly #relayed: boolean;
  /** The layer whose steady legs the leg is among ({@link #updateSteady}); undefined: forwarded packet by packet. */
  #steadyLayer: SourceLayer | undefined;

  constructor(options: {
    source: SourceTrack;
    peerConnection: RTCPeerConnection;
    /** The msid stream: its id is the publisher's participant id, so clients can group tracks by feed. */
    stream: MediaStream;
    stats: ForwardingStats;
    senderReports: SenderReportClock;
    logger: Logger;
    /** The viewer's wish for this feed, from `update_subscription`. */
    preference?: ViewerPreference;
    /** The viewer's count of bytes sent, shared by its tracks. */
    sent: SentBytes;
    /**
     * For a relay (relay-sender.ts): this one layer of the source on this m-line, never another (the
     * relay carries every layer on an m-line of its own; the pulling node's viewers switch there).
     */
    relayLayer?: SourceLayer;
  }) {
    super();
    this.source = options.source;
    this.#sent = options.sent;
    this.#stats = options.stats;
    this.#senderReports = options.senderReports;
    this.#logger = options.logger;
    // A local track that only describes the source's codec: werift offers exactly the configured
    // codec compatible with it (plus its RTX), so the payload type we stamp is the one the
    // subscriber decodes with. Packets go to the sender directly, not through this track.
    const codecDescription = new MediaStreamTrack({ kind: this.source.kind, codec: this.source.codec });
    this.transceiver = options.peerConnection.addTransceiver(codecDescription, {
      direction: 'sendonly',
      streams: [options.stream],
    });
    this.#sender = this.transceiver.sender;
    this.#unsubscribers = [
      this.#sender.onPictureLossIndication.subscribe(this.#onKeyframeRequest).unSubscribe,
      this.#sender.onRtcp.subscribe(this.#onRtcp).unSubscribe,
      this.#sender.onGenericNack.subscribe(this.#onNack).unSubscribe,
    ];
    this.#preference = options.preference ?? {};
    this.#relayed = options.relayLayer !== undefined;
    if (options.relayLayer) {
      this.#current = options.relayLayer;
      this.source.attach(this, this.#current);
    } else if (this.source.simulcast || this.#preference.paused) {
      this.source.watch(this);
      this.#selectLayer();
    } else {
      // One layer: forwarded from the first packet, as before simulcast (the viewer's decoder waits
      // for the keyframe its subscription asks for).
      this.#current = this.source.layers[0]!;
      this.source.attach(this, this.#current);
    }
  }

  /** Applies a viewer's `update_subscription` (video tracks only; audio ignores it). */
  setPreference(preference: ViewerPreference): void {
    if (this.#closed || this.#relayed || this.source.kind !== 'video') return;
    this.#preference = preference;
    this.#selectLayer();
  }

  layersChanged(): void {
    if (!this.#closed && !this.#relayed) this.#selectLayer();
  }

  /** Asks the publisher for a keyframe on the layer this viewer waits for, else the one it gets. */
  requestKeyframe(): void {
    const layer = this.#target ?? this.#current;
    if (layer) this.source.requestKeyframe(layer);
  }

  /**
   * Sets what this track may cost its viewer's link and picks the layer that fits: the highest of the
   * viewer's ladder ({@link SourceTrack.ladderFor}) whose measured bitrate is within the budget (the
   * current layer within {@link KEEP_LAYER_TOLERANCE} of it; a layer not yet measured never fits),
   * else the lowest. A track that cannot
   * step down (audio, one layer) just reports its cost; a paused one costs nothing.
   */
  applyBudget(budgetBps: number, now: number): BudgetUse {
    const unlimited: BudgetUse = { usedBps: 0, limited: false, upgradeBps: Number.POSITIVE_INFINITY };
    if (this.#closed) return unlimited;
    if (!this.source.simulcast || this.#relayed) {
      const paused = this.source.kind === 'video' && this.#preference.paused === true;
      return paused ? unlimited : { ...unlimited, usedBps: this.source.layers[0]!.bitrate.bps(now) };
    }
    this.#budgetBps = budgetBps;
    this.#selectLayer();
    const chosen = this.#target ?? this.#current;
    if (!chosen) return unlimited;
    const ladder = this.source.ladderFor(this.#preference);
    const usedBps = chosen.bitrate.bps(now);
    const next = ladder[ladder.indexOf(chosen) + 1];
    if (!next || ladder.indexOf(chosen) < 0) return { ...unlimited, usedBps };
    // A next layer not measured yet has no known cost: limited, and no rise is priced on it.
    const upgradeBps = next.bitrate.measured(now)
      ? Math.max(0, next.bitrate.bps(now) - usedBps)
      : Number.POSITIVE_INFINITY;
    return { usedBps, limited: true, upgradeBps };
  }

  #selectLayer(): void {
    this.#chooseLayer();
    this.#updateSteady();
  }

  #chooseLayer(): void {
    const paused = this.source.kind === 'video' && this.#preference.paused === true;
    let wanted: SourceLayer | undefined;
    if (!paused) wanted = this.source.simulcast ? this.#layerWithinBudget() : this.source.layers[0];
    if (paused || (wanted === undefined && this.#current && !this.#current.active)) {
      this.#setTarget(undefined);
      if (this.#current) {
        this.source.detach(this, this.#current);
        this.#current = undefined;
        if (this.source.simulcast) this.emit('layer', undefined);
      }
      return;
    }
    if (wanted === undefined || wanted === this.#current) {
      this.#setTarget(undefined);
      return;
    }
    this.#setTarget(wanted);
  }

  /** The top of the viewer's ladder that fits the budget (see {@link applyBudget}). */
  #layerWithinBudget(): SourceLayer | undefined {
    const ladder = this.source.ladderFor(this.#preference);
    const budget = this.#budgetBps;
    if (!Number.isFinite(budget) || ladder.length <= 1) return ladder.at(-1);
    const now = performance.now();
    const held = this.#target ?? this.#current;
    for (let index = ladder.length - 1; index > 0; index--) {
      const layer = ladder[index]!;
      // An unmeasured layer (new, or back after dynacast turned it off) reads cheap but is not.
      if (!layer.bitrate.measured(now)) continue;
      if (layer.bitrate.bps(now) <= (layer === held ? budget * KEEP_LAYER_TOLERANCE : budget)) return layer;
    }
    return ladder[0];
  }

  #setTarget(layer: SourceLayer | undefined): void {
    if (layer === this.#target) return;
    if (this.#target && this.#target !== this.#current) this.source.detach(this, this.#target);
    this.#target = layer;
    if (!layer) return;
    this.source.attach(this, layer);
    this.#targetRequestedAt = performance.now();
    this.source.requestKeyframe(layer);
  }

  /** The target's keyframe arrived: from this packet on, the viewer gets the target layer. */
  #switchTo(layer: SourceLayer, packet: RtpPacket): void {
    if (this.#current) {
      this.source.detach(this, this.#current);
      this.#stats.layerSwitches++;
    }
    if (this.source.simulcast) this.#rank = this.source.rankOf(layer);
    this.#current = layer;
    this.#target = undefined;
    const sender = (this.#leg?.syncSender() ?? this.#sender) as unknown as SenderBookkeeping;
    const header = packet.header;
    // werift's own send path reads the same offsets, so both paths continue the viewer's stream.
    if (sender.sequenceNumber !== undefined) {
      sender.seqOffset = (sender.sequenceNumber + 1 - header.sequenceNumber) & 0xffff;
    }
    if (sender.timestamp !== undefined) {
      const elapsedTicks = Math.max(
        1,
        Math.round(((this.source.arrivalMs - this.#lastForwardedAt) * this.source.codec.clockRate) / 1000),
      );
      sender.timestampOffset = (sender.timestamp + elapsedTicks - header.timestamp) >>> 0;
    }
    this.#layerStartSequenceNumber = (header.sequenceNumber + sender.seqOffset) & 0xffff;
    if (this.source.codec.mimeType.toLowerCase() === 'video/vp8') {
      this.#pictureIds ??= new Vp8PictureIdRewriter();
      this.#pictureIds.rebase(packet.payload);
      if (this.#leg) this.#leg.payloadRewriter = this.#pictureIds;
    }
    if (this.source.simulcast) this.emit('layer', layer);
    this.#updateSteady();
  }

  /**
   * Makes the leg steady, or per packet again. A steady leg gets the layer's packets from the source
   * through the addon alone (rtp-egress.ts' SteadyLegs), with no call into this track: while its
   * viewer's stream needs no decision per packet. That is a single-layer source's viewer (no switch
   * to wait for, no VP8 picture IDs to rewrite: those only follow a switch or a resume), whose leg the
   * addon sends on and whose transport is connected; not a relay's m-line (counted apart). Called
   * wherever one of these changes; werift's own changes come by event (the transport's state, the
   * route's sendability, the sender's stop).
   */
  #updateSteady(): void {
    const leg = this.#leg;
    const wanted =
      leg?.canBeSteady &&
      this.#legTransportConnected &&
      !this.#closed &&
      !this.#relayed &&
      !this.source.simulcast &&
      this.#target === undefined &&
      this.#pictureIds === undefined &&
      !this.#sender.stopped
        ? this.#current
        : undefined;
    const steadyLayer = this.#steadyLayer;
    if (wanted === steadyLayer) return;
    if (steadyLayer) {
      leg!.leaveSteady();
      // A switch after this continues the timestamps from the last packet the viewer got.
      this.#lastForwardedAt = Math.max(this.#lastForwardedAt, leg!.lastArrivalMs);
      this.source.forwardEachPacket(this, steadyLayer, true);
    }
    this.#steadyLayer = wanted;
    if (wanted) {
      this.source.forwardEachPacket(this, wanted, false);
      leg!.joinSteady(wanted.steadyLegs, this.#stats, this.#sent);
    }
  }

  /** Brings the viewer's sent bytes (and the forwarded-packet count) up to date with what its steady leg sent. */
  collectSent(): void {
    this.#leg?.collectSteadyCounts();
  }

  get closed(): boolean {
    return this.#closed;
  }

  forward(packet: RtpPacket, layer: SourceLayer, keyframe: boolean, fanout?: FanoutBatch): void {
    const sender = this.#sender;
    // The sender drops packets itself until DTLS is up and the codec is negotiated; checking here
    // keeps the forwarded-packets counter honest (and a switch waits for a keyframe the viewer gets).
    // Once the leg is open, the transport's state comes from its events, not from werift's object
    // per packet and viewer.
    if (
      sender.stopped ||
      (this.#leg
        ? !this.#legTransportConnected
        : sender.codec === undefined || sender.dtlsTransport?.state !== 'connected')
    ) {
      return;
    }
    if (layer !== this.#current) {
      if (layer !== this.#target) return;
      if (!keyframe) {
        if (this.source.arrivalMs - this.#targetRequestedAt >= KEYFRAME_RETRY_MS) {
          this.#targetRequestedAt = this.source.arrivalMs;
          this.source.requestKeyframe(layer);
        }
        return;
      }
      this.#switchTo(layer, packet);
    }
    if (this.#relayed) {
      this.#stats.relaySentPackets++;
      this.#stats.relaySentBytes += packet.payload.length;
    } else this.#stats.forwardedPackets++;
    this.#sent.bytes += packet.payload.length + PACKET_OVERHEAD_BYTES;
    if (this.#rank >= 0) this.#stats.simulcastForwardedBytes[this.#rank]! += packet.payload.length;
    this.#lastForwardedAt = this.source.arrivalMs;
    const leg = this.#leg ?? this.#openLeg();
    const header = packet.header;
    if (leg && !header.padding && header.csrc.length === 0) {
      leg.forward(packet, this.source.arrivalMs, fanout);
    } else {
      // werift's path continues from the sender's fields: the leg's last packet first.
      leg?.syncSender();
      sender.sendRtp(this.#withRewrittenPayload(packet)).catch(this.#onSendError);
    }
  }

  /** werift's path (TURN, TCP, padding, CSRCs) gets a copy with the viewer's VP8 picture IDs. */
  #withRewrittenPayload(packet: RtpPacket): RtpPacket {
    const prefix = this.#pictureIds?.prefixFor(packet.payload, false);
    if (!prefix) return packet;
    const copy = packet.clone();
    copy.payload = Buffer.concat([prefix, packet.payload.subarray(prefix.length)]);
    return copy;
  }

  #openLeg(): EgressLeg | undefined {
    if (this.#legUnavailable) return undefined;
    this.#leg = EgressLeg.open(this.#sender);
    if (this.#leg) {
      this.#leg.payloadRewriter = this.#pictureIds;
      this.#senderReports.add(this.#leg);
      // Opened on a connected transport (EgressLeg.open checks it).
      const transport = this.#sender.dtlsTransport;
      this.#legTransportConnected = true;
      this.#unsubscribers.push(
        transport.onStateChange.subscribe((state) => {
          this.#legTransportConnected = state === 'connected';
          this.#updateSteady();
        }).unSubscribe,
      );
      // werift stops the sender (a renegotiation that drops the m-line) by aborting its RTCP signal.
      const stopped = (this.#sender as unknown as { rtcpCancel: AbortController }).rtcpCancel.signal;
      const onStopped = () => this.#updateSteady();
      stopped.addEventListener('abort', onStopped);
      this.#unsubscribers.push(() => stopped.removeEventListener('abort', onStopped));
      this.#updateSteady();
    } else this.#legUnavailable = true;
    return this.#leg;
  }

  /** werift answers NACKs from its own history, which the fast path leaves empty: answered here. */
  readonly #onNack = (feedback: { lost: number[] }): void => {
    const leg = this.#leg;
    const layer = this.#current;
    if (!leg || !layer) return;
    try {
      for (const sequenceNumber of feedback.lost) {
        // Packets sent before the last switch came from another layer: its history cannot answer.
        const start = this.#layerStartSequenceNumber;
        if (start !== undefined && ((sequenceNumber - start) & 0xffff) >= 0x8000) continue;
        leg.retransmit(sequenceNumber, layer.packetBySequenceNumber);
      }
    } catch (error) {
      this.#onSendError(error);
    }
  };

  /** Called when a subscriber's answer covers this track; true the first time. */
  markNegotiated(): boolean {
    if (this.#negotiated || this.#closed) return false;
    this.#negotiated = true;
    return true;
  }

  readonly #onKeyframeRequest = (): void => {
    this.requestKeyframe();
  };

  /**
   * werift parses FIR but only reports PLI: a FIR is treated as a keyframe request too. Receiver
   * reports about this track feed the viewer's downlink estimate (werift hands every sender named in a
   * compound report the whole report: only this sender's block counts).
   */
  readonly #onRtcp = (packet: RtcpPacket): void => {
    if (packet instanceof RtcpPayloadSpecificFeedback && packet.feedback.count === FULL_INTRA_REQUEST_FMT) {
      this.requestKeyframe();
      return;
    }
    if (!(packet instanceof RtcpRrPacket || packet instanceof RtcpSrPacket)) return;
    const ssrc = this.#sender.ssrc;
    for (const block of packet.reports) {
      if (block.ssrc !== ssrc) continue;
      this.emit('feedback', { fractionLost: block.fractionLost / 256 });
    }
  };

  readonly #onSendError = (error: unknown): void => {
    this.#logger.debug('forwarding a packet failed', { error: loggableError(error) });
  };

  /** Stops forwarding and stops the m-line; the subscriber renegotiates to remove it. */
  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#updateSteady();
    this.source.release(this);
    if (this.#leg) {
      this.#senderReports.delete(this.#leg);
      this.#leg.close();
    }
    for (const unsubscribe of this.#unsubscribers) unsubscribe();
    try {
      this.transceiver.stop();
    } catch (error) {
      this.#logger.debug('stopping a transceiver failed', { error: loggableError(error) });
    }
    this.emit('closed', reason);
  }
}
