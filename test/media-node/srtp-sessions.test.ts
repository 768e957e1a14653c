import { createCipheriv } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ProtectionProfileAeadAes128Gcm,
  ProtectionProfileAes128CmHmacSha1_80,
  RTCPeerConnection,
  RtpHeader,
  RtpPacket,
  SrtcpSession,
  SrtpAuthenticationError,
  SrtpSession,
} from 'werift';
import { type NativeSrtp, nativeSrtp } from '../../media-node/src/sfu/native-srtp.ts';
import { installNativeSrtpSessions, srtpHeaderLength, useNativeSrtp } from '../../media-node/src/sfu/srtp-sessions.ts';
import { connectPeers, LOOPBACK_PEER_CONFIG, SequenceCoverage, waitFor } from '../support/werift-peers.ts';

/**
 * werift's SRTP/SRTCP sessions on the native addon (media-node/src/sfu/srtp-sessions.ts) against
 * werift's own code, on the packets recorded from werift's dummy publisher (fixtures/record-srtp.ts)
 * and on crafted ones: same plaintext, same drops, same rollover counter, same SRTCP output.
 */
const fixture = JSON.parse(readFileSync(new URL('./fixtures/recorded-srtp.json', import.meta.url), 'utf8')) as {
  keys: Record<'localMasterKey' | 'localMasterSalt' | 'remoteMasterKey' | 'remoteMasterSalt', string>;
  rtp: string[];
  rtcp: string[];
  stock: Record<'gcm' | 'ctr', { srtp: string[]; srtcp: string[] }>;
};
/** The recorded VP8 packets' payload type (werift's dummy publisher). */
const VP8_PAYLOAD_TYPE = 96;
const hex = (value: string) => Buffer.from(value, 'hex');
const local = {
  localMasterKey: hex(fixture.keys.localMasterKey),
  localMasterSalt: hex(fixture.keys.localMasterSalt),
  remoteMasterKey: hex(fixture.keys.remoteMasterKey),
  remoteMasterSalt: hex(fixture.keys.remoteMasterSalt),
};
/** The other side of the fixture's keys: what decrypts the recorded SRTP. */
const remote = {
  localMasterKey: local.remoteMasterKey,
  localMasterSalt: local.remoteMasterSalt,
  remoteMasterKey: local.localMasterKey,
  remoteMasterSalt: local.localMasterSalt,
};

function requireAddon(): NativeSrtp {
  if (!nativeSrtp) {
    throw new Error(
      'media-node/native/build/srtp.node is not built: run `npm run build:native` (npm install runs it; it needs gcc)',
    );
  }
  return nativeSrtp;
}

/** werift's sessions for `keys`, and the same on the addon. */
function sessionPairs(keys: typeof local, profile: number = ProtectionProfileAeadAes128Gcm) {
  const werift = { srtp: new SrtpSession({ keys, profile }), srtcp: new SrtcpSession({ keys, profile }) };
  const native = { srtp: new SrtpSession({ keys, profile }), srtcp: new SrtcpSession({ keys, profile }) };
  const used = useNativeSrtp(native.srtp, native.srtcp, requireAddon());
  return { werift, native, used };
}

/** What `decrypt` gives: the plaintext's hex, or the error's class name. */
function outcome(decrypt: (packet: Buffer) => Buffer, packet: Buffer): string {
  try {
    return decrypt(packet).toString('hex');
  } catch (error) {
    return error instanceof SrtpAuthenticationError ? 'SrtpAuthenticationError' : String(error);
  }
}

/** A recorded packet re-encrypted by werift with another sequence number (and optional CSRCs/padding bit). */
function encryptedWith(srtp: SrtpSession, index: number, sequenceNumber: number, change?: (header: RtpHeader) => void) {
  const packet = hex(fixture.rtp[index]!);
  const header = RtpHeader.deSerialize(packet);
  header.sequenceNumber = sequenceNumber;
  change?.(header);
  return srtp.encrypt(packet.subarray(header.payloadOffset), header);
}

