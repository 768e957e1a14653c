import {
  ProtectionProfileAeadAes128Gcm,
  RTCDtlsTransport,
  type SrtcpSession,
  SrtpAuthenticationError,
  type SrtpSession,
} from 'werift';
import { type NativeSrtp, nativeSrtp } from './native-srtp.ts';
import { RTP_HEADER_SIZE } from './rtp-egress.ts';

/**
 * werift's SRTP/SRTCP sessions on the native addon (media-node/native/srtp.c) for AES-128-GCM: what
 * the node receives (the publishers' media, every subscriber's RTCP) and the RTCP it sends. werift
 * decrypts with a `createDecipheriv` per packet and parses each RTP header twice (~40 % of the
 * receive path in a profile; RTCP receiver reports, ~2/s per subscriber, are most of what an idle
 * subscriber costs); the addon keeps one AES-GCM context per session key, set up once. The output is
 * werift's, byte for byte (test/media-node/srtp-sessions.test.ts on recorded packets), and werift's
 * rollover-counter and SRTCP index state stay werift's, kept the way it keeps them.
 *
 * The hook is werift 0.25's `RTCDtlsTransport.updateSrtpSession` (it makes the sessions once DTLS is
 * up) and the sessions' `decrypt`/`encrypt` functions; other profiles (AES-CM + HMAC-SHA1) and a
 * werift whose context has another shape keep werift's own code.
 */

const TAG_SIZE = 16;
/** werift's SRTCP index wrap (SrtcpContext.encryptRTCP). */
const MAX_SRTCP_INDEX = 2147483647;

/** The parts of werift's SRTP context (rtp/src/srtp/context) read here. */
interface ContextShape {
  profile: number;
  srtpSessionKey: Buffer;
  srtpSessionSalt: Buffer;
  srtcpSessionKey: Buffer;
  srtcpSessionSalt: Buffer;
  srtpSSRCStates: Record<number, RolloverState | undefined>;
  updateRolloverCount(sequenceNumber: number, state: RolloverState): void;
  getSrtcpSsrcState(ssrc: number): { srtcpIndex: number };
}

interface RolloverState {
  ssrc: number;
  rolloverCounter: number;
  lastSequenceNumber: number;
  rolloverHasProcessed?: boolean;
}

function hasContextShape(context: unknown): context is ContextShape {
  const shape = context as Partial<ContextShape> | undefined;
  return (
    shape?.profile === ProtectionProfileAeadAes128Gcm &&
    Buffer.isBuffer(shape.srtpSessionKey) &&
    Buffer.isBuffer(shape.srtpSessionSalt) &&
    Buffer.isBuffer(shape.srtcpSessionKey) &&
    Buffer.isBuffer(shape.srtcpSessionSalt) &&
    typeof shape.srtpSSRCStates === 'object' &&
    typeof shape.updateRolloverCount === 'function' &&
    typeof shape.getSrtcpSsrcState === 'function'
  );
}

/**
 * The length of the RTP header of an SRTP packet (RFC 3550: fixed part, CSRCs, extension), or -1
 * when it does not fit before the authentication tag: such a packet cannot authenticate.
 */
export function srtpHeaderLength(packet: Buffer): number {
  const end = packet.length - TAG_SIZE;
  if (end < RTP_HEADER_SIZE) return -1;
  let length = RTP_HEADER_SIZE + 4 * (packet[0]! & 0x0f);
  if (packet[0]! & 0x10) {
    if (length + 4 > end) return -1;
    length += 4 + 4 * packet.readUInt16BE(length + 2);
  }
  return length <= end ? length : -1;
}

/** With padding (the P bit), the last byte counts the padding: werift drops a packet whose count does not fit. */
function paddingFits(packet: Buffer, headerLength: number): boolean {
  if (!(packet[0]! & 0x20)) return true;
  const padding = packet[packet.length - 1]!;
  return packet.length > headerLength && padding > 0 && padding <= packet.length - headerLength;
}

