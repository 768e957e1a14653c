import {
  MediaStreamTrack,
  RTCPeerConnection,
  type RTCPeerConnectionConfig,
  RTCRtpCodecParameters,
  type RTCRtpTransceiver,
  RTP_EXTENSION_URI,
  type RtpPacket,
  serializeAudioLevelIndication,
  useAudioLevelIndication,
  useNACK,
  usePLI,
  useSdesMid,
  VP8_PAYLOAD_DESCRIPTOR_LENGTH,
  Vp8RtpPayload,
} from 'werift';
import { Navigator } from 'werift/nonstandard';
import { emptyVp8Descriptor, readVp8Descriptor } from '../../media-node/src/sfu/video-frames.ts';

/**
 * werift peers that stand in for browsers in Node tests: a publisher that sends real RTP (werift's
 * dummy VP8 + Opus source) and a subscriber that counts what it receives. Both speak plain SDP
 * offers/answers, so they work against the media node's control API or through the edge.
 */

export type MediaKind = 'audio' | 'video';

/** Loopback only, no STUN (werift's default is a public server), one socket per connection. */
export const LOOPBACK_PEER_CONFIG = {
  iceServers: [],
  iceUseIpv4: false,
  iceUseIpv6: false,
  iceAdditionalHostAddresses: ['127.0.0.1'],
  iceInterfaceAddresses: { udp4: '127.0.0.1' },
  bundlePolicy: 'max-bundle',
} satisfies RTCPeerConnectionConfig;

export interface TestPublisherOptions {
  audio?: boolean;
  video?: boolean;
  /** Frames between periodic keyframes; keyframes are also sent on PLI, like a browser. Default 30 (1 s). */
  keyframeIntervalFrames?: number;
  /** Offer H.264 (constrained baseline) instead of VP8, as Safari may. The payload stays the dummy VP8. */
  videoCodec?: 'vp8' | 'h264';
  /** Drop this share of outgoing packets (RTP and RTCP), to exercise NACK/retransmission. */
  lossPercent?: number;
  /**
   * Offer the RFC 6464 audio level extension and put this level (−dBov: 0 loudest, 127 silence) on
   * every audio packet, as browsers do; {@link TestPublisher.audioLevel} changes it. Without it, no
   * level is offered or sent.
   */
  audioLevel?: number;
  ice?: PeerIceOptions;
}

export interface TestSubscriberOptions {
  /** Drop this share of incoming packets (RTP and RTCP), to exercise NACK/retransmission. */
  lossPercent?: number;
  ice?: PeerIceOptions;
  /** Told the size of every VP8 keyframe received (what a browser would decode at). */
  onKeyframe?: (size: { width: number; height: number }) => void;
}

/**
 * ICE servers and policy, e.g. the TURN entry of a join response with `iceTransportPolicy: 'relay'`; or
 * another local address than 127.0.0.1 (Janus does not gather on loopback).
 */
export type PeerIceOptions = Pick<
  RTCPeerConnectionConfig,
  'iceServers' | 'iceTransportPolicy' | 'iceAdditionalHostAddresses' | 'iceInterfaceAddresses'
>;

/** werift's debug options give the share of packets *kept*, in percent. */
const keptPercent = (lossPercent: number | undefined) => (lossPercent ? 100 - lossPercent : undefined);

/** A publisher: sendonly audio and/or video, answering PLI with a keyframe. */
export class TestPublisher {
  readonly pc: RTCPeerConnection;
  /** Arrival times (performance.now()) of RTCP PLIs on the video sender. */
  readonly pliTimes: number[] = [];
  readonly sentPackets: Record<MediaKind, number> = { audio: 0, video: 0 };
  /** While paused, the dummy source's packets are dropped (connections stay up): idle-cost measurements. */
  paused = false;
  /** The audio level sent on each audio packet, when the extension is offered (see TestPublisherOptions). */
  audioLevel: number | undefined;
  readonly #navigator: Navigator;