describe('native SRTP sessions (srtp-sessions.ts)', () => {
  it('decrypts the recorded SRTP and SRTCP byte for byte as werift does', () => {
    const { werift, native, used } = sessionPairs(remote);
    expect(used).toBe(true);
    fixture.stock.gcm.srtp.forEach((packet, index) => {
      expect(native.srtp.decrypt(hex(packet)).toString('hex')).toBe(werift.srtp.decrypt(hex(packet)).toString('hex'));
      expect(native.srtp.decrypt(hex(packet)).toString('hex')).toBe(fixture.rtp[index]);
    });
    fixture.stock.gcm.srtcp.forEach((packet, index) => {
      expect(native.srtcp.decrypt(hex(packet)).toString('hex')).toBe(werift.srtcp.decrypt(hex(packet)).toString('hex'));
      expect(native.srtcp.decrypt(hex(packet)).toString('hex')).toBe(fixture.rtcp[index]);
    });
  });

  it('encrypts SRTCP byte for byte as stock werift did, index by index', () => {
    const { native } = sessionPairs(local);
    fixture.rtcp.forEach((packet, index) => {
      expect(native.srtcp.encrypt(hex(packet)).toString('hex')).toBe(fixture.stock.gcm.srtcp[index]);
    });
  });

  it('keeps the rollover counter as werift does across a sequence wrap, out of order and after forgeries', () => {
    const sender = new SrtpSession({ keys: local, profile: ProtectionProfileAeadAes128Gcm });
    const packets = [65_530, 65_534, 65_535, 0, 65_533, 1, 2, 40_000, 3].map((sequenceNumber, index) =>
      encryptedWith(sender, index, sequenceNumber),
    );
    const forged = Buffer.from(packets[3]!);
    forged[forged.length - 1]! ^= 1;
    const { werift, native } = sessionPairs(remote);
    for (const packet of [packets[0]!, packets[1]!, packets[2]!, forged, ...packets.slice(3)]) {
      expect(outcome(native.srtp.decrypt, packet)).toBe(outcome(werift.srtp.decrypt, packet));
    }
    expect(native.srtp.remoteContext.srtpSSRCStates).toEqual(werift.srtp.remoteContext.srtpSSRCStates);
  });

  it('drops what werift drops: forged, truncated, bad header lengths and bad padding', () => {
    const sender = new SrtpSession({ keys: local, profile: ProtectionProfileAeadAes128Gcm });
    const withCsrcs = encryptedWith(sender, 1, 100, (header) => {
      header.csrc = [1, 2];
      header.csrcLength = 2;
    });
    // The P bit set over a payload whose last byte is 0: werift's padding check drops it after decryption.
    const badPadding = encryptedWith(sender, 2, 101, (header) => {
      header.padding = true;
    });
    const recorded = hex(fixture.stock.gcm.srtp[5]!);
    const cases: Buffer[] = [
      withCsrcs,
      badPadding,
      recorded.subarray(0, 27),
      recorded.subarray(0, 12 + 16),
      Buffer.concat([recorded.subarray(0, 1), Buffer.from([recorded[1]! ^ 0x80]), recorded.subarray(2)]),
      // Extension length far beyond the packet.
      Buffer.concat([
        Buffer.from([0x90]),
        recorded.subarray(1, 12),
        Buffer.from([0xbe, 0xde, 0x01, 0x00]),
        recorded.subarray(12),
      ]),
      // Fifteen CSRCs in a short packet.
      Buffer.concat([Buffer.from([0x8f]), recorded.subarray(1, 40)]),
    ];
    const { werift, native } = sessionPairs(remote);
    const outcomes = cases.map((packet) => [
      outcome(native.srtp.decrypt, packet),
      outcome(werift.srtp.decrypt, packet),
    ]);
    for (const [nativeOutcome, weriftOutcome] of outcomes) expect(nativeOutcome).toBe(weriftOutcome);
    expect(outcomes[0]![0]).not.toBe('SrtpAuthenticationError');
    expect(outcomes.slice(1).every(([nativeOutcome]) => nativeOutcome === 'SrtpAuthenticationError')).toBe(true);

    const srtcp = hex(fixture.stock.gcm.srtcp[0]!);
    const forgedRtcp = Buffer.from(srtcp);
    forgedRtcp[10]! ^= 1;
    for (const packet of [forgedRtcp, srtcp.subarray(0, 27), srtcp.subarray(0, 8)]) {
      expect(outcome(native.srtcp.decrypt, packet)).toBe('SrtpAuthenticationError');
      expect(outcome(werift.srtcp.decrypt, packet)).toBe('SrtpAuthenticationError');
    }
  });

  it('reads unencrypted SRTCP (E flag clear, RFC 7714 §9) as werift does', () => {
    // Sent in the clear, authenticated: AAD = the whole packet and the index word, no ciphertext.
    const context = new SrtcpSession({ keys: local, profile: ProtectionProfileAeadAes128Gcm })
      .localContext as unknown as {
      srtcpSessionKey: Buffer;
      srtcpSessionSalt: Buffer;
    };
    const rtcp = hex(fixture.rtcp[0]!);
    const index = Buffer.from([0, 0, 0, 7]);
    const iv = Buffer.concat([Buffer.alloc(2), rtcp.subarray(4, 8), Buffer.alloc(2), index]);
    for (let position = 0; position < 12; position++) iv[position]! ^= context.srtcpSessionSalt[position]!;
    const cipher = createCipheriv('aes-128-gcm', context.srtcpSessionKey, iv);
    cipher.setAAD(Buffer.concat([rtcp, index]));
    cipher.final();
    const packet = Buffer.concat([rtcp, cipher.getAuthTag(), index]);
    const { werift, native } = sessionPairs(remote);
    expect(native.srtcp.decrypt(packet).toString('hex')).toBe(rtcp.toString('hex'));
    expect(werift.srtcp.decrypt(packet).toString('hex')).toBe(rtcp.toString('hex'));
  });

  it('leaves the sessions to werift with an addon built before it could decrypt', () => {
    const addon = requireAddon();
    const encryptOnly = {
      srtpSession: (...args) => addon.srtpSession(...args),
      udpDestination: (...args) => addon.udpDestination(...args),
      protectRtp: (...args) => addon.protectRtp(...args),
      sendTarget: (...args) => addon.sendTarget(...args),
      sendProtectedRtp: (...args) => addon.sendProtectedRtp(...args),
    } as Partial<NativeSrtp> as NativeSrtp;
    const srtp = new SrtpSession({ keys: remote, profile: ProtectionProfileAeadAes128Gcm });
    const srtcp = new SrtcpSession({ keys: remote, profile: ProtectionProfileAeadAes128Gcm });
    expect(useNativeSrtp(srtp, srtcp, encryptOnly)).toBe(false);
    expect(srtp.decrypt(hex(fixture.stock.gcm.srtp[0]!)).toString('hex')).toBe(fixture.rtp[0]);
  });

  it('leaves AES-CM sessions to werift', () => {
    const { used, native, werift } = sessionPairs(remote, ProtectionProfileAes128CmHmacSha1_80);
    expect(used).toBe(false);
    const packet = hex(fixture.stock.ctr.srtp[0]!);
    expect(native.srtp.decrypt(packet).toString('hex')).toBe(werift.srtp.decrypt(packet).toString('hex'));
  });

  it('measures RTP header lengths as RFC 3550 does', () => {
    const packet = (first: number, extensionWords = 0, size = 64) => {
      const buffer = Buffer.alloc(size);
      buffer[0] = first;
      buffer.writeUInt16BE(extensionWords, 14 + 4 * (first & 0x0f));
      return buffer;
    };
    expect(srtpHeaderLength(packet(0x80))).toBe(12);
    expect(srtpHeaderLength(packet(0x82))).toBe(20);
    expect(srtpHeaderLength(packet(0x90, 2))).toBe(24);
    expect(srtpHeaderLength(packet(0x91, 1))).toBe(24);
    expect(srtpHeaderLength(packet(0x90, 20))).toBe(-1);
    expect(srtpHeaderLength(Buffer.alloc(27, 0x80))).toBe(-1);
  });
});

