import { createCipheriv, KeyObject } from 'node:crypto';
import type { Socket } from 'node:dgram';
import {
  ProtectionProfileAeadAes128Gcm,
  type RTCRtpSender,
  RTP_EXTENSION_URI,
  RtpHeader,
  type RtpPacket,
} from 'werift';

/**
 * The forwarding fast path: one forwarded packet to one subscriber leg, without werift's
 * `RTCRtpSender.sendRtp` (which clones and re-serializes the packet, rebuilds its extension list,
 * and goes through four async layers to the socket). Per leg it only writes a 12-byte header (+ the
 * MID extension) with the leg's SSRC, sequence number, timestamp and payload type, encrypts the
 * payload (AES-GCM with a KeyObject imported once) and hands header, ciphertext and tag to the
 * socket as one datagram. The sender's bookkeeping (SR counters, continuity state) is kept as
 * werift keeps it, so its RTCP and stats stay right. Output is byte for byte what werift sends
 * (test/media-node/rtp-egress.test.ts checks it on recorded packets).
 *
 * Built on werift 0.25 internals (the SRTP context and the ICE pair's socket); `EgressLeg.open`
 * returns undefined when they do not have the expected shape, and the caller uses werift's path.
 */

const RTP_HEADER_SIZE = 12;
const ONE_BYTE_EXTENSION_PROFILE = 0xbede;
const IV_SIZE = 12;

/** The parts of werift's SrtpContext the fast path uses (werift 0.25, patched: KeyObject keys). */
interface SrtpContextShape {
  profile: number;
  cipher: { srtpSessionKey: unknown; srtpSessionSalt: Buffer };
  getSrtpSsrcState(ssrc: number): { rolloverCounter: number };
  updateRolloverCount(sequenceNumber: number, state: { rolloverCounter: number }): void;
  encryptRtp(payload: Buffer, header: RtpHeader): Buffer;
}

/** A plain UDP candidate pair: werift's UdpTransport socket and the remote address. */
interface UdpPath {
  socket: Socket;
  address: string;
  port: number;
  pair: { packetsSent: number; bytesSent: number };
}

/** Sends one datagram made of `parts`; false when the connection cannot send (consent lost, closed). */
type DatagramSender = (parts: Buffer[], length: number) => boolean;

/** The werift 0.25 sender fields the fast path reads and keeps up to date (werift keeps them private). */
export interface SenderBookkeeping {
  ssrc: number;
  codec?: { payloadType: number };
  mid?: string;
  seqOffset: number;
  timestampOffset: number;
  sequenceNumber?: number;
  timestamp?: number;
  ntpTimestamp: bigint;
  rtpTimestamp: number;
  octetCount: number;
  packetCount: number;
  headerBytesSent: number;
  rtxPayloadType?: number;
  rtxSsrc: number;
  rtxSequenceNumber: number;
  retransmittedPacketsSent: number;
  retransmittedBytesSent: number;
  headerExtensions: { id: number; uri: string }[];
  redRedundantPayloadType?: number;
}

/** Writes the RTP header of a forwarded packet: no CSRC, at most the MID as a one-byte extension. */
export function writeRtpHeader(
  fields: { marker: boolean; payloadType: number; sequenceNumber: number; timestamp: number; ssrc: number },
  midExtension: Buffer | undefined,
): Buffer {
  const header = Buffer.allocUnsafe(RTP_HEADER_SIZE + (midExtension?.length ?? 0));
  header[0] = midExtension ? 0x90 : 0x80;
  header[1] = (fields.marker ? 0x80 : 0) | fields.payloadType;
  header.writeUInt16BE(fields.sequenceNumber, 2);
  header.writeUInt32BE(fields.timestamp, 4);
  header.writeUInt32BE(fields.ssrc, 8);
  midExtension?.copy(header, RTP_HEADER_SIZE);
  return header;
}

/** The MID as a one-byte header extension block (RFC 8285), padded to 32 bits; as werift writes it. */
export function midExtensionBlock(id: number, mid: string): Buffer {
  const value = Buffer.from(mid);
  const elements = 1 + value.length;
  const padded = Math.ceil(elements / 4) * 4;
  const block = Buffer.alloc(4 + padded);
  block.writeUInt16BE(ONE_BYTE_EXTENSION_PROFILE, 0);
  block.writeUInt16BE(padded / 4, 2);
  block[4] = (id << 4) | (value.length - 1);
  value.copy(block, 5);
  return block;
}

/**
 * Rewrites the first bytes of a leg's payloads (the VP8 picture ID and TL0PICIDX after a layer
 * switch): the bytes to send instead, or undefined to send the payload as it is. A retransmission
 * must not move the rewriter's state.
 */
export interface PayloadPrefixRewriter {
  prefixFor(payload: Buffer, retransmission: boolean): Buffer | undefined;
}