  private constructor(options: TestPublisherOptions) {
    const videoCodec =
      options.videoCodec === 'h264'
        ? new RTCRtpCodecParameters({
            mimeType: 'video/H264',
            clockRate: 90_000,
            rtcpFeedback: [useNACK(), usePLI()],
            parameters: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f',
          })
        : new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: 90_000, rtcpFeedback: [useNACK(), usePLI()] });
    this.pc = new RTCPeerConnection({
      ...LOOPBACK_PEER_CONFIG,
      ...options.ice,
      codecs: {
        audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48_000, channels: 2 })],
        video: [videoCodec],
      },
      debug: { outboundPacketLoss: keptPercent(options.lossPercent) },
      ...(options.audioLevel === undefined
        ? {}
        : { headerExtensions: { audio: [useSdesMid(), useAudioLevelIndication()], video: [useSdesMid()] } }),
    });
    this.audioLevel = options.audioLevel;
    this.#navigator = new Navigator({
      dummyMedia: { enabled: true, video: { keyframeIntervalFrames: options.keyframeIntervalFrames ?? 30 } },
    });
  }

  static async create(options: TestPublisherOptions = {}): Promise<TestPublisher> {
    const publisher = new TestPublisher(options);
    await publisher.#addTracks(options.audio ?? true, options.video ?? true);
    return publisher;
  }

  async #addTracks(audio: boolean, video: boolean): Promise<void> {
    const media = await this.#navigator.mediaDevices.getUserMedia({ audio, video });
    for (const source of media.getTracks()) {
      // werift routes PLI to a sendrecv transceiver's receiver: a publisher must be sendonly.
      const sent = new MediaStreamTrack({ kind: source.kind });
      const transceiver = this.pc.addTransceiver(sent, { direction: 'sendonly' });
      const keyframes = new KeyframesOnRequest();
      source.onReceiveRtp.subscribe((packet) => {
        if (this.paused) return;
        this.sentPackets[source.kind as MediaKind]++;
        if (source.kind === 'audio') this.#setAudioLevel(transceiver, packet);
        sent.writeRtp(source.kind === 'video' ? keyframes.apply(packet) : packet);
      });
      if (source.kind === 'video') {
        transceiver.sender.onPictureLossIndication.subscribe(() => {
          this.pliTimes.push(performance.now());
          keyframes.request();
        });
      }
    }
  }

  /** werift's sender copies a packet's own extensions by id: the level goes in under the negotiated one. */
  #setAudioLevel(transceiver: RTCRtpTransceiver, packet: RtpPacket): void {
    const id = transceiver.headerExtensions.find(
      (extension) => extension.uri === RTP_EXTENSION_URI.audioLevelIndication,
    )?.id;
    if (this.audioLevel === undefined || id === undefined) return;
    packet.header.extensions = [{ id, payload: serializeAudioLevelIndication(this.audioLevel) }];
  }

  /** Adds a second video track (a screen share); renegotiate with {@link createOffer} afterwards. */
  async addScreenTrack(): Promise<void> {
    await this.#addTracks(false, true);
  }

  /** Creates and applies the offer; returns its SDP. */
  async createOffer(): Promise<string> {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    return this.pc.localDescription!.sdp;
  }

  async setAnswer(sdp: string): Promise<void> {
    await this.pc.setRemoteDescription({ type: 'answer', sdp });
  }

  async close(): Promise<void> {
    this.#navigator.mediaDevices.cleanup();
    await this.pc.close();
  }
}

/**
 * Makes the dummy VP8 source answer PLI like a browser: its first packet is a keyframe, whose body
 * is kept and sent in place of the next frame after a request.
 */
class KeyframesOnRequest {
  #keyframeBody: Buffer | undefined;
  #requested = false;

  request(): void {
    this.#requested = true;
  }