describe('installNativeSrtpSessions (the hook in werift)', () => {
  const peers: RTCPeerConnection[] = [];
  afterEach(async () => {
    await Promise.all(peers.splice(0).map((peer) => peer.close()));
  });

  it("makes every new DTLS transport's SRTP go through the addon: media and RTCP flow both ways", async () => {
    const addon = requireAddon();
    const calls = { unprotectRtp: 0, unprotectRtcp: 0, protectRtcp: 0 };
    // The addon's functions are not enumerable: each is named.
    const counting: NativeSrtp = {
      legStateSlots: addon.legStateSlots,
      srtpSession: (...args) => addon.srtpSession(...args),
      udpDestination: (...args) => addon.udpDestination(...args),
      protectRtp: (...args) => addon.protectRtp(...args),
      sendTarget: (...args) => addon.sendTarget(...args),
      sendProtectedRtp: (...args) => addon.sendProtectedRtp(...args),
      fanoutLeg: (...args) => addon.fanoutLeg(...args),
      fanoutRtp: (...args) => addon.fanoutRtp(...args),
      unprotectRtp: (...args) => {
        calls.unprotectRtp++;
        return addon.unprotectRtp(...args);
      },
      unprotectRtcp: (...args) => {
        calls.unprotectRtcp++;
        return addon.unprotectRtcp(...args);
      },
      protectRtcp: (...args) => {
        calls.protectRtcp++;
        return addon.protectRtcp(...args);
      },
    };
    expect(installNativeSrtpSessions(counting)).toBe(true);
    const sender = new RTCPeerConnection(LOOPBACK_PEER_CONFIG);
    const receiver = new RTCPeerConnection(LOOPBACK_PEER_CONFIG);
    peers.push(sender, receiver);
    const transceiver = sender.addTransceiver('video', { direction: 'sendonly' });
    const received = new SequenceCoverage();
    let packets = 0;
    receiver.ontrack = ({ track }) => {
      track.onReceiveRtp.subscribe((packet) => {
        packets++;
        received.add(packet.header.sequenceNumber);
      });
    };
    await connectPeers(sender, receiver);
    // The recorded video packets (one SSRC, one sequence).
    const video = fixture.rtp.map((packet) => RtpPacket.deSerialize(hex(packet)));
    const videoSsrc = video.find((packet) => packet.header.payloadType === VP8_PAYLOAD_TYPE)!.header.ssrc;
    const sent = video.filter((packet) => packet.header.ssrc === videoSsrc);
    for (const packet of sent) await transceiver.sender.sendRtp(packet);
    // The receiver's reports and the sender's reports cross (each about once a second).
    await waitFor(() => packets === sent.length && calls.unprotectRtcp >= 2 && calls.protectRtcp >= 2, {
      timeoutMs: 10_000,
      message: `media and RTCP through the addon (${packets} packets, ${JSON.stringify(calls)})`,
    });
    expect(calls.unprotectRtp).toBe(sent.length);
    expect(received.missing()).toBe(0);
  });
});
