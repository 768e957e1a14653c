import { EventEmitter } from 'node:events';
import {
  type MediaStream,
  MediaStreamTrack,
  type RTCPeerConnection,
  type RTCRtpSender,
  type RTCRtpTransceiver,
  type RtcpPacket,
  RtcpPayloadSpecificFeedback,
  type RtpPacket,
} from 'werift';
import type { Logger } from '../../../shared/src/log.ts';
import { loggableError } from '../errors.ts';
import type { ForwardingStats } from './forwarding-stats.ts';
import { EgressLeg } from './rtp-egress.ts';
import type { SenderReportClock } from './sender-reports.ts';
import type { RtpSink, SourceTrack } from './source-track.ts';

/** RTCP payload-specific feedback format 4 (RFC 5104), which werift does not export by name. */
const FULL_INTRA_REQUEST_FMT = 4;

interface ForwardedTrackEvents {
  closed: [reason: string];
}

/**
 * One source track forwarded to one subscriber (mediasoup's Consumer): a sendonly m-line on the
 * subscriber's connection. Once the connection is up, packets go out through the fast path
 * ({@link EgressLeg}: the leg's SSRC, sequence number, timestamp and payload type written into a
 * fresh header, SRTP, one datagram), NACKs are answered from the source's shared history and
 * sender reports come from the worker's {@link SenderReportClock}. werift's own sender path remains
 * for what the fast path does not cover (packets with CSRCs or padding, TURN or TCP candidates).
 * The subscriber's PLI/FIR become a (throttled) keyframe request to the publisher.
 */
export class ForwardedTrack extends EventEmitter<ForwardedTrackEvents> implements RtpSink {
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
  #negotiated = false;
  #closed = false;

  constructor(options: {
    source: SourceTrack;
    peerConnection: RTCPeerConnection;
    /** The msid stream: its id is the publisher's participant id, so clients can group tracks by feed. */
    stream: MediaStream;
    stats: ForwardingStats;
    senderReports: SenderReportClock;
    logger: Logger;
  }) {
    super();
    this.source = options.source;
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
    this.source.attach(this);
  }

  get closed(): boolean {
    return this.#closed;
  }

  forward(packet: RtpPacket): void {
    const sender = this.#sender;
    // The sender drops packets itself until DTLS is up and the codec is negotiated; checking here
    // keeps the forwarded-packets counter honest.
    if (sender.stopped || sender.codec === undefined || sender.dtlsTransport?.state !== 'connected') return;
    this.#stats.forwardedPackets++;
    const leg = this.#leg ?? this.#openLeg();
    const header = packet.header;
    if (leg && !header.padding && header.csrc.length === 0) {
      // Throws synchronously when the socket closes under the leg: the source's loop catches it.
      leg.forward(packet, this.source.arrivalNtp);
    } else {
      sender.sendRtp(packet).catch(this.#onSendError);
    }
  }

  #openLeg(): EgressLeg | undefined {
    if (this.#legUnavailable) return undefined;
    this.#leg = EgressLeg.open(this.#sender);
    if (this.#leg) this.#senderReports.add(this.#sender);
    else this.#legUnavailable = true;
    return this.#leg;
  }

  /** werift answers NACKs from its own history, which the fast path leaves empty: answered here. */
  readonly #onNack = (feedback: { lost: number[] }): void => {
    const leg = this.#leg;
    if (!leg) return;
    try {
      for (const sequenceNumber of feedback.lost) leg.retransmit(sequenceNumber, this.source.packetBySequenceNumber);
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
    this.source.requestKeyframe();
  };

  /** werift parses FIR but only reports PLI: a FIR is treated as a keyframe request too. */
  readonly #onRtcp = (packet: RtcpPacket): void => {
    if (packet instanceof RtcpPayloadSpecificFeedback && packet.feedback.count === FULL_INTRA_REQUEST_FMT) {
      this.source.requestKeyframe();
    }
  };

  readonly #onSendError = (error: unknown): void => {
    this.#logger.debug('forwarding a packet failed', { error: loggableError(error) });
  };

  /** Stops forwarding and stops the m-line; the subscriber renegotiates to remove it. */
  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.source.detach(this);
    this.#senderReports.delete(this.#sender);
    for (const unsubscribe of this.#unsubscribers) unsubscribe();
    try {
      this.transceiver.stop();
    } catch (error) {
      this.#logger.debug('stopping a transceiver failed', { error: loggableError(error) });
    }
    this.emit('closed', reason);
  }
}
