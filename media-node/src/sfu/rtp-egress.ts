import { createCipheriv, KeyObject } from 'node:crypto';
import type { Socket } from 'node:dgram';
import {
  ProtectionProfileAeadAes128Gcm,
  type RTCRtpSender,
  RTP_EXTENSION_URI,
  RtpHeader,
  type RtpPacket,
} from 'werift';
import { PACKET_OVERHEAD_BYTES } from './bitrate.ts';
import type { ForwardingStats } from './forwarding-stats.ts';
import {
  type NativeFanoutLeg,
  type NativeSendTarget,
  type NativeSrtp,
  type NativeSrtpSession,
  type NativeUdpDestination,
  nativeSrtp,
} from './native-srtp.ts';
import { ntpTimeOf } from './sender-reports.ts';

/**
 * The forwarding fast path: one forwarded packet to one subscriber leg, without werift's
 * `RTCRtpSender.sendRtp` (which clones and re-serializes the packet, rebuilds its extension list,
 * and goes through four async layers to the socket). Per leg it only writes a 12-byte header (+ the
 * MID extension) with the leg's SSRC, sequence number, timestamp and payload type, encrypts the
 * payload and sends header, ciphertext and tag as one datagram. With the native addon
 * (media-node/native/srtp.c) the encryption uses one AES-GCM context per session key, set up once,
 * and the datagram goes to the leg's socket with one sendto(2) from the addon, no allocation on the
 * way; without it, node:crypto (a cipher object per packet, a KeyObject imported once) and dgram.
 * The sender's bookkeeping (SR counters, continuity state) is kept as werift keeps it, so its RTCP
 * and stats stay right. Output is byte for byte what werift sends, on both paths
 * (test/media-node/rtp-egress.test.ts checks it on recorded packets).
 *
 * Built on werift 0.25 internals (the SRTP context and the ICE pair's socket); `EgressLeg.open`
 * returns undefined when they do not have the expected shape, and the caller uses werift's path.
 */

/** performance.timeOrigin, read once: a getter into Node's internals each time. */
const TIME_ORIGIN_MS = performance.timeOrigin;

/** The fixed RTP header (RFC 3550 §5.1), before CSRCs and extensions. */
export const RTP_HEADER_SIZE = 12;
const ONE_BYTE_EXTENSION_PROFILE = 0xbede;
const IV_SIZE = 12;
/** AEAD_AES_128_GCM's authentication tag (RFC 7714 §8). */
const GCM_TAG_SIZE = 16;

/**
 * The slots of a leg's state shared with the addon's fan-out (native/srtp.c, LEG_*): what the leg
 * writes per packet, werift's rollover-counter state for the leg's SSRC, and the send's result.
 */
export const LEG_STATE = {
  fd: 0,
  ssrc: 1,
  payloadType: 2,
  send: 3,
  sequenceNumber: 4,
  timestamp: 5,
  rolloverCounter: 6,
  lastSequenceNumber: 7,
  rolloverStarted: 8,
  result: 9,
  /** The leg's number, which {@link FanoutBatch} stages (written by the addon). */
  id: 10,
  /** A steady leg's offsets from the source's numbers ({@link SteadyLegs}; werift's sender's, copied). */
  sequenceOffset: 11,
  timestampOffset: 12,
  /** What a steady leg sent since {@link EgressLeg} last took the counts (written by the addon). */
  steadyPackets: 13,
  steadyOctets: 14,
  steadyDatagrams: 15,
  steadyDatagramBytes: 16,
  slots: 17,
} as const;

if (nativeSrtp && nativeSrtp.legStateSlots !== LEG_STATE.slots) {
  throw new Error('media-node/native/build/srtp.node was built from other sources: run `npm run build:native`');
}

/** The parts of werift's SrtpContext the fast path uses (werift 0.25, patched: KeyObject keys). */
interface SrtpContextShape {
  profile: number;
  cipher: { srtpSessionKey: unknown; srtpSessionSalt: Buffer };
  getSrtpSsrcState(ssrc: number): { rolloverCounter: number };
  updateRolloverCount(sequenceNumber: number, state: { rolloverCounter: number }): void;
  encryptRtp(payload: Buffer, header: RtpHeader): Buffer;
}

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

/** A header for {@link writeRtpFields}: no CSRC, at most the MID as a one-byte extension. */
export function rtpHeaderWithMid(midExtension: Buffer | undefined): Buffer {
  const header = Buffer.alloc(RTP_HEADER_SIZE + (midExtension?.length ?? 0));
  header[0] = midExtension ? 0x90 : 0x80;
  midExtension?.copy(header, RTP_HEADER_SIZE);
  return header;
}

