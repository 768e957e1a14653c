import { EventEmitter } from 'node:events';
import {
  type MediaStreamTrack,
  ntpTime,
  type RTCRtpCodecParameters,
  type RTCRtpReceiver,
  type RtpPacket,
} from 'werift';
import type { Logger } from '../../../shared/src/log.ts';
import { loggableError } from '../errors.ts';
import { AudioLevelMeter, NO_AUDIO_LEVEL, readAudioLevel } from './audio-level.ts';
import type { ForwardingStats } from './forwarding-stats.ts';

/** At most one keyframe request per second reaches a publisher's track, as mediasoup does. */
export const KEYFRAME_REQUEST_INTERVAL_MS = 1_000;

/**
 * Incoming header extensions are dropped: their ids follow the publisher's negotiation, and the
 * egress sender copies unknown ids back into the packet, where a subscriber reads them with its own
 * id map (werift then delivered nothing). The publisher's audio level in particular is read here and
 * never forwarded: subscribers do not negotiate it. Frozen, so that no code path can fill the shared array.
 */
const NO_EXTENSIONS: RtpPacket['header']['extensions'] = Object.freeze([]) as never;

/**
 * Packets kept per source for retransmissions (NACK), shared by every subscriber of the source:
 * werift keeps 128 copies per subscriber leg instead. A power of two (indexed by sequence number).
 */
export const SOURCE_HISTORY_SIZE = 512;

/** Something that forwards a source's packets to one subscriber (a {@link ForwardedTrack}). */
export interface RtpSink {
  forward(packet: RtpPacket): void;
  close(reason: string): void;
}

interface SourceTrackEvents {
  /** The first RTP packet arrived. */
  flowing: [];
  closed: [];
}

/**
 * One track a publisher sends (mediasoup's Producer): its negotiated codec, and the fan-out of its
 * RTP to every {@link RtpSink} attached to it. Keyframe requests from any subscriber go through
 * {@link requestKeyframe}, which throttles them.
 */
export class SourceTrack extends EventEmitter<SourceTrackEvents> {
  readonly publisherId: string;
  readonly kind: 'audio' | 'video';
  readonly mid: string;
  readonly codec: RTCRtpCodecParameters;
  readonly #receiver: RTCRtpReceiver;
  readonly #stats: ForwardingStats;
  readonly #logger: Logger;
  readonly #unsubscribe: () => void;
  /** Replaced, never mutated, so the packet loop iterates a stable array. */
  #sinks: readonly RtpSink[] = [];
  #mediaSsrc: number | undefined;
  #lastKeyframeRequestAt = Number.NEGATIVE_INFINITY;
  #deferredKeyframeRequest: NodeJS.Timeout | undefined;
  #flowing = false;
  #closed = false;
  /** Muted by the room: packets still arrive (and count as flowing) but reach no subscriber. */
  #muted = false;
  readonly #history: (RtpPacket | undefined)[] = [];
  /** The NTP time of the last packet's arrival (werift's format): every leg's SR counters use it. */
  #arrivalNtp = 0n;
  /** The negotiated id of the RFC 6464 audio level extension (audio tracks that carry it). */
  readonly #audioLevelId: number | undefined;
  /** The speaker detection's meter of this track, when the publisher sends audio levels. */
  readonly audioLevel: AudioLevelMeter | undefined;