/** SRTP protection of one packet by a werift context: AES-GCM done here, other profiles by werift. */
export class SrtpProtector {
  readonly #context: SrtpContextShape;
  readonly #gcmKey: KeyObject | undefined;
  readonly #salt: Buffer;
  /** werift's rollover-counter state per SSRC (its objects, so werift's own sends stay in step). */
  readonly #states = new Map<number, { rolloverCounter: number }>();

  constructor(context: SrtpContextShape) {
    this.#context = context;
    const key = context.cipher.srtpSessionKey;
    this.#gcmKey = context.profile === ProtectionProfileAeadAes128Gcm && key instanceof KeyObject ? key : undefined;
    this.#salt = context.cipher.srtpSessionSalt;
  }

  static fromSender(sender: RTCRtpSender): SrtpProtector | undefined {
    const context = (sender.dtlsTransport as unknown as { srtp?: { localContext?: SrtpContextShape } } | undefined)
      ?.srtp?.localContext;
    if (
      !context ||
      typeof context.getSrtpSsrcState !== 'function' ||
      typeof context.updateRolloverCount !== 'function'
    ) {
      return undefined;
    }
    return new SrtpProtector(context);
  }

  /**
   * Header + payload → the SRTP datagram's parts (header, ciphertext, tag for GCM). `prefix`, when
   * given, is sent in place of the payload's first `prefix.length` bytes (the payload, shared by
   * every leg, is not written to).
   */
  protect(header: Buffer, payload: Buffer, ssrc: number, sequenceNumber: number, prefix?: Buffer): Buffer[] {
    let state = this.#states.get(ssrc);
    if (!state) {
      state = this.#context.getSrtpSsrcState(ssrc);
      this.#states.set(ssrc, state);
    }
    this.#context.updateRolloverCount(sequenceNumber, state);
    if (!this.#gcmKey) {
      const plain = prefix ? Buffer.concat([prefix, payload.subarray(prefix.length)]) : payload;
      return [this.#context.encryptRtp(plain, RtpHeader.deSerialize(header))];
    }
    // RFC 7714 §8.1: IV = salt XOR (00 00 || SSRC || ROC || SEQ).
    const iv = Buffer.allocUnsafe(IV_SIZE);
    iv.writeUInt16BE(0, 0);
    iv.writeUInt32BE(ssrc, 2);
    iv.writeUInt32BE(state.rolloverCounter >>> 0, 6);
    iv.writeUInt16BE(sequenceNumber, 10);
    const salt = this.#salt;
    for (let index = 0; index < IV_SIZE; index++) iv[index]! ^= salt[index]!;
    const cipher = createCipheriv('aes-128-gcm', this.#gcmKey, iv);
    cipher.setAAD(header);
    if (prefix) {
      const encryptedPrefix = cipher.update(prefix);
      const encryptedRest = cipher.update(payload.subarray(prefix.length));
      cipher.final();
      return [header, encryptedPrefix, encryptedRest, cipher.getAuthTag()];
    }
    const encrypted = cipher.update(payload);
    cipher.final();
    return [header, encrypted, cipher.getAuthTag()];
  }
}

/** The ICE connection's selected pair, when it is plain UDP (not TURN, not TCP). */
function udpPath(sender: RTCRtpSender): { connection: IceConnectionShape; path: UdpPath } | undefined {
  const connection = (sender.dtlsTransport as unknown as { iceTransport?: { connection?: IceConnectionShape } })
    ?.iceTransport?.connection;
  const pair = connection?.nominated;
  const transport = pair?.protocol?.transport;
  if (!connection || !pair || transport?.type !== 'udp' || !transport.socket) return undefined;
  return {
    connection,
    path: { socket: transport.socket, address: pair.remoteAddr[0], port: pair.remoteAddr[1], pair },
  };
}

interface IceConnectionShape {
  nominated?: {
    protocol?: { transport?: { type?: string; socket?: Socket } };
    remoteAddr: [string, number];
    packetsSent: number;
    bytesSent: number;
  };
  canSendApplicationData(): boolean;
}

/**
 * One subscriber leg of a forwarded track, sending through the fast path. Opened once the leg's
 * DTLS transport is connected; the sender's negotiated SSRC, payload type, MID and RTX stay the
 * sender's (werift's RTCP, stats and renegotiation keep working on them).
 */
export class EgressLeg {
  readonly #sender: SenderBookkeeping;
  readonly #protector: SrtpProtector;
  readonly #send: DatagramSender;
  readonly #transportStats: { bytesSent: number; packetsSent: number };
  readonly #midExtension: Buffer | undefined;
  readonly #payloadType: number;
  /** Set by the forwarded track once the viewer's stream needs it (after a layer switch). */
  payloadRewriter: PayloadPrefixRewriter | undefined;

  constructor(sender: SenderBookkeeping, protector: SrtpProtector, send: DatagramSender, transportStats?: object) {
    this.#sender = sender;
    this.#protector = protector;
    this.#send = send;
    this.#transportStats = (transportStats as { bytesSent: number; packetsSent: number }) ?? {
      bytesSent: 0,
      packetsSent: 0,
    };
    const midId = sender.headerExtensions.find((extension) => extension.uri === RTP_EXTENSION_URI.sdesMid)?.id;
    this.#midExtension = midId !== undefined && sender.mid ? midExtensionBlock(midId, sender.mid) : undefined;
    this.#payloadType = sender.codec!.payloadType;
  }

  /**
   * A leg of a connected werift sender, or undefined when werift's own path must be used: other
   * header extensions than the MID to write (the node negotiates none), RED, TURN or TCP.
   */
  static open(sender: RTCRtpSender): EgressLeg | undefined {
    const bookkeeping = sender as unknown as SenderBookkeeping;
    if (sender.dtlsTransport?.state !== 'connected' || !bookkeeping.codec) return undefined;
    if (bookkeeping.redRedundantPayloadType !== undefined) return undefined;
    if (bookkeeping.headerExtensions.some((extension) => extension.uri !== RTP_EXTENSION_URI.sdesMid)) return undefined;
    const protector = SrtpProtector.fromSender(sender);
    const route = udpPath(sender);
    if (!protector || !route) return undefined;
    const { connection, path } = route;
    const send: DatagramSender = (parts, length) => {
      if (!connection.canSendApplicationData()) return false;
      path.socket.send(parts, path.port, path.address);
      path.pair.packetsSent++;
      path.pair.bytesSent += length;
      return true;
    };
    return new EgressLeg(bookkeeping, protector, send, sender.dtlsTransport);
  }

  /** Forwards `packet` (the source's, not modified) to this leg; `ntpTimestamp` of its arrival. */
  forward(packet: RtpPacket, ntpTimestamp: bigint): void {
    const sender = this.#sender;
    const source = packet.header;
    const sequenceNumber = (source.sequenceNumber + sender.seqOffset) & 0xffff;
    const timestamp = (source.timestamp + sender.timestampOffset) >>> 0;
    const header = writeRtpHeader(
      { marker: source.marker, payloadType: this.#payloadType, sequenceNumber, timestamp, ssrc: sender.ssrc },
      this.#midExtension,
    );
    const payload = packet.payload;
    sender.sequenceNumber = sequenceNumber;
    sender.timestamp = timestamp;
    sender.ntpTimestamp = ntpTimestamp;
    sender.rtpTimestamp = timestamp;
    sender.octetCount += payload.length;
    sender.headerBytesSent += header.length;
    sender.packetCount = (sender.packetCount + 1) >>> 0;
    const prefix = this.payloadRewriter?.prefixFor(payload, false);
    this.#transmit(this.#protector.protect(header, payload, sender.ssrc, sequenceNumber, prefix));
  }

  /**
   * Answers a NACK for `sequenceNumber` of this leg from the source's history: as RTX when
   * negotiated (RFC 4588), else the packet again. False when the packet is no longer known.
   */
  retransmit(sequenceNumber: number, history: (sourceSequenceNumber: number) => RtpPacket | undefined): boolean {
    const sender = this.#sender;
    const original = history((sequenceNumber - sender.seqOffset) & 0xffff);
    if (!original) return false;
    const timestamp = (original.header.timestamp + sender.timestampOffset) >>> 0;
    let parts: Buffer[];
    if (sender.rtxPayloadType !== undefined) {
      const rtxSequenceNumber = sender.rtxSequenceNumber;
      sender.rtxSequenceNumber = (rtxSequenceNumber + 1) & 0xffff;
      const header = writeRtpHeader(
        {
          marker: original.header.marker,
          payloadType: sender.rtxPayloadType,
          sequenceNumber: rtxSequenceNumber,
          timestamp,
          ssrc: sender.rtxSsrc,
        },
        this.#midExtension,
      );
      const payload = Buffer.allocUnsafe(2 + original.payload.length);
      payload.writeUInt16BE(sequenceNumber, 0);
      original.payload.copy(payload, 2);
      this.payloadRewriter?.prefixFor(original.payload, true)?.copy(payload, 2);
      sender.retransmittedBytesSent += payload.length;
      parts = this.#protector.protect(header, payload, sender.rtxSsrc, rtxSequenceNumber);
    } else {
      const header = writeRtpHeader(
        {
          marker: original.header.marker,
          payloadType: this.#payloadType,
          sequenceNumber,
          timestamp,
          ssrc: sender.ssrc,
        },
        this.#midExtension,
      );
      sender.retransmittedBytesSent += original.payload.length;
      const prefix = this.payloadRewriter?.prefixFor(original.payload, true);
      parts = this.#protector.protect(header, original.payload, sender.ssrc, sequenceNumber, prefix);
    }
    sender.retransmittedPacketsSent++;
    this.#transmit(parts);
    return true;
  }

  #transmit(parts: Buffer[]): void {
    let length = 0;
    for (const part of parts) length += part.length;
    if (!this.#send(parts, length)) return;
    this.#transportStats.bytesSent += length;
    this.#transportStats.packetsSent++;
  }
}