  apply(packet: RtpPacket): RtpPacket {
    const body = packet.payload.subarray(VP8_PAYLOAD_DESCRIPTOR_LENGTH);
    if (this.#keyframeBody === undefined && isVp8Keyframe(packet.payload)) this.#keyframeBody = Buffer.from(body);
    if (!this.#requested || this.#keyframeBody === undefined) return packet;
    this.#requested = false;
    const keyframe = packet.clone();
    keyframe.payload = Buffer.concat([packet.payload.subarray(0, VP8_PAYLOAD_DESCRIPTOR_LENGTH), this.#keyframeBody]);
    return keyframe;
  }
}

export interface ReceivedTrack {
  mid: string;
  kind: MediaKind;
  /** The msid stream id: the media node sets it to the publisher's participant id. */
  streamId: string | undefined;
  packets: number;
  keyframes: number;
  /** performance.now() of the first packet and of the first VP8 keyframe. */
  firstPacketAt?: number;
  firstKeyframeAt?: number;
  /** Which sequence numbers arrived, for loss accounting. */
  sequence: SequenceCoverage;
  /**
   * How far the RTP clock ran ahead of the arrival clock between two packets, at most (ms): a forwarder
   * that continues a stream after a gap must advance its timestamps by the time that passed, not more.
   */
  rtpAheadMs: number;
  last?: { timestamp: number; at: number };
}

/** The RTP sequence numbers seen on one track, counted from the first one (wrap-safe). */
export class SequenceCoverage {
  #first: number | undefined;
  readonly #seen = new Set<number>();
  #highest = -1;

  add(sequenceNumber: number): void {
    this.#first ??= sequenceNumber;
    const offset = (sequenceNumber - this.#first + 0x10000) & 0xffff;
    if (offset >= 0x8000) return; // older than the first packet: outside the window
    this.#seen.add(offset);
    this.#highest = Math.max(this.#highest, offset);
  }

  /** Packets never received, leaving out the newest `settling` ones that may still be recovered. */
  missing(settling = 30): number {
    const end = this.#highest - settling;
    let missing = 0;
    for (let offset = 0; offset <= end; offset++) if (!this.#seen.has(offset)) missing++;
    return missing;
  }

  get span(): number {
    return this.#highest + 1;
  }
}

/** A subscriber: answers offers, counts RTP per track, kind and feed, and can send PLI. */
export class TestSubscriber {
  /** Decodes what browsers decode: Opus, VP8 and constrained-baseline H.264. */
  readonly pc: RTCPeerConnection;
  readonly tracks = new Map<string, ReceivedTrack>();

  constructor(options: TestSubscriberOptions = {}) {
    this.pc = new RTCPeerConnection({
      ...LOOPBACK_PEER_CONFIG,
      ...options.ice,
      debug: { inboundPacketLoss: keptPercent(options.lossPercent) },
      codecs: {
        audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48_000, channels: 2 })],
        video: [
          new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: 90_000, rtcpFeedback: [useNACK(), usePLI()] }),
          new RTCRtpCodecParameters({
            mimeType: 'video/H264',
            clockRate: 90_000,
            rtcpFeedback: [useNACK(), usePLI()],
            parameters: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f',
          }),
        ],
      },
    });
    const descriptor = emptyVp8Descriptor();
    this.pc.ontrack = ({ track, transceiver, streams }) => {
      const mid = transceiver.mid ?? '';
      const received: ReceivedTrack = {
        mid,
        kind: track.kind as MediaKind,
        streamId: streams[0]?.id,
        packets: 0,
        keyframes: 0,
        sequence: new SequenceCoverage(),
        rtpAheadMs: 0,
      };
      const clockRate = track.kind === 'audio' ? 48_000 : 90_000;
      this.tracks.set(mid, received);
      track.onReceiveRtp.subscribe((packet) => {
        received.packets++;
        received.sequence.add(packet.header.sequenceNumber);
        received.firstPacketAt ??= performance.now();
        const at = performance.now();
        const ticks = (packet.header.timestamp - (received.last?.timestamp ?? packet.header.timestamp)) >>> 0;
        if (received.last && ticks < 0x8000_0000) {
          received.rtpAheadMs = Math.max(received.rtpAheadMs, (ticks * 1000) / clockRate - (at - received.last.at));
        }
        received.last = { timestamp: packet.header.timestamp, at };
        if (received.kind === 'video' && isVp8Keyframe(packet.payload)) {
          received.keyframes++;
          received.firstKeyframeAt ??= performance.now();
          if (options.onKeyframe && readVp8Descriptor(packet.payload, descriptor) && descriptor.width > 0) {
            options.onKeyframe({ width: descriptor.width, height: descriptor.height });
          }
        }
      });
    };
  }

  /** Applies an offer and returns the answer SDP. */
  async answer(offerSdp: string): Promise<string> {
    await this.pc.setRemoteDescription({ type: 'offer', sdp: offerSdp });
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    return this.pc.localDescription!.sdp;
  }

  /** Packets received so far of one kind, over every track (or only the given feed's). */
  packets(kind: MediaKind, feed?: string): number {
    let total = 0;
    for (const track of this.activeTracks()) {
      if (track.kind === kind && (feed === undefined || track.streamId === feed)) total += track.packets;
    }
    return total;
  }

  /** Every packet received so far, on any track, live or ended. */
  totalPackets(): number {
    let total = 0;
    for (const track of this.tracks.values()) total += track.packets;
    return total;
  }

  /** Tracks of m-lines that are still negotiated (not stopped by a renegotiation). */
  activeTracks(): ReceivedTrack[] {
    const live = new Set(
      this.pc
        .getTransceivers()
        .filter((transceiver) => !transceiver.stopped && transceiver.currentDirection === 'recvonly')
        .map((transceiver) => transceiver.mid),
    );
    return [...this.tracks.values()].filter((track) => live.has(track.mid));
  }

  /** The feeds (msid stream ids) of the live tracks. */
  feeds(): string[] {
    return [...new Set(this.activeTracks().map((track) => track.streamId ?? ''))].sort();
  }

  /** Sends an RTCP PLI on every live video track, as a browser does when it cannot decode. */
  async requestKeyframes(): Promise<void> {
    for (const transceiver of this.pc.getTransceivers()) {
      const ssrc = transceiver.receiver.track?.ssrc;
      if (transceiver.kind === 'video' && !transceiver.stopped && ssrc !== undefined) {
        await transceiver.receiver.sendRtcpPLI(ssrc);
      }
    }
  }

  async close(): Promise<void> {
    await this.pc.close();
  }
}

/** A VP8 keyframe: start of partition 0 and the P bit clear (RFC 7741). */
export function isVp8Keyframe(payload: Buffer): boolean {
  try {
    return Vp8RtpPayload.deSerialize(payload).isKeyframe;
  } catch {
    return false;
  }
}

/** NACKs sent (inbound-rtp) or received (outbound-rtp) on a werift peer's video. */
export async function nackCount(pc: RTCPeerConnection, type: 'inbound-rtp' | 'outbound-rtp'): Promise<number> {
  let count = 0;
  (await pc.getStats()).forEach((stats: { type: string; kind?: string; nackCount?: number }) => {
    if (stats.type === type && stats.kind === 'video') count += stats.nackCount ?? 0;
  });
  return count;
}

/** Negotiates `offerer` with `answerer` (offer, then answer) and waits until both are connected. */
export async function connectPeers(offerer: RTCPeerConnection, answerer: RTCPeerConnection): Promise<void> {
  await offerer.setLocalDescription(await offerer.createOffer());
  await answerer.setRemoteDescription(offerer.localDescription!);
  await answerer.setLocalDescription(await answerer.createAnswer());
  await offerer.setRemoteDescription(answerer.localDescription!);
  await waitFor(() => offerer.connectionState === 'connected' && answerer.connectionState === 'connected', {
    message: 'both connections up',
  });
}

/**
 * Polls a condition until it holds (resolving with its value) or the timeout passes (rejecting
 * with `message`). For state that changes without an event to await, e.g. packet counters.
 */
export async function waitFor<T>(
  condition: () => T | undefined | false | Promise<T | undefined | false>,
  {
    timeoutMs = 10_000,
    intervalMs = 50,
    message = 'condition',
  }: {
    timeoutMs?: number;
    intervalMs?: number;
    /** What is awaited; a function is asked at the timeout, so that the error can say how things stood. */
    message?: string | (() => string);
  } = {},
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value !== undefined && value !== false) return value;
    if (performance.now() > deadline) {
      const awaited = typeof message === 'function' ? message() : message;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${awaited}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** The peers a test created, closed together at its end. */
export class PeerSet {
  readonly #peers: { close(): Promise<void> }[] = [];

  /** Registers `peer` for {@link closeAll} and returns it. */
  track<T extends { close(): Promise<void> }>(peer: T): T {
    this.#peers.push(peer);
    return peer;
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.#peers.splice(0).map((peer) => peer.close()));
  }
}
