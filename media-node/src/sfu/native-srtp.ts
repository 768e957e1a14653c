import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** An AES-128-GCM SRTP session key, set up once (the addon's EVP_CIPHER_CTX). */
export type NativeSrtpSession = { readonly nativeSrtpSession: unique symbol };
/** A remote UDP address, parsed once. */
export type NativeUdpDestination = { readonly nativeUdpDestination: unique symbol };
/** An encrypting session and a remote address: where one leg's packets go. */
export type NativeSendTarget = { readonly nativeSendTarget: unique symbol };
/** A leg of the addon's fan-out: its session, remote address, header template and state array. */
export type NativeFanoutLeg = { readonly nativeFanoutLeg: unique symbol };

/** media-node/native/srtp.c: see there, and the media node's README. */
export interface NativeSrtp {
  /** The slots of a fan-out leg's state this build of the addon reads (rtp-egress.ts' LEG_STATE). */
  readonly legStateSlots: number;
  /** `decrypts`: a session for the remote side's packets (the unprotect functions), else for ours. */
  srtpSession(sessionKey: Buffer, sessionSalt: Buffer, decrypts?: boolean): NativeSrtpSession;
  udpDestination(ip: string, port: number): NativeUdpDestination;
  /**
   * header | ciphertext | tag; `prefix` is encrypted in place of the payload's first bytes. The IV's
   * SSRC and sequence number are the header's.
   */
  protectRtp(
    session: NativeSrtpSession,
    header: Buffer,
    payload: Buffer,
    prefix: Buffer | undefined,
    rolloverCounter: number,
  ): Buffer;
  /** A leg's encrypting session and remote address as one handle, for {@link sendProtectedRtp}. */
  sendTarget(session: NativeSrtpSession, destination: NativeUdpDestination): NativeSendTarget;
  /** The same datagram sent on socket `fd`: its length, or -errno when the socket did not take it. */
  sendProtectedRtp(
    target: NativeSendTarget,
    header: Buffer,
    payload: Buffer,
    prefix: Buffer | undefined,
    rolloverCounter: number,
    fd: number,
  ): number;
  /** header | plaintext of an SRTP packet whose header is `headerLength` bytes; null when it does not authenticate. */
  unprotectRtp(
    session: NativeSrtpSession,
    packet: Buffer,
    headerLength: number,
    rolloverCounter: number,
  ): Buffer | null;
  /** The compound RTCP packet of an SRTCP packet; null when it does not authenticate or is too short. */
  unprotectRtcp(session: NativeSrtpSession, packet: Buffer): Buffer | null;
  /** An SRTCP packet (body encrypted) with the given index. */
  protectRtcp(session: NativeSrtpSession, packet: Buffer, srtcpIndex: number): Buffer;
  /**
   * A leg for {@link fanoutRtp}: `header` is its template (12 bytes and the MID extension, the fixed
   * fields written per packet), `state` the numbers it shares with JS (rtp-egress.ts' LEG_STATE).
   */
  fanoutLeg(
    session: NativeSrtpSession,
    destination: NativeUdpDestination,
    header: Buffer,
    state: Uint32Array,
  ): NativeFanoutLeg;
  /**
   * One packet to the first `count` legs (their numbers, the state's LEG_ID), each as its state says:
   * header, rollover counter, SRTP, sendto(2). Returns how many were not sent (their state's result
   * is -errno): the caller sends those. The caller keeps the legs' handles alive until it returns.
   * With the source packet's sequence number and timestamp (steady legs, SteadyLegs in rtp-egress.ts), each
   * leg's are those plus its state's offsets, and it counts what it sent in its state.
   */
  fanoutRtp(
    legs: Uint32Array,
    count: number,
    payload: Buffer,
    marker: boolean,
    sourceSequenceNumber?: number,
    sourceTimestamp?: number,
  ): number;
}

/**
 * media-node/native/build/srtp.node, seen from this module: from media-node/dist/ where the node runs
 * bundled (scripts/build-media-node.ts), from media-node/src/sfu/ where tests import the sources.
 */
const ADDON_PATH = [
  new URL('../native/build/srtp.node', import.meta.url),
  new URL('../../native/build/srtp.node', import.meta.url),
].find((candidate) => candidate.pathname.endsWith('/media-node/native/build/srtp.node'))!;

/**
 * The addon that `npm install` builds (scripts/build-native.ts), or undefined where it was not built
 * (no C compiler): the fast path then encrypts with node:crypto, slower and byte for byte the same.
 * Loaded once per thread; a file that exists and fails to load is an error, not a silent fallback.
 */
export const nativeSrtp: NativeSrtp | undefined = existsSync(ADDON_PATH)
  ? (createRequire(import.meta.url)(fileURLToPath(ADDON_PATH)) as NativeSrtp)
  : undefined;

/** Which SRTP implementation the forwarding fast path uses, for the startup log. */
export const srtpImplementation = nativeSrtp ? 'native addon (media-node/native)' : 'node:crypto (addon not built)';