/**
 * Makes `srtp` and `srtcp` (one DTLS transport's sessions) decrypt, and `srtcp` encrypt, through the
 * addon. False, and werift's own code kept, for another profile or an unexpected shape.
 */
export function useNativeSrtp(srtp: SrtpSession, srtcp: SrtcpSession, addon: NativeSrtp): boolean {
  // An addon built from an older srtp.c (a checkout that did not rerun `npm run build:native`) has no
  // receive side: werift keeps decrypting rather than every packet failing.
  if (typeof addon.unprotectRtp !== 'function' || typeof addon.unprotectRtcp !== 'function') return false;
  if (typeof addon.protectRtcp !== 'function') return false;
  const remote: unknown = srtp.remoteContext;
  const remoteRtcp: unknown = srtcp.remoteContext;
  const localRtcp: unknown = srtcp.localContext;
  if (!hasContextShape(remote) || !hasContextShape(remoteRtcp) || !hasContextShape(localRtcp)) return false;
  const rtpSession = addon.srtpSession(remote.srtpSessionKey, remote.srtpSessionSalt, true);
  const rtcpSession = addon.srtpSession(remoteRtcp.srtcpSessionKey, remoteRtcp.srtcpSessionSalt, true);
  const sendingRtcpSession = addon.srtpSession(localRtcp.srtcpSessionKey, localRtcp.srtcpSessionSalt);
  const states = remote.srtpSSRCStates;

  srtp.decrypt = (packet) => {
    const headerLength = srtpHeaderLength(packet);
    if (headerLength < 0) throw new SrtpAuthenticationError('Failed to authenticate SRTP packet');
    const ssrc = packet.readUInt32BE(8);
    // As werift: the rollover counter moves only when the packet authenticates.
    const known = states[ssrc];
    const state = known ?? { ssrc, rolloverCounter: 0, lastSequenceNumber: 0 };
    const { rolloverCounter, lastSequenceNumber, rolloverHasProcessed } = state;
    remote.updateRolloverCount(packet.readUInt16BE(2), state);
    const plain = addon.unprotectRtp(rtpSession, packet, headerLength, state.rolloverCounter >>> 0);
    if (!plain || !paddingFits(plain, headerLength)) {
      Object.assign(state, { rolloverCounter, lastSequenceNumber, rolloverHasProcessed });
      throw new SrtpAuthenticationError('Failed to authenticate SRTP packet');
    }
    if (!known) states[ssrc] = state;
    return plain;
  };
  srtcp.decrypt = (packet) => {
    const plain = addon.unprotectRtcp(rtcpSession, packet);
    if (!plain) throw new SrtpAuthenticationError('Failed to authenticate SRTCP packet');
    return plain;
  };
  srtcp.encrypt = (rtcp) => {
    const state = localRtcp.getSrtcpSsrcState(rtcp.readUInt32BE(4));
    state.srtcpIndex++;
    if (state.srtcpIndex >> MAX_SRTCP_INDEX) state.srtcpIndex = 0;
    return addon.protectRtcp(sendingRtcpSession, rtcp, state.srtcpIndex);
  };
  return true;
}

const installed = new WeakSet<object>();

/**
 * Every DTLS transport of this thread made from now on decrypts through the addon (AES-GCM
 * sessions). False when the addon is not built or werift has no `updateSrtpSession` to hook.
 */
export function installNativeSrtpSessions(addon: NativeSrtp | undefined = nativeSrtp): boolean {
  const prototype = RTCDtlsTransport.prototype as unknown as {
    updateSrtpSession?: (this: RTCDtlsTransport) => void;
  };
  const original = prototype.updateSrtpSession;
  if (!addon || typeof original !== 'function') return false;
  if (installed.has(prototype)) return true;
  installed.add(prototype);
  prototype.updateSrtpSession = function updateSrtpSession(this: RTCDtlsTransport) {
    original.call(this);
    useNativeSrtp(this.srtp, this.srtcp, addon);
  };
  return true;
}