  constructor(options: {
    publisherId: string;
    kind: 'audio' | 'video';
    mid: string;
    codec: RTCRtpCodecParameters;
    receiver: RTCRtpReceiver;
    track: MediaStreamTrack;
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
    this.#receiver = options.receiver;
    this.#stats = options.stats;
    this.#logger = options.logger;
    this.#mediaSsrc = options.track.ssrc;
    if (options.kind === 'audio' && options.audioLevelExtensionId !== undefined) {
      this.#audioLevelId = options.audioLevelExtensionId;
      this.audioLevel = new AudioLevelMeter();
    }
    const { unSubscribe } = options.track.onReceiveRtp.subscribe(this.#onRtp);
    this.#unsubscribe = unSubscribe;
  }

  get flowing(): boolean {
    return this.#flowing;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The hot path. werift delivers a clone of each received packet and this is its only listener: edit in place. */
  readonly #onRtp = (packet: RtpPacket): void => {
    if (this.#closed) return;
    this.#stats.receivedPackets++;
    if (!this.#flowing) {
      this.#flowing = true;
      this.#mediaSsrc = packet.header.ssrc;
      this.emit('flowing');
    }
    const meter = this.audioLevel;
    const level = meter ? readAudioLevel(packet.header.extensions, this.#audioLevelId!) : NO_AUDIO_LEVEL;
    packet.header.extensions = NO_EXTENSIONS;
    packet.header.extension = false;
    this.#arrivalNtp = ntpTime();
    // Before the history too: a NACK after unmuting must not retransmit what was said or shown muted.
    if (this.#muted) return;
    meter?.observe(level);
    this.#history[packet.header.sequenceNumber & (SOURCE_HISTORY_SIZE - 1)] = packet;
    const sinks = this.#sinks;
    for (let index = 0; index < sinks.length; index++) {
      // A sink that throws (a socket closing under a subscriber's leg) must not cost the sinks after
      // it their copy of this packet.
      try {
        sinks[index]!.forward(packet);
      } catch (error) {
        this.#logger.debug('forwarding a packet failed', { error: loggableError(error) });
      }
    }
  };

  get arrivalNtp(): bigint {
    return this.#arrivalNtp;
  }

  /** The packet with this (source) sequence number, while it is among the last {@link SOURCE_HISTORY_SIZE}. */
  readonly packetBySequenceNumber = (sequenceNumber: number): RtpPacket | undefined => {
    const packet = this.#history[sequenceNumber & (SOURCE_HISTORY_SIZE - 1)];
    return packet?.header.sequenceNumber === sequenceNumber ? packet : undefined;
  };

  get muted(): boolean {
    return this.#muted;
  }

  /** Stops or resumes the fan-out; a video track that resumes asks for a keyframe, so viewers recover at once. */
  setMuted(muted: boolean): void {
    if (this.#muted === muted) return;
    this.#muted = muted;
    // What was said before the mute must not keep the track among the speakers.
    if (muted) this.audioLevel?.reset();
    if (!muted) this.requestKeyframe();
  }

  attach(sink: RtpSink): void {
    if (this.#closed) throw new Error('source track is closed');
    this.#sinks = [...this.#sinks, sink];
  }

  detach(sink: RtpSink): void {
    this.#sinks = this.#sinks.filter((attached) => attached !== sink);
  }

  /**
   * Asks the publisher for a keyframe (RTCP PLI). Within a second of the last request, one request
   * is deferred to the end of that second rather than dropped: a subscriber that joins right after
   * another one's request would otherwise wait for the publisher's next periodic keyframe.
   */
  requestKeyframe(): void {
    if (this.kind !== 'video' || this.#closed) return;
    const wait = this.#lastKeyframeRequestAt + KEYFRAME_REQUEST_INTERVAL_MS - performance.now();
    if (wait <= 0) {
      this.#sendKeyframeRequest();
      return;
    }
    this.#deferredKeyframeRequest ??= setTimeout(() => {
      this.#deferredKeyframeRequest = undefined;
      this.#sendKeyframeRequest();
    }, wait);
  }

  #sendKeyframeRequest(): void {
    if (this.#closed || this.#mediaSsrc === undefined) return;
    this.#lastKeyframeRequestAt = performance.now();
    this.#stats.keyframeRequests++;
    this.#receiver.sendRtcpPLI(this.#mediaSsrc).catch((error: unknown) => {
      this.#logger.debug('keyframe request failed', { error: loggableError(error) });
    });
  }

  /** Ends the track: every forwarded copy of it closes too. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe();
    clearTimeout(this.#deferredKeyframeRequest);
    const sinks = this.#sinks;
    this.#sinks = [];
    this.#history.length = 0;
    for (const sink of sinks) sink.close('source track ended');
    this.emit('closed');
  }
}