/**
 * Writes the fields a forwarded packet changes into a header {@link rtpHeaderWithMid} made. Runs
 * once per packet per leg: byte stores of 32-bit integers, no object and no bounds-checked
 * Buffer writer (the callers' values are already masked to their widths).
 */
export function writeRtpFields(
  header: Buffer,
  marker: boolean,
  payloadType: number,
  sequenceNumber: number,
  timestamp: number,
  ssrc: number,
): Buffer {
  header[1] = (marker ? 0x80 : 0) | payloadType;
  header[2] = sequenceNumber >>> 8;
  header[3] = sequenceNumber;
  header[4] = timestamp >>> 24;
  header[5] = timestamp >>> 16;
  header[6] = timestamp >>> 8;
  header[7] = timestamp;
  header[8] = ssrc >>> 24;
  header[9] = ssrc >>> 16;
  header[10] = ssrc >>> 8;
  header[11] = ssrc;
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
  /** The session key set up once in the native addon (AES-GCM, when the addon is built). */
  readonly #native: NativeSrtpSession | undefined;
  readonly #addon: NativeSrtp | undefined;
  /** werift's rollover-counter state per SSRC (its objects, so werift's own sends stay in step). */
  readonly #states = new Map<number, { rolloverCounter: number }>();
  /** The last SSRC's state: a leg sends on one SSRC but for RTX answers, and this runs per packet. */
  #lastSsrc = -1;
  #lastState: { rolloverCounter: number } | undefined;

  /** `addon`: the native SRTP addon, or undefined for node:crypto. */
  constructor(context: SrtpContextShape, addon: NativeSrtp | undefined) {
    this.#context = context;
    const key = context.cipher.srtpSessionKey;
    this.#gcmKey = context.profile === ProtectionProfileAeadAes128Gcm && key instanceof KeyObject ? key : undefined;
    this.#salt = context.cipher.srtpSessionSalt;
    this.#native = this.#gcmKey && addon ? addon.srtpSession(this.#gcmKey.export(), this.#salt) : undefined;
    this.#addon = this.#native ? addon : undefined;
  }

  static fromSender(sender: RTCRtpSender, addon: NativeSrtp | undefined): SrtpProtector | undefined {
    const context = (sender.dtlsTransport as unknown as { srtp?: { localContext?: SrtpContextShape } } | undefined)
      ?.srtp?.localContext;
    if (
      !context ||
      typeof context.getSrtpSsrcState !== 'function' ||
      typeof context.updateRolloverCount !== 'function'
    ) {
      return undefined;
    }
    return new SrtpProtector(context, addon);
  }

  /** The packet is encrypted by the native addon, which copies the header: the caller may reuse it. */
  get native(): boolean {
    return this.#native !== undefined;
  }

  /** The packet's rollover counter (RFC 3711 §3.3.1), kept in werift's state: once per packet sent. */
  rolloverCounter(ssrc: number, sequenceNumber: number): number {
    let state = ssrc === this.#lastSsrc ? this.#lastState : undefined;
    if (!state) {
      state = this.#states.get(ssrc);
      if (!state) {
        state = this.#context.getSrtpSsrcState(ssrc);
        this.#states.set(ssrc, state);
      }
      this.#lastSsrc = ssrc;
      this.#lastState = state;
    }
    this.#context.updateRolloverCount(sequenceNumber, state);
    return state.rolloverCounter >>> 0;
  }

  /**
   * Header + payload → the SRTP datagram's parts (one with the addon; header, ciphertext, tag with
   * node:crypto). `prefix`, when given, is sent in place of the payload's first `prefix.length` bytes
   * (the payload, shared by every leg, is not written to).
   */
  protect(header: Buffer, payload: Buffer, ssrc: number, sequenceNumber: number, prefix?: Buffer): Buffer[] {
    return this.seal(this.rolloverCounter(ssrc, sequenceNumber), header, payload, ssrc, sequenceNumber, prefix);
  }

  /**
   * Makes `state` (LEG_STATE slots) hold werift's rollover-counter state of `ssrc`: its values move
   * there, and werift's state object reads and writes them there, so the addon's fan-out, this
   * class and werift's own sends keep one counter. Returns the undo: werift's object gets its own
   * values back (the leg's SSRC changed).
   */
  shareRolloverState(ssrc: number, state: Uint32Array): () => void {
    const shared = this.#context.getSrtpSsrcState(ssrc) as {
      rolloverCounter: number;
      lastSequenceNumber?: number;
      rolloverHasProcessed?: boolean;
    };
    state[LEG_STATE.rolloverCounter] = shared.rolloverCounter;
    state[LEG_STATE.lastSequenceNumber] = shared.lastSequenceNumber ?? 0;
    state[LEG_STATE.rolloverStarted] = shared.rolloverHasProcessed ? 1 : 0;
    const slot = (index: number): PropertyDescriptor => ({
      configurable: true,
      enumerable: true,
      get: () => state[index],
      set: (value: number) => {
        state[index] = value;
      },
    });
    Object.defineProperties(shared, {
      rolloverCounter: slot(LEG_STATE.rolloverCounter),
      lastSequenceNumber: slot(LEG_STATE.lastSequenceNumber),
      rolloverHasProcessed: {
        configurable: true,
        enumerable: true,
        get: () => state[LEG_STATE.rolloverStarted] === 1,
        set: (value: boolean) => {
          state[LEG_STATE.rolloverStarted] = value ? 1 : 0;
        },
      },
    });
    return () => {
      const own = (value: unknown): PropertyDescriptor => ({
        configurable: true,
        enumerable: true,
        writable: true,
        value,
      });
      Object.defineProperties(shared, {
        rolloverCounter: own(state[LEG_STATE.rolloverCounter]),
        lastSequenceNumber: own(state[LEG_STATE.lastSequenceNumber]),
        rolloverHasProcessed: own(state[LEG_STATE.rolloverStarted] === 1),
      });
    };
  }

  /** A leg of the addon's fan-out ({@link FanoutBatch}) sending to `destination`; undefined without the addon. */
  fanoutLeg(destination: NativeUdpDestination, header: Buffer, state: Uint32Array): NativeFanoutLeg | undefined {
    return this.#native ? this.#addon!.fanoutLeg(this.#native, destination, header, state) : undefined;
  }

  /** The addon's handle for sending this session's packets to `destination`; undefined without the addon. */
  sendTarget(destination: NativeUdpDestination): NativeSendTarget | undefined {
    return this.#native ? this.#addon!.sendTarget(this.#native, destination) : undefined;
  }

  /**
   * The datagram {@link seal} makes, encrypted and sent on socket `fd` by the addon (`target` from
   * {@link sendTarget}; the IV's SSRC and sequence number are the header's): its length, or -1 when
   * it was not sent (the socket's buffer is full, or a datagram over 2 KB): the caller sends it
   * through dgram, which queues.
   */
  sendSealed(
    target: NativeSendTarget,
    fd: number,
    rolloverCounter: number,
    header: Buffer,
    payload: Buffer,
    prefix: Buffer | undefined,
  ): number {
    const sent = this.#addon!.sendProtectedRtp(target, header, payload, prefix, rolloverCounter, fd);
    return sent >= 0 ? sent : -1;
  }

  /** The datagram's parts for a packet whose {@link rolloverCounter} was taken. */
  seal(
    rolloverCounter: number,
    header: Buffer,
    payload: Buffer,
    ssrc: number,
    sequenceNumber: number,
    prefix: Buffer | undefined,
  ): Buffer[] {
    if (this.#native) return [this.#addon!.protectRtp(this.#native, header, payload, prefix, rolloverCounter)];
    if (!this.#gcmKey) {
      const plain = prefix ? Buffer.concat([prefix, payload.subarray(prefix.length)]) : payload;
      return [this.#context.encryptRtp(plain, RtpHeader.deSerialize(header))];
    }
    // RFC 7714 §8.1: IV = salt XOR (00 00 || SSRC || ROC || SEQ).
    const iv = Buffer.allocUnsafe(IV_SIZE);
    iv.writeUInt16BE(0, 0);
    iv.writeUInt32BE(ssrc, 2);
    iv.writeUInt32BE(rolloverCounter, 6);
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

/** A leg's UDP socket as the addon sends on it: its descriptor and the remote address. */
export interface DirectSocket {
  /** Valid while the route is sendable ({@link DatagramRoute.watchSendable} turns false at the socket's close). */
  fd: number;
  destination: NativeUdpDestination;
}

/** Where a leg's datagrams go: werift's selected ICE pair, or a test's collector. */
export interface DatagramRoute {
  /**
   * Calls `listener` with whether the connection may send media (a pair nominated, consent fresh, not
   * closed, the socket open): now, then after every change. Returns the unsubscribe.
   */
  watchSendable(listener: (sendable: boolean) => void): () => void;
  /** Sends one datagram made of `parts` through dgram. */
  send(parts: Buffer[]): void;
  /** The socket for the addon to send on itself; undefined: dgram only. */
  direct: DirectSocket | undefined;
  /** werift's per-pair counters. */
  counters: { packetsSent: number; bytesSent: number };
}

interface IceConnectionShape {
  nominated?: {
    protocol?: { transport?: { type?: string; socket?: Socket } };
    remoteAddr: [string, number];
    packetsSent: number;
    bytesSent: number;
  };
  canSendApplicationData(): boolean;
  /**
   * Fires after every write of what `canSendApplicationData()` reads (the state, the nominated pair,
   * consent): werift has no such event, patches/werift+0.25.2.patch adds it.
   */
  sendabilityChanged?: { subscribe(listener: () => void): { unSubscribe(): void } };
}

/** The listeners on a socket's close(); its hook is installed once per socket. */
const closeListeners = new WeakMap<Socket, Set<() => void>>();

/** Sockets whose close() was called: their descriptor may be another socket's from then on. */
const closedSockets = new WeakSet<Socket>();

/**
 * Calls `listener` within the socket's close(), after dgram released the descriptor and before anything
 * can reuse it (the socket's 'close' event comes a tick later). Returns the unsubscribe.
 */
function onSocketClose(socket: Socket, listener: () => void): () => void {
  let listeners = closeListeners.get(socket);
  if (!listeners) {
    const installed = new Set<() => void>();
    listeners = installed;
    closeListeners.set(socket, installed);
    const close = socket.close;
    socket.close = function closeAndNotify(this: Socket, ...args: Parameters<Socket['close']>) {
      closedSockets.add(socket);
      try {
        return close.apply(this, args);
      } finally {
        for (const each of installed) each();
      }
    } as Socket['close'];
  }
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** The socket is open (its close() not called) and the connection may send. */
function connectionSendable(connection: IceConnectionShape, socket: Socket): boolean {
  return !closedSockets.has(socket) && connection.canSendApplicationData();
}

/**
 * The dgram socket's descriptor, for the addon: dgram keeps its libuv handle under a private symbol
 * (Node 24). Undefined when Node's internals differ or the socket is not bound: dgram only. The
 * descriptor is only valid while the socket is open: the route that sends on it stops at its close.
 */
export function directSocket(
  socket: Socket,
  address: string,
  port: number,
  addon: NativeSrtp,
): DirectSocket | undefined {
  const stateSymbol = Object.getOwnPropertySymbols(socket).find((symbol) => symbol.description === 'state symbol');
  if (!stateSymbol) return undefined;
  const state = (socket as unknown as Record<symbol, { handle?: { fd?: unknown } | null } | undefined>)[stateSymbol];
  const fd = state?.handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  let destination: NativeUdpDestination;
  try {
    destination = addon.udpDestination(address, port);
  } catch {
    return undefined; // not an IP literal the addon parses (an IPv6 zone): dgram resolves it
  }
  return { fd, destination };
}

/** The ICE connection's selected pair, when it is plain UDP (not TURN, not TCP). */
function udpRoute(sender: RTCRtpSender, addon: NativeSrtp | undefined): DatagramRoute | undefined {
  const connection = (sender.dtlsTransport as unknown as { iceTransport?: { connection?: IceConnectionShape } })
    ?.iceTransport?.connection;
  const pair = connection?.nominated;
  const transport = pair?.protocol?.transport;
  const sendabilityChanged = connection?.sendabilityChanged;
  if (!connection || !pair || !sendabilityChanged || transport?.type !== 'udp' || !transport.socket) return undefined;
  const socket = transport.socket;
  if (closedSockets.has(socket)) return undefined;
  const [address, port] = pair.remoteAddr;
  return {
    watchSendable: (listener) => {
      const update = () => listener(connectionSendable(connection, socket));
      const connectionChanges = sendabilityChanged.subscribe(update);
      const unwatchSocket = onSocketClose(socket, update);
      update();
      return () => {
        connectionChanges.unSubscribe();
        unwatchSocket();
      };
    },
    send: (parts) => socket.send(parts, port, address),
    direct: addon ? directSocket(socket, address, port, addon) : undefined,
    counters: pair,
  };
}

/**
 * One subscriber leg of a forwarded track, sending through the fast path. Opened once the leg's
 * DTLS transport is connected; the sender's negotiated SSRC, payload type, MID and RTX stay the
 * sender's (werift's RTCP, stats and renegotiation keep working on them).
 */
export class EgressLeg {
  readonly #sender: SenderBookkeeping;
  readonly #protector: SrtpProtector;
  readonly #route: DatagramRoute;
  readonly #transportStats: { bytesSent: number; packetsSent: number };
  readonly #midExtension: Buffer | undefined;
  readonly #payloadType: number;
  /** Rewritten for every packet when the addon encrypts (it copies the header into the datagram). */
  readonly #reusableHeader: Buffer | undefined;
  /** The addon's handle for this leg's session and remote address, when the addon sends on the socket. */
  readonly #sendTarget: NativeSendTarget | undefined;
  /** The leg in the addon's fan-out (when the addon sends on the socket), and the state it shares. */
  readonly #fanoutLeg: NativeFanoutLeg | undefined;
  /** Over an ArrayBuffer of its own: its memory never moves, the addon keeps a pointer to it. */
  readonly #fanoutState = new Uint32Array(new ArrayBuffer(LEG_STATE.slots * Uint32Array.BYTES_PER_ELEMENT));
  /** The SSRC whose rollover-counter state {@link #fanoutState} holds, and how to give it back. */
  #sharedSsrc: number | undefined;
  #unshareRolloverState: (() => void) | undefined;
  /** 12 bytes and the MID extension. */
  readonly #headerLength: number;
  /** Set by the forwarded track once the viewer's stream needs it (after a layer switch). */
  payloadRewriter: PayloadPrefixRewriter | undefined;
  /** performance.now() at the arrival of the last packet this leg forwarded. */
  #lastArrivalMs = 0;
  /** True while the sender's last-packet fields lag behind this leg's last packet. */
  #senderBehind = false;
  /**
   * What this leg sent since werift's counters were last brought up to date ({@link syncSender}):
   * media packets and their payload bytes (the sender's), and datagrams and their bytes (the ICE
   * pair's and the DTLS transport's). Counted here, on this object, rather than in three of werift's
   * per packet: each leg touching werift's objects cost ~4 % of the node's CPU with 60 subscribers.
   */
  #unsyncedPackets = 0;
  #unsyncedOctets = 0;
  #unsyncedDatagrams = 0;
  #unsyncedDatagramBytes = 0;
  /**
   * Whether the route may send now: kept up to date by the route's events, read per packet (asking
   * werift's connection and dgram's handle for every packet and leg cost ~3 % of the node's CPU with
   * 60 subscribers).
   */
  #sendable = false;
  readonly #unwatchSendable: () => void;
  /** The steady legs this leg is among ({@link joinSteady}), and what its counts go to. */
  #steady: { legs: SteadyLegs; stats: ForwardingStats; sent: { bytes: number } } | undefined;

  constructor(sender: SenderBookkeeping, protector: SrtpProtector, route: DatagramRoute, transportStats?: object) {
    this.#sender = sender;
    this.#protector = protector;
    this.#route = route;
    this.#transportStats = (transportStats as { bytesSent: number; packetsSent: number }) ?? {
      bytesSent: 0,
      packetsSent: 0,
    };
    const midId = sender.headerExtensions.find((extension) => extension.uri === RTP_EXTENSION_URI.sdesMid)?.id;
    this.#midExtension = midId !== undefined && sender.mid ? midExtensionBlock(midId, sender.mid) : undefined;
    this.#payloadType = sender.codec!.payloadType;
    this.#reusableHeader = protector.native ? rtpHeaderWithMid(this.#midExtension) : undefined;
    this.#headerLength = RTP_HEADER_SIZE + (this.#midExtension?.length ?? 0);
    this.#sendTarget = route.direct ? protector.sendTarget(route.direct.destination) : undefined;
    this.#fanoutLeg = route.direct
      ? protector.fanoutLeg(route.direct.destination, rtpHeaderWithMid(this.#midExtension), this.#fanoutState)
      : undefined;
    this.#fanoutState[LEG_STATE.payloadType] = this.#payloadType;
    this.#fanoutState[LEG_STATE.fd] = route.direct?.fd ?? 0;
    this.#unwatchSendable = route.watchSendable((sendable) => {
      this.#sendable = sendable;
      if (this.#steady) this.#fanoutState[LEG_STATE.send] = sendable ? 1 : 0;
    });
  }

  /** Stops following the route's events (the forwarded track closed); the leg sends nothing more. */
  close(): void {
    this.leaveSteady();
    this.#sendable = false;
    this.#unwatchSendable();
  }

  /** performance.now() at the arrival of the last packet this leg forwarded, as of its last count. */
  get lastArrivalMs(): number {
    return this.#lastArrivalMs;
  }

  /** The leg can be steady: the addon sends its packets itself. */
  get canBeSteady(): boolean {
    return this.#fanoutLeg !== undefined;
  }

  /**
   * Joins a layer's steady legs: from now on the addon alone forwards the layer's packets to this leg,
   * with the sender's offsets as they are now (the caller leaves before it changes them, at a layer
   * switch) and its SSRC. The forwarded packets count for `stats` and the viewer's `sent` bytes when
   * {@link collectSteadyCounts} runs (each reader calls it first; the sender-report tick each second).
   */
  joinSteady(legs: SteadyLegs, stats: ForwardingStats, sent: { bytes: number }): void {
    if (this.#steady) return;
    const sender = this.#sender;
    const state = this.#fanoutState;
    if (sender.ssrc !== this.#sharedSsrc) this.#shareRolloverState(sender.ssrc);
    state[LEG_STATE.sequenceOffset] = sender.seqOffset;
    state[LEG_STATE.timestampOffset] = sender.timestampOffset;
    state[LEG_STATE.send] = this.#sendable ? 1 : 0;
    this.#steady = { legs, stats, sent };
    legs.add(this, state[LEG_STATE.id]!);
  }

  /** Leaves its steady legs, its counts collected: its packets come through {@link forward} again. */
  leaveSteady(): void {
    const steady = this.#steady;
    if (!steady) return;
    this.collectSteadyCounts();
    steady.legs.delete(this);
    this.#steady = undefined;
  }

  /** Adds what the addon sent to this steady leg since the last call to the counts that record it. */
  collectSteadyCounts(): void {
    const steady = this.#steady;
    const state = this.#fanoutState;
    const packets = state[LEG_STATE.steadyPackets]!;
    if (!steady || packets === 0) return;
    const octets = state[LEG_STATE.steadyOctets]!;
    this.#unsyncedPackets += packets;
    this.#unsyncedOctets += octets;
    this.#unsyncedDatagrams += state[LEG_STATE.steadyDatagrams]!;
    this.#unsyncedDatagramBytes += state[LEG_STATE.steadyDatagramBytes]!;
    state[LEG_STATE.steadyPackets] = 0;
    state[LEG_STATE.steadyOctets] = 0;
    state[LEG_STATE.steadyDatagrams] = 0;
    state[LEG_STATE.steadyDatagramBytes] = 0;
    // The addon wrote the last packet's sequence number and timestamp into the state.
    this.#lastArrivalMs = steady.legs.lastArrivalMs;
    this.#senderBehind = true;
    steady.stats.forwardedPackets += packets;
    steady.sent.bytes += octets + packets * PACKET_OVERHEAD_BYTES;
  }

  /**
   * A leg of a connected werift sender, or undefined when werift's own path must be used: other
   * header extensions than the MID to write (the node negotiates none), RED, TURN or TCP.
   */
  static open(sender: RTCRtpSender, addon: NativeSrtp | undefined = nativeSrtp): EgressLeg | undefined {
    const bookkeeping = sender as unknown as SenderBookkeeping;
    if (sender.dtlsTransport?.state !== 'connected' || !bookkeeping.codec) return undefined;
    if (bookkeeping.redRedundantPayloadType !== undefined) return undefined;
    if (bookkeeping.headerExtensions.some((extension) => extension.uri !== RTP_EXTENSION_URI.sdesMid)) return undefined;
    const protector = SrtpProtector.fromSender(sender, addon);
    const route = udpRoute(sender, addon);
    if (!protector || !route) return undefined;
    return new EgressLeg(bookkeeping, protector, route, sender.dtlsTransport);
  }

  /**
   * Forwards `packet` (the source's, not modified) to this leg; `arrivalMs` its arrival
   * (performance.now()). With a `fanout` (and the addon sending on the socket), the leg is staged
   * there and the packet goes out when the batch is sent, with every other leg staged for it; a
   * packet whose payload this leg rewrites goes out at once.
   */
  forward(packet: RtpPacket, arrivalMs: number, fanout?: FanoutBatch): void {
    const sender = this.#sender;
    const source = packet.header;
    const sequenceNumber = (source.sequenceNumber + sender.seqOffset) & 0xffff;
    const timestamp = (source.timestamp + sender.timestampOffset) >>> 0;
    const payload = packet.payload;
    // The last packet's numbers stay here until someone reads them from the sender (syncSender):
    // written to werift's sender for every packet, the 32-bit timestamp was a new heap number and the
    // NTP time a new BigInt per leg, each store into the long-lived sender a write barrier's slow path.
    const state = this.#fanoutState;
    state[LEG_STATE.sequenceNumber] = sequenceNumber;
    state[LEG_STATE.timestamp] = timestamp;
    this.#lastArrivalMs = arrivalMs;
    this.#senderBehind = true;
    this.#unsyncedPackets++;
    this.#unsyncedOctets += payload.length;
    const prefix = this.payloadRewriter?.prefixFor(payload, false);
    if (fanout && prefix === undefined && this.#fanoutLeg) {
      this.#stage(fanout, payload.length);
      return;
    }
    const header = writeRtpFields(
      this.#reusableHeader ?? rtpHeaderWithMid(this.#midExtension),
      source.marker,
      this.#payloadType,
      sequenceNumber,
      timestamp,
      sender.ssrc,
    );
    this.#send(header, payload, sender.ssrc, sequenceNumber, prefix);
  }

  /**
   * werift's sender with its last-packet fields (sequence number, RTP and NTP timestamps) those of
   * this leg's last packet, and werift's counters (the sender's, the ICE pair's, the DTLS
   * transport's) with what this leg sent, for the readers that call this first: a layer switch,
   * werift's own send path, the sender-report tick (each second, so werift's getStats(), which the node
   * does not call, lags by at most that). Cheap when nothing was sent since the last call.
   */
  syncSender(): SenderBookkeeping {
    this.collectSteadyCounts();
    const sender = this.#sender;
    if (this.#senderBehind) {
      this.#senderBehind = false;
      const state = this.#fanoutState;
      sender.sequenceNumber = state[LEG_STATE.sequenceNumber]!;
      sender.timestamp = state[LEG_STATE.timestamp]!;
      sender.rtpTimestamp = sender.timestamp;
      sender.ntpTimestamp = ntpTimeOf(TIME_ORIGIN_MS + this.#lastArrivalMs);
    }
    if (this.#unsyncedPackets > 0) {
      sender.octetCount += this.#unsyncedOctets;
      sender.headerBytesSent += this.#unsyncedPackets * this.#headerLength;
      sender.packetCount = (sender.packetCount + this.#unsyncedPackets) >>> 0;
      this.#unsyncedPackets = 0;
      this.#unsyncedOctets = 0;
    }
    if (this.#unsyncedDatagrams > 0) {
      const counters = this.#route.counters;
      counters.packetsSent += this.#unsyncedDatagrams;
      counters.bytesSent += this.#unsyncedDatagramBytes;
      this.#transportStats.packetsSent += this.#unsyncedDatagrams;
      this.#transportStats.bytesSent += this.#unsyncedDatagramBytes;
      this.#unsyncedDatagrams = 0;
      this.#unsyncedDatagramBytes = 0;
    }
    return sender;
  }

  /**
   * Stages this leg's copy of a packet in `fanout`: its numbers into the shared state, and the
   * counters the send will move (a datagram the addon cannot send goes through dgram, the same bytes:
   * {@link sendUnsent}). The rollover counter moves in the addon, sent or not, as in {@link #send}.
   */
  #stage(fanout: FanoutBatch, payloadLength: number): void {
    const state = this.#fanoutState;
    const ssrc = this.#sender.ssrc;
    if (ssrc !== this.#sharedSsrc) this.#shareRolloverState(ssrc);
    state[LEG_STATE.send] = 0;
    fanout.add(this, state[LEG_STATE.id]!);
    if (!this.#sendable) return;
    state[LEG_STATE.send] = 1;
    this.#countSent(this.#headerLength + payloadLength + GCM_TAG_SIZE);
  }

  #shareRolloverState(ssrc: number): void {
    this.#unshareRolloverState?.();
    this.#unshareRolloverState = this.#protector.shareRolloverState(ssrc, this.#fanoutState);
    this.#fanoutState[LEG_STATE.ssrc] = ssrc;
    this.#sharedSsrc = ssrc;
  }

  /** After the batch was sent: this leg's datagram again through dgram when the addon could not send it. */
  sendUnsent(packet: RtpPacket): void {
    const state = this.#fanoutState;
    if (state[LEG_STATE.send] === 0 || (state[LEG_STATE.result]! | 0) >= 0) return;
    const ssrc = state[LEG_STATE.ssrc]!;
    const sequenceNumber = state[LEG_STATE.sequenceNumber]!;
    const header = writeRtpFields(
      rtpHeaderWithMid(this.#midExtension),
      packet.header.marker,
      this.#payloadType,
      sequenceNumber,
      state[LEG_STATE.timestamp]!,
      ssrc,
    );
    const rolloverCounter = state[LEG_STATE.rolloverCounter]!;
    this.#route.send(this.#protector.seal(rolloverCounter, header, packet.payload, ssrc, sequenceNumber, undefined));
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
    if (sender.rtxPayloadType !== undefined) {
      const rtxSequenceNumber = sender.rtxSequenceNumber;
      sender.rtxSequenceNumber = (rtxSequenceNumber + 1) & 0xffff;
      const header = writeRtpFields(
        rtpHeaderWithMid(this.#midExtension),
        original.header.marker,
        sender.rtxPayloadType,
        rtxSequenceNumber,
        timestamp,
        sender.rtxSsrc,
      );
      const payload = Buffer.allocUnsafe(2 + original.payload.length);
      payload.writeUInt16BE(sequenceNumber, 0);
      original.payload.copy(payload, 2);
      this.payloadRewriter?.prefixFor(original.payload, true)?.copy(payload, 2);
      sender.retransmittedBytesSent += payload.length;
      this.#send(header, payload, sender.rtxSsrc, rtxSequenceNumber, undefined);
    } else {
      const header = writeRtpFields(
        rtpHeaderWithMid(this.#midExtension),
        original.header.marker,
        this.#payloadType,
        sequenceNumber,
        timestamp,
        sender.ssrc,
      );
      sender.retransmittedBytesSent += original.payload.length;
      const prefix = this.payloadRewriter?.prefixFor(original.payload, true);
      this.#send(header, original.payload, sender.ssrc, sequenceNumber, prefix);
    }
    sender.retransmittedPacketsSent++;
    return true;
  }

  /** Protects and sends one packet: by the addon on the socket itself when it can, else through dgram. */
  #send(header: Buffer, payload: Buffer, ssrc: number, sequenceNumber: number, prefix: Buffer | undefined): void {
    const protector = this.#protector;
    const route = this.#route;
    // Every packet counts for the rollover counter, sent or not (a long consent loss may span a wrap).
    const rolloverCounter = protector.rolloverCounter(ssrc, sequenceNumber);
    if (!this.#sendable) return;
    const target = this.#sendTarget;
    let length = target ? protector.sendSealed(target, route.direct!.fd, rolloverCounter, header, payload, prefix) : -1;
    if (length < 0) {
      const parts = protector.seal(rolloverCounter, header, payload, ssrc, sequenceNumber, prefix);
      length = 0;
      for (const part of parts) length += part.length;
      route.send(parts);
    }
    this.#countSent(length);
  }

  /** One datagram of `length` bytes, for werift's per-pair and per-transport counters ({@link syncSender}). */
  #countSent(length: number): void {
    this.#unsyncedDatagrams++;
    this.#unsyncedDatagramBytes += length;
  }
}

/** A copy of a full list of leg numbers (the addon's fan-out input) with room for as many again. */
function doubled(ids: Uint32Array<ArrayBuffer>): Uint32Array<ArrayBuffer> {
  const grown = new Uint32Array(ids.length * 2);
  grown.set(ids);
  return grown;
}

/**
 * The legs one source packet goes to through the addon's fan-out: each forwarded track stages its
 * leg ({@link EgressLeg.forward}), then the source sends the batch with one native call, which takes
 * the legs' numbers in one typed array. One per source track, reused for every packet (the fan-out
 * does not re-enter). The staged legs are held here, so their numbers stay theirs until the send.
 */
export class FanoutBatch {
  readonly #addon: NativeSrtp | undefined;
  readonly #legs: EgressLeg[] = [];
  #ids = new Uint32Array(64);
  #count = 0;

  constructor(addon: NativeSrtp | undefined = nativeSrtp) {
    this.#addon = addon;
  }

  add(leg: EgressLeg, id: number): void {
    const count = this.#count;
    if (count === this.#ids.length) this.#ids = doubled(this.#ids);
    this.#legs[count] = leg;
    this.#ids[count] = id;
    this.#count = count + 1;
  }

  /** Sends `packet` to the staged legs, and empties the batch. */
  send(packet: RtpPacket): void {
    const count = this.#count;
    if (count === 0) return;
    this.#count = 0;
    const unsent = this.#addon!.fanoutRtp(this.#ids, count, packet.payload, packet.header.marker);
    if (unsent === 0) return;
    for (let index = 0; index < count; index++) this.#legs[index]!.sendUnsent(packet);
  }
}

/**
 * The legs that get every packet of one source layer through the addon alone (steady legs: their
 * viewer's stream needs no decision per packet, see ForwardedTrack): one native call per packet
 * writes each leg's header from the source's numbers and the leg's offsets, encrypts and sends, and
 * counts, without a JS call or object per leg. With 60 viewers, the JS per leg per packet was the
 * largest share of the node's CPU after the kernel's.
 */
export class SteadyLegs {
  readonly #addon: NativeSrtp | undefined;
  readonly #legs: EgressLeg[] = [];
  #ids = new Uint32Array(16);
  /** performance.now() at the arrival of the last packet sent: each leg's sender report pairs its RTP time with it. */
  lastArrivalMs = 0;

  constructor(addon: NativeSrtp | undefined = nativeSrtp) {
    this.#addon = addon;
  }

  get size(): number {
    return this.#legs.length;
  }

  add(leg: EgressLeg, id: number): void {
    const count = this.#legs.length;
    if (count === this.#ids.length) this.#ids = doubled(this.#ids);
    this.#ids[count] = id;
    this.#legs.push(leg);
  }

  delete(leg: EgressLeg): void {
    const index = this.#legs.indexOf(leg);
    if (index < 0) return;
    const last = this.#legs.length - 1;
    this.#legs[index] = this.#legs[last]!;
    this.#ids[index] = this.#ids[last]!;
    this.#legs.pop();
  }

  /** Sends `packet` (no padding, no CSRCs: those go through werift's path) to every leg. */
  send(packet: RtpPacket, arrivalMs: number): void {
    const count = this.#legs.length;
    if (count === 0) return;
    this.lastArrivalMs = arrivalMs;
    const header = packet.header;
    const unsent = this.#addon!.fanoutRtp(
      this.#ids,
      count,
      packet.payload,
      header.marker,
      header.sequenceNumber,
      header.timestamp,
    );
    if (unsent === 0) return;
    for (let index = 0; index < count; index++) this.#legs[index]!.sendUnsent(packet);
  }
}
