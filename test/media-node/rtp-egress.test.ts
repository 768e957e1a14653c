import { createHook } from 'node:async_hooks';
import { createCipheriv, KeyObject } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  Connection,
  Event,
  GenericNack,
  MediaStream,
  MediaStreamTrack,
  ProtectionProfileAeadAes128Gcm,
  ProtectionProfileAes128CmHmacSha1_80,
  RTCPeerConnection,
  RTCRtpCodecParameters,
  RTCRtpSender,
  RTP_EXTENSION_URI,
  RtcpPacketConverter,
  RtcpSenderInfo,
  RtcpSourceDescriptionPacket,
  RtcpSrPacket,
  RtcpTransportLayerFeedback,
  RtpPacket,
  SourceDescriptionChunk,
  SourceDescriptionItem,
  SrtcpSession,
  SrtpSession,
  UdpTransport,
} from 'werift';
import { PACKET_OVERHEAD_BYTES } from '../../media-node/src/sfu/bitrate.ts';
import { ForwardedTrack } from '../../media-node/src/sfu/forwarded-track.ts';
import { createForwardingStats } from '../../media-node/src/sfu/forwarding-stats.ts';
import { type NativeSrtp, nativeSrtp } from '../../media-node/src/sfu/native-srtp.ts';
import {
  type DatagramRoute,
  directSocket,
  EgressLeg,
  FanoutBatch,
  LEG_STATE,
  type PayloadPrefixRewriter,
  type SenderBookkeeping,
  SrtpProtector,
  SteadyLegs,
} from '../../media-node/src/sfu/rtp-egress.ts';
import { ntpTimeOf, SenderReportClock, senderReportBytes } from '../../media-node/src/sfu/sender-reports.ts';
import type { Logger } from '../../shared/src/log.ts';
import { waitFor } from '../support/werift-peers.ts';
import { silentLogger, vp8Source } from './source-tracks.ts';

/**
 * The forwarding fast path against werift's own implementation, on RTP recorded from werift's
 * dummy publisher (fixtures/record-srtp.ts): same bytes on the wire, for both SRTP profiles, for
 * forwarded packets and for NACK answers (RTX). And the werift patch (patches/) checked against the
 * output of stock werift on the same packets.
 */
const fixture = JSON.parse(readFileSync(new URL('./fixtures/recorded-srtp.json', import.meta.url), 'utf8')) as {
  keys: Record<'localMasterKey' | 'localMasterSalt' | 'remoteMasterKey' | 'remoteMasterSalt', string>;
  rtp: string[];
  rtcp: string[];
  stock: Record<'gcm' | 'ctr', { srtp: string[]; srtcp: string[] }>;
};
const keys = Object.fromEntries(Object.entries(fixture.keys).map(([name, hex]) => [name, Buffer.from(hex, 'hex')])) as {
  localMasterKey: Buffer;
  localMasterSalt: Buffer;
  remoteMasterKey: Buffer;
  remoteMasterSalt: Buffer;
};
const PROFILES = { gcm: ProtectionProfileAeadAes128Gcm, ctr: ProtectionProfileAes128CmHmacSha1_80 } as const;
const VP8 = new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: 90_000, payloadType: 96 });
const RTX = new RTCRtpCodecParameters({
  mimeType: 'video/rtx',
  clockRate: 90_000,
  payloadType: 97,
  parameters: 'apt=96',
});

/** Recorded packets as the source track hands them on: incoming header extensions removed. */
function sourcePackets(): RtpPacket[] {
  return fixture.rtp.map((hex) => {
    const packet = RtpPacket.deSerialize(Buffer.from(hex, 'hex'));
    packet.header.extensions = [];
    packet.header.extension = false;
    return packet;
  });
}

/** A werift sender negotiated as the node's egress m-lines are (MID extension, VP8 + RTX), on a fake transport. */
function weriftSender(profile: number, sent: Buffer[]) {
  const srtp = new SrtpSession({ keys, profile });
  const srtcp = new SrtcpSession({ keys, profile });
  const transport = {
    state: 'connected',
    srtp,
    srtcp,
    transportSequenceNumber: 0,
    bytesSent: 0,
    packetsSent: 0,
    onStateChange: new Event(),
    sendRtp: async (payload: Buffer, header: RtpPacket['header']) => {
      const encrypted = srtp.encrypt(payload, header);
      sent.push(encrypted);
      return encrypted.length;
    },
    sendRtcp: async (packets: { serialize(): Buffer }[]) => {
      sent.push(srtcp.encrypt(Buffer.concat(packets.map((packet) => packet.serialize()))));
    },
  };
  const sender = new RTCRtpSender(new MediaStreamTrack({ kind: 'video' }));
  negotiateAsEgress(sender, transport);
  const internals = sender as unknown as SenderBookkeeping & { lastSRtimestamp?: number };
  return { sender: internals, werift: sender, transport };
}

/** Puts `sender` on `transport`, negotiated as the node's egress m-lines are (MID extension, VP8 + RTX). */
function negotiateAsEgress(sender: RTCRtpSender, transport: object): void {
  sender.setDtlsTransport(transport as never);
  sender.prepareSend({
    muxId: '3',
    headerExtensions: [{ id: 4, uri: RTP_EXTENSION_URI.sdesMid }],
    codecs: [VP8, RTX],
    rtcp: { cname: 'truegather', ssrcs: [], mux: true },
  } as never);
}

/**
 * The addon that `npm install` builds (scripts/build-native.ts). Its tests fail, not skip, without it:
 * a machine whose install could not build it (no C compiler) runs the node on the slower JS path.
 */
function requireAddon(): NativeSrtp {
  if (!nativeSrtp) {
    throw new Error(
      'media-node/native/build/srtp.node is not built: run `npm run build:native` (npm install runs it; it needs gcc)',
    );
  }
  return nativeSrtp;
}

/** Both SRTP implementations of the fast path: the native addon and node:crypto. */
const IMPLEMENTATIONS = {
  native: () => requireAddon(),
  'node:crypto': () => undefined,
} as const;

/** A route's sendability that never changes. */
function alwaysSendable(listener: (sendable: boolean) => void): () => void {
  listener(true);
  return () => {};
}

/** A route that collects datagrams instead of sending them. */
function collectingRoute(sent: Buffer[]): DatagramRoute {
  return {
    watchSendable: alwaysSendable,
    send: (parts) => sent.push(Buffer.concat(parts)),
    direct: undefined,
    counters: { packetsSent: 0, bytesSent: 0 },
  };
}

/** The same negotiation on the fast path: its datagrams collected instead of sent. */
function fastPath(profile: number, sent: Buffer[], addon: NativeSrtp | undefined = undefined) {
  const { sender, werift, transport } = weriftSender(profile, []);
  const protector = SrtpProtector.fromSender(werift, addon)!;
  const leg = new EgressLeg(sender, protector, collectingRoute(sent), transport);
  return { sender, werift, leg, transport, protector };
}

/** A socket to send from and a receiver collecting what arrives, both bound on 127.0.0.1. */
async function loopbackPair() {
  const receiver = createSocket('udp4');
  const socket = createSocket('udp4');
  await Promise.all(
    [receiver, socket].map((bound) => new Promise((resolve) => bound.bind(0, '127.0.0.1', () => resolve(undefined)))),
  );
  const received: Buffer[] = [];
  receiver.on('message', (datagram) => received.push(datagram));
  return { socket, receiver, received, port: receiver.address().port };
}

/** The remote side of the fixture's keys: decrypts what the fast path sends. */
function remoteSession(profile: number) {
  return new SrtpSession({
    keys: {
      localMasterKey: keys.remoteMasterKey,
      localMasterSalt: keys.remoteMasterSalt,
      remoteMasterKey: keys.localMasterKey,
      remoteMasterSalt: keys.localMasterSalt,
    },
    profile,
  });
}

describe('werift patch (patches/werift+*.patch)', () => {
  it('sends datagrams to IP literals without a DNS lookup once bound, and still resolves names', async () => {
    const receiver = await UdpTransport.init('udp4', { interfaceAddresses: { udp4: '127.0.0.1' } });
    const sender = await UdpTransport.init('udp4', { interfaceAddresses: { udp4: '127.0.0.1' } });
    try {
      expect((sender as unknown as { listening: boolean }).listening).toBe(true);
      const received: string[] = [];
      receiver.onData = (data) => received.push(data.toString());
      const port = receiver.address.port;
      let lookedUp: unknown[] = [];
      // The socket's lookup is werift's: with the patch it answers an IP literal synchronously.
      const lookup = (
        sender.socket as unknown as Record<
          symbol,
          { handle: { lookup: (address: string, callback: (...result: unknown[]) => void) => void } }
        >
      )[Object.getOwnPropertySymbols(sender.socket).find((symbol) => symbol.description === 'state symbol')!]!.handle
        .lookup;
      lookup('127.0.0.1', (...result: unknown[]) => {
        lookedUp = result;
      });
      expect(lookedUp).toEqual([null, '127.0.0.1', 4]);
      await sender.send(Buffer.from('literal'), ['127.0.0.1', port]);
      await sender.send(Buffer.from('name'), ['localhost', port]);
      await waitFor(() => received.length === 2, { message: 'both datagrams' });
      expect(received.sort()).toEqual(['literal', 'name']);
    } finally {
      await Promise.all([sender.close(), receiver.close()]);
    }
  });

  it('holds SRTP session keys as KeyObjects, imported once', () => {
    for (const profile of Object.values(PROFILES)) {
      const session = new SrtpSession({ keys, profile });
      const cipher = session.localContext.cipher as unknown as Record<string, unknown>;
      expect(cipher.srtpSessionKey).toBeInstanceOf(KeyObject);
      expect(cipher.srtcpSessionKey).toBeInstanceOf(KeyObject);
    }
  });

  it('creates no promise per Event.execute when nobody awaits', () => {
    const event = new Event<[number]>();
    const seen: number[] = [];
    event.subscribe((value) => seen.push(value));
    let promises = 0;
    const hook = createHook({
      init: (_id, type) => {
        if (type === 'PROMISE') promises++;
      },
    }).enable();
    try {
      event.execute(1);
    } finally {
      hook.disable();
    }
    expect(seen).toEqual([1]);
    expect(promises).toBe(0);
  });

  for (const [name, profile] of Object.entries(PROFILES)) {
    it(`encrypts SRTP and SRTCP (${name}) byte for byte as stock werift did on the recorded packets`, () => {
      const srtp = new SrtpSession({ keys, profile });
      const srtcp = new SrtcpSession({ keys, profile });
      const stock = fixture.stock[name as 'gcm' | 'ctr'];
      fixture.rtp.forEach((hex, index) => {
        const packet = RtpPacket.deSerialize(Buffer.from(hex, 'hex'));
        expect(srtp.encrypt(packet.payload, packet.header).toString('hex')).toBe(stock.srtp[index]);
      });
      fixture.rtcp.forEach((hex, index) => {
        expect(srtcp.encrypt(Buffer.from(hex, 'hex')).toString('hex')).toBe(stock.srtcp[index]);
      });
      // And the other side reads it back.
      const remote = remoteSession(profile);
      expect(remote.decrypt(Buffer.from(stock.srtp[0]!, 'hex')).toString('hex')).toBe(fixture.rtp[0]);
    });
  }
});

describe('forwarding fast path (EgressLeg)', () => {
  for (const [implementation, addon] of Object.entries(IMPLEMENTATIONS))
    for (const [name, profile] of Object.entries(PROFILES)) {
      it(`sends what werift's RTCRtpSender sends, byte for byte (${name}, ${implementation}), packets and RTX answers to NACK`, async () => {
        const expected: Buffer[] = [];
        const actual: Buffer[] = [];
        const stock = weriftSender(profile, expected);
        const fast = fastPath(profile, actual, addon());
        expect(fast.protector.native).toBe(implementation === 'native' && name === 'gcm');
        // Same SSRCs, offsets and RTX sequence on both legs.
        for (const field of ['ssrc', 'rtxSsrc', 'rtxSequenceNumber'] as const) fast.sender[field] = stock.sender[field];
        stock.sender.seqOffset = 1_000;
        fast.sender.seqOffset = 1_000;
        const history = new Map<number, RtpPacket>();
        for (const packet of sourcePackets()) {
          history.set(packet.header.sequenceNumber, packet);
          await stock.werift.sendRtp(packet);
          fast.leg.forward(packet, 0);
        }
        expect(actual.length).toBe(fixture.rtp.length);
        expect(actual.map((b) => b.toString('hex'))).toEqual(expected.map((b) => b.toString('hex')));
        // The leg counts on itself and brings werift's counters up to date when they are read.
        fast.leg.syncSender();
        expect({ packets: fast.sender.packetCount, octets: fast.sender.octetCount }).toEqual({
          packets: stock.sender.packetCount,
          octets: stock.sender.octetCount,
        });

        // A NACK for three forwarded packets (leg sequence numbers): werift answers from its history,
        // the fast path from the source's.
        const lost = [...history.keys()].slice(-10, -7).map((sequenceNumber) => (sequenceNumber + 1_000) & 0xffff);
        expected.length = 0;
        actual.length = 0;
        stock.werift.handleRtcpPacket(
          new RtcpTransportLayerFeedback({
            feedback: new GenericNack({ senderSsrc: 1, mediaSourceSsrc: stock.sender.ssrc, lost }),
          }),
        );
        await new Promise((resolve) => setImmediate(resolve));
        for (const sequenceNumber of lost) {
          expect(fast.leg.retransmit(sequenceNumber, (source) => history.get(source))).toBe(true);
        }
        expect(actual.length).toBe(3);
        expect(actual.map((b) => b.toString('hex'))).toEqual(expected.map((b) => b.toString('hex')));
        expect(fast.leg.retransmit((lost[0]! + 30_000) & 0xffff, (source) => history.get(source))).toBe(false);
      });
    }

  for (const [implementation, addon] of Object.entries(IMPLEMENTATIONS)) {
    it(`sends on a real UDP socket what werift sends, across a sequence-number wrap and with payload prefixes (${implementation})`, async () => {
      const { socket, receiver, received, port } = await loopbackPair();
      try {
        const native = addon();
        const expected: Buffer[] = [];
        const stock = weriftSender(ProtectionProfileAeadAes128Gcm, expected);
        const { sender, werift, transport } = weriftSender(ProtectionProfileAeadAes128Gcm, []);
        const protector = SrtpProtector.fromSender(werift, native)!;
        const route: DatagramRoute = {
          watchSendable: alwaysSendable,
          send: (parts) => socket.send(parts, port, '127.0.0.1'),
          direct: native ? directSocket(socket, '127.0.0.1', port, native) : undefined,
          counters: { packetsSent: 0, bytesSent: 0 },
        };
        expect(route.direct !== undefined).toBe(implementation === 'native');
        const leg = new EgressLeg(sender, protector, route, transport);
        // The VP8 picture ID rewrite after a layer switch, stood in for by a deterministic rewrite of
        // every other packet's first bytes.
        const rewrite = (payload: Buffer) =>
          payload.length % 2 === 0 ? Buffer.from(payload.subarray(0, 4).map((byte) => byte ^ 0x5a)) : undefined;
        leg.payloadRewriter = { prefixFor: rewrite } satisfies PayloadPrefixRewriter;
        const packets = sourcePackets();
        sender.ssrc = stock.sender.ssrc;
        // The leg's sequence numbers wrap halfway: the rollover counter moves to 1 for the second half.
        const offset = (0x10000 - packets.length / 2 - packets[0]!.header.sequenceNumber) & 0xffff;
        stock.sender.seqOffset = offset;
        sender.seqOffset = offset;
        for (const packet of packets) {
          const prefix = rewrite(packet.payload);
          const rewritten = packet.clone();
          if (prefix) rewritten.payload = Buffer.concat([prefix, packet.payload.subarray(prefix.length)]);
          await stock.werift.sendRtp(rewritten);
          leg.forward(packet, 0);
        }
        await waitFor(() => received.length === packets.length, { message: 'every datagram' });
        expect(received.map((b) => b.toString('hex'))).toEqual(expected.map((b) => b.toString('hex')));
        const bytes = received.reduce((sum, datagram) => sum + datagram.length, 0);
        leg.syncSender();
        expect(route.counters).toEqual({ packetsSent: packets.length, bytesSent: bytes });
        expect({ packets: transport.packetsSent, bytes: transport.bytesSent }).toEqual({
          packets: packets.length,
          bytes,
        });
      } finally {
        socket.close();
        receiver.close();
      }
    });
  }

  it('sends a datagram too large for the addon through dgram, the same bytes as werift', async () => {
    const addon = requireAddon();
    const { socket, receiver, received, port } = await loopbackPair();
    try {
      const expected: Buffer[] = [];
      const stock = weriftSender(ProtectionProfileAeadAes128Gcm, expected);
      const { sender, werift, transport } = weriftSender(ProtectionProfileAeadAes128Gcm, []);
      const dgramSends: number[] = [];
      const route: DatagramRoute = {
        watchSendable: alwaysSendable,
        send: (parts) => {
          dgramSends.push(parts.length);
          socket.send(parts, port, '127.0.0.1');
        },
        direct: directSocket(socket, '127.0.0.1', port, addon),
        counters: { packetsSent: 0, bytesSent: 0 },
      };
      const leg = new EgressLeg(sender, SrtpProtector.fromSender(werift, addon)!, route, transport);
      sender.ssrc = stock.sender.ssrc;
      const large = sourcePackets()[0]!.clone();
      large.payload = Buffer.concat([large.payload, Buffer.alloc(3_000, 7)]);
      await stock.werift.sendRtp(large);
      leg.forward(large, 0);
      await waitFor(() => received.length === 1, { message: 'the large datagram' });
      expect(dgramSends).toEqual([1]);
      expect(received[0]!.toString('hex')).toBe(expected[0]!.toString('hex'));
    } finally {
      socket.close();
      receiver.close();
    }
  });

  it('leaves to dgram a socket the addon cannot send on: not bound yet, or a remote that is not an IP literal', async () => {
    const addon = requireAddon();
    const socket = createSocket('udp4');
    try {
      expect(directSocket(socket, '127.0.0.1', 9, addon)).toBeUndefined();
      await new Promise((resolve) => socket.bind(0, '127.0.0.1', () => resolve(undefined)));
      expect(directSocket(socket, 'localhost', 9, addon)).toBeUndefined();
      expect(directSocket(socket, '127.0.0.1', 9, addon)?.fd).toBeGreaterThan(0);
    } finally {
      socket.close();
    }
  });

  it('keeps sequence numbers continuous under reordering and loss: the leg maps, never renumbers', () => {
    const sent: Buffer[] = [];
    const { sender, leg } = fastPath(ProtectionProfileAeadAes128Gcm, sent, requireAddon());
    sender.seqOffset = 65_530; // the leg's numbering wraps within the run
    const template = sourcePackets()[0]!;
    // 1..12 with 5 lost and 8/9 swapped, and a wrap of the source numbering too.
    const order = [65_533, 65_534, 65_535, 0, 1, 3, 4, 6, 5, 7, 10, 11];
    for (const sequenceNumber of order) {
      const packet = template.clone();
      packet.header.sequenceNumber = sequenceNumber;
      leg.forward(packet, 0);
    }
    const remote = remoteSession(ProtectionProfileAeadAes128Gcm);
    const received = sent.map((datagram) => RtpPacket.deSerialize(remote.decrypt(datagram)).header.sequenceNumber);
    expect(received).toEqual(order.map((sequenceNumber) => (sequenceNumber + 65_530) & 0xffff));
    // Gaps and swaps are the source's, one for one: the subscriber's NACKs name the right packets.
    const steps = (values: number[]) =>
      values.slice(1).map((value, index) => (value - values[index]! + 0x10000) & 0xffff);
    expect(steps(received)).toEqual(steps(order));
  });

  for (const [implementation, addon] of Object.entries(IMPLEMENTATIONS)) {
    it(`keeps each SSRC's rollover counter when RTX answers interleave with packets across a wrap (${implementation})`, () => {
      const sent: Buffer[] = [];
      const { sender, leg } = fastPath(ProtectionProfileAeadAes128Gcm, sent, addon());
      // The media numbering wraps (rollover counter 1) while RTX stays in its first cycle: a state
      // cached for one SSRC used for the other would give the wrong IV, and the remote could not decrypt.
      sender.seqOffset = 65_533;
      sender.rtxSequenceNumber = 100;
      const history = new Map<number, RtpPacket>();
      const template = sourcePackets()[0]!;
      const expected: number[] = [];
      for (let sequenceNumber = 0; sequenceNumber < 8; sequenceNumber++) {
        const packet = template.clone();
        packet.header.sequenceNumber = sequenceNumber;
        history.set(sequenceNumber, packet);
        leg.forward(packet, 0);
        expected.push(sender.ssrc);
        if (sequenceNumber > 0) {
          expect(leg.retransmit((sequenceNumber - 1 + 65_533) & 0xffff, (source) => history.get(source))).toBe(true);
          expected.push(sender.rtxSsrc);
        }
      }
      const remote = remoteSession(ProtectionProfileAeadAes128Gcm);
      const received = sent.map((datagram) => RtpPacket.deSerialize(remote.decrypt(datagram)).header);
      expect(received.map((header) => header.ssrc)).toEqual(expected);
      expect(
        received.filter((header) => header.ssrc === sender.rtxSsrc).map((header) => header.sequenceNumber),
      ).toEqual([100, 101, 102, 103, 104, 105, 106]);
    });
  }

  it("takes the IV's SSRC and sequence number from the header, and refuses what it cannot seal", () => {
    const addon = requireAddon();
    const key = Buffer.alloc(16, 1);
    const salt = Buffer.alloc(12, 2);
    const session = addon.srtpSession(key, salt);
    const header = Buffer.from('80600102aabbccdd11223344', 'hex');
    const payload = Buffer.from('payload');
    const sealed = addon.protectRtp(session, header, payload, undefined, 3);
    // RFC 7714: IV = salt XOR (00 00 | SSRC | ROC | SEQ), the header as AAD.
    const iv = Buffer.from('00001122334400000003' + '0102', 'hex').map((byte, index) => byte ^ salt[index]!);
    const cipher = createCipheriv('aes-128-gcm', key, iv);
    cipher.setAAD(header);
    const ciphertext = Buffer.concat([cipher.update(payload), cipher.final(), cipher.getAuthTag()]);
    expect(sealed.toString('hex')).toBe(Buffer.concat([header, ciphertext]).toString('hex'));
    expect(() => addon.protectRtp(session, header.subarray(0, 11), payload, undefined, 0)).toThrow(/12 bytes/);
    const destination = addon.udpDestination('127.0.0.1', 9);
    const decrypting = addon.srtpSession(key, salt, true);
    expect(() => addon.sendTarget(decrypting, destination)).toThrow(/encrypting session/);
    expect(() =>
      addon.sendProtectedRtp(addon.sendTarget(session, destination), header.subarray(0, 8), payload, undefined, 0, 1),
    ).toThrow(/12 bytes/);
  });
});

/** A fast-path leg on a real loopback socket pair, beside a werift sender with the same SSRC and offsets. */
async function socketLeg(addon: NativeSrtp, seqOffset: number, timestampOffset: number) {
  const pair = await loopbackPair();
  const expected: Buffer[] = [];
  const stock = weriftSender(ProtectionProfileAeadAes128Gcm, expected);
  const { sender, werift, transport } = weriftSender(ProtectionProfileAeadAes128Gcm, []);
  let setSendable: (sendable: boolean) => void = () => {};
  const dgramSends: number[] = [];
  const route: DatagramRoute = {
    watchSendable: (listener) => {
      setSendable = listener;
      listener(true);
      return () => {};
    },
    send: (parts) => {
      dgramSends.push(parts.length);
      pair.socket.send(parts, pair.port, '127.0.0.1');
    },
    direct: directSocket(pair.socket, '127.0.0.1', pair.port, addon),
    counters: { packetsSent: 0, bytesSent: 0 },
  };
  const leg = new EgressLeg(sender, SrtpProtector.fromSender(werift, addon)!, route, transport);
  sender.ssrc = stock.sender.ssrc;
  for (const side of [sender, stock.sender]) {
    side.seqOffset = seqOffset;
    side.timestampOffset = timestampOffset;
  }
  return {
    ...pair,
    expected,
    stock,
    sender,
    werift,
    transport,
    route,
    leg,
    dgramSends,
    setSending: (value: boolean) => setSendable(value),
    close: () => {
      pair.socket.close();
      pair.receiver.close();
    },
  };
}

/** The RTP among a werift sender's datagrams, as hex: its own sender reports (RTCP 200-204) left out. */
function rtpOf(datagrams: Buffer[]): string[] {
  return datagrams
    .filter((datagram) => datagram[1]! < 200 || datagram[1]! > 204)
    .map((datagram) => datagram.toString('hex'));
}

/** The leg's werift sender, brought up to date, has the counters and last-packet fields werift's own sender keeps. */
function expectSenderAsWerift(leg: Awaited<ReturnType<typeof socketLeg>>, arrivalMs: number): void {
  const fields = ['packetCount', 'octetCount', 'sequenceNumber', 'timestamp', 'rtpTimestamp'] as const;
  expect(Object.fromEntries(fields.map((field) => [field, leg.sender[field]]))).toEqual(
    Object.fromEntries(fields.map((field) => [field, leg.stock.sender[field]])),
  );
  expect(leg.sender.ntpTimestamp).toBe(ntpTimeOf(performance.timeOrigin + arrivalMs));
}

/** Three socket legs whose numbering wraps at different packets of `packets` (rollover counter 0 → 1 in the addon). */
function wrappingLegs(addon: NativeSrtp, packets: RtpPacket[]) {
  const first = packets[0]!.header.sequenceNumber;
  return Promise.all(
    [0, 1, 2].map((index) =>
      socketLeg(addon, (0x10000 - packets.length / 2 - first + index * 3) & 0xffff, index * 100_000),
    ),
  );
}

describe('steady legs through the addon (SteadyLegs)', () => {
  it("send each leg what werift sends from the source's numbers and the leg's offsets, byte for byte across each leg's wrap, and count it when collected", async () => {
    const addon = requireAddon();
    const packets = sourcePackets();
    const legs = await wrappingLegs(addon, packets);
    const steady = new SteadyLegs(addon);
    const stats = createForwardingStats();
    const sent = legs.map(() => ({ bytes: 0 }));
    try {
      for (const [index, leg] of legs.entries()) leg.leg.joinSteady(steady, stats, sent[index]!);
      expect(steady.size).toBe(3);
      // The second leg loses consent for the first half: nothing sent, the rollover counter still moves.
      legs[1]!.setSending(false);
      const expected = legs.map(() => [] as string[]);
      for (const [index, packet] of packets.entries()) {
        if (index === packets.length / 2) legs[1]!.setSending(true);
        for (const [legIndex, leg] of legs.entries()) {
          const before = leg.expected.length;
          await leg.stock.werift.sendRtp(packet);
          if (legIndex !== 1 || index >= packets.length / 2)
            expected[legIndex]!.push(...rtpOf(leg.expected.slice(before)));
        }
        steady.send(packet, 11);
      }
      await waitFor(() => legs.every((leg, index) => leg.received.length === expected[index]!.length), {
        message: 'every datagram',
        intervalMs: 1,
      });
      for (const [index, leg] of legs.entries()) {
        expect(leg.received.map((datagram) => datagram.toString('hex'))).toEqual(expected[index]);
        expect(leg.dgramSends).toEqual([]);
        leg.leg.syncSender();
        const bytes = leg.received.reduce((sum, datagram) => sum + datagram.length, 0);
        expect(leg.route.counters).toEqual({ packetsSent: leg.received.length, bytesSent: bytes });
        expectSenderAsWerift(leg, 11);
        const payloadBytes = packets.reduce((sum, packet) => sum + packet.payload.length, 0);
        expect(sent[index]!.bytes).toBe(payloadBytes + packets.length * PACKET_OVERHEAD_BYTES);
      }
      expect(stats.forwardedPackets).toBe(packets.length * legs.length);

      // A leg that left gets nothing more; the others go on.
      legs[0]!.leg.leaveSteady();
      expect(steady.size).toBe(2);
      const received = legs.map((leg) => leg.received.length);
      steady.send(packets[0]!, 12);
      await waitFor(
        () => legs[1]!.received.length === received[1]! + 1 && legs[2]!.received.length === received[2]! + 1,
        {
          message: 'the two steady legs',
          intervalMs: 1,
        },
      );
      expect(legs[0]!.received.length).toBe(received[0]);
    } finally {
      for (const leg of legs) leg.close();
    }
  });
});

describe('fan-out through the addon (FanoutBatch)', () => {
  it('sends each staged leg what werift sends, byte for byte, across each leg its own sequence-number wrap, with the counters werift keeps', async () => {
    const addon = requireAddon();
    const packets = sourcePackets();
    const legs = await wrappingLegs(addon, packets);
    try {
      const batch = new FanoutBatch(addon);
      for (const [index, packet] of packets.entries()) {
        for (const leg of legs) {
          await leg.stock.werift.sendRtp(packet);
          leg.leg.forward(packet, 7, batch);
        }
        // Staged, not sent: the batch sends them all at once.
        for (const leg of legs) leg.leg.syncSender();
        expect(legs.map((leg) => leg.route.counters.packetsSent)).toEqual(legs.map(() => index + 1));
        expect(legs.map((leg) => leg.received.length)).toEqual(legs.map(() => index));
        batch.send(packet);
        await waitFor(() => legs.every((leg) => leg.received.length === index + 1), {
          message: 'one per leg',
          intervalMs: 1,
        });
      }
      for (const leg of legs) {
        expect(leg.received.map((datagram) => datagram.toString('hex'))).toEqual(rtpOf(leg.expected));
        expect(leg.dgramSends).toEqual([]);
        const bytes = leg.received.reduce((sum, datagram) => sum + datagram.length, 0);
        leg.leg.syncSender();
        expect(leg.route.counters).toEqual({ packetsSent: packets.length, bytesSent: bytes });
        expect({ packets: leg.transport.packetsSent, bytes: leg.transport.bytesSent }).toEqual({
          packets: packets.length,
          bytes,
        });
        expectSenderAsWerift(leg, 7);
      }
    } finally {
      for (const leg of legs) leg.close();
    }
  });

  it('keeps one rollover counter with the per-leg path (payload rewrites, RTX answers) and through a consent loss across the wrap', async () => {
    const addon = requireAddon();
    const packets = sourcePackets();
    const first = packets[0]!.header.sequenceNumber;
    const leg = await socketLeg(addon, (0x10000 - packets.length / 2 - first) & 0xffff, 0);
    try {
      // Every third packet's payload is rewritten (the VP8 picture ID after a switch): those go out
      // at once through the per-leg path, the others through the batch, on the same SSRC.
      const rewrite = (payload: Buffer) =>
        payload.length % 3 === 0 ? Buffer.from(payload.subarray(0, 4).map((byte) => byte ^ 0x5a)) : undefined;
      leg.leg.payloadRewriter = { prefixFor: rewrite } satisfies PayloadPrefixRewriter;
      const batch = new FanoutBatch(addon);
      const history = new Map<number, RtpPacket>();
      const quiet = new Set(packets.slice(packets.length / 2 - 3, packets.length / 2 + 3));
      const expected: string[] = [];
      for (const packet of packets) {
        history.set(packet.header.sequenceNumber, packet);
        const prefix = rewrite(packet.payload);
        const rewritten = packet.clone();
        if (prefix) rewritten.payload = Buffer.concat([prefix, packet.payload.subarray(prefix.length)]);
        const before = leg.expected.length;
        await leg.stock.werift.sendRtp(rewritten);
        // Consent lost around the wrap: nothing sent, the counter still moves (werift's stock sender
        // keeps sending: its datagrams for those packets are not expected).
        leg.setSending(!quiet.has(packet));
        leg.leg.forward(packet, 0, batch);
        batch.send(packet);
        if (!quiet.has(packet)) expected.push(...rtpOf(leg.expected.slice(before)));
      }
      leg.setSending(true);
      // RTX answers for the last two packets, which the stock sender gives too.
      const lost = packets.slice(-2).map((packet) => (packet.header.sequenceNumber + leg.sender.seqOffset) & 0xffff);
      const before = leg.expected.length;
      leg.stock.werift.handleRtcpPacket(
        new RtcpTransportLayerFeedback({
          feedback: new GenericNack({ senderSsrc: 1, mediaSourceSsrc: leg.stock.sender.ssrc, lost }),
        }),
      );
      await waitFor(() => leg.expected.length - before >= 2, { message: "werift's RTX answers", intervalMs: 1 });
      expected.push(...rtpOf(leg.expected.slice(before)));
      leg.sender.rtxSsrc = leg.stock.sender.rtxSsrc;
      leg.sender.rtxSequenceNumber = leg.stock.sender.rtxSequenceNumber - 2;
      for (const sequenceNumber of lost) {
        expect(leg.leg.retransmit(sequenceNumber, (source) => history.get(source))).toBe(true);
      }
      await waitFor(() => leg.received.length === expected.length, { message: 'every datagram', intervalMs: 1 });
      expect(leg.received.map((datagram) => datagram.toString('hex'))).toEqual(expected);
      expect(leg.dgramSends.length).toBe(0);
    } finally {
      leg.close();
    }
  });

  it('sends through dgram, the same bytes, what the addon could not (a datagram over 2 KB), and the rest natively', async () => {
    const addon = requireAddon();
    const legs = await Promise.all([0, 1].map(() => socketLeg(addon, 0, 0)));
    try {
      const batch = new FanoutBatch(addon);
      const small = sourcePackets()[0]!;
      const large = small.clone();
      large.payload = Buffer.concat([large.payload, Buffer.alloc(3_000, 7)]);
      for (const packet of [small, large, small.clone()]) {
        for (const leg of legs) {
          await leg.stock.werift.sendRtp(packet);
          leg.leg.forward(packet, 0, batch);
        }
        batch.send(packet);
      }
      for (const leg of legs) {
        await waitFor(() => leg.received.length === 3, { message: 'three datagrams', intervalMs: 1 });
        // Datagrams arrive in order on loopback, but dgram's send is asynchronous: compare as sets.
        expect(leg.received.map((datagram) => datagram.toString('hex')).sort()).toEqual(rtpOf(leg.expected).sort());
        expect(leg.dgramSends).toEqual([1]);
        const bytes = leg.received.reduce((sum, datagram) => sum + datagram.length, 0);
        leg.leg.syncSender();
        expect(leg.route.counters).toEqual({ packetsSent: 3, bytesSent: bytes });
      }
    } finally {
      for (const leg of legs) leg.close();
    }
  });

  it("hands the sender its last-packet fields as werift's own sends keep them, when they are read", async () => {
    const addon = requireAddon();
    const leg = await socketLeg(addon, 0, 0);
    try {
      const packets = sourcePackets();
      // Before any packet werift leaves them undefined, and a layer switch reads them so.
      expect(leg.leg.syncSender()).toBe(leg.sender);
      expect([leg.sender.sequenceNumber, leg.sender.timestamp]).toEqual([undefined, undefined]);
      const batch = new FanoutBatch(addon);
      const arrivalMs = 1234.5;
      for (const packet of packets.slice(0, 3)) {
        await leg.stock.werift.sendRtp(packet);
        leg.leg.forward(packet, arrivalMs, batch);
        batch.send(packet);
      }
      const fields = ['sequenceNumber', 'timestamp', 'rtpTimestamp', 'ntpTimestamp'] as const;
      const read = (sender: SenderBookkeeping) => Object.fromEntries(fields.map((field) => [field, sender[field]]));
      // Forwarding leaves them alone (a heap number and a BigInt per packet per leg, otherwise).
      expect([leg.sender.sequenceNumber, leg.sender.timestamp]).toEqual([undefined, undefined]);
      leg.leg.syncSender();
      expect(read(leg.sender)).toEqual({
        ...read(leg.stock.sender),
        ntpTimestamp: ntpTimeOf(performance.timeOrigin + arrivalMs),
      });
      // werift's own path (a packet with CSRCs) on the same sender continues from them, and a later
      // read does not take them back to the leg's older packet.
      const withCsrc = packets[3]!.clone();
      withCsrc.header.csrc = [1];
      await leg.stock.werift.sendRtp(withCsrc);
      await leg.werift.sendRtp(withCsrc);
      leg.leg.syncSender();
      expect({ ...read(leg.sender), ntpTimestamp: 0n }).toEqual({ ...read(leg.stock.sender), ntpTimestamp: 0n });
      // Accessors in their place made the sender a dictionary-mode object, each load from it in the
      // forwarding path a generic property lookup (5-6 % of the node's CPU at 60 subscribers).
      for (const field of fields) expect(Object.getOwnPropertyDescriptor(leg.sender, field)).toHaveProperty('value');
    } finally {
      leg.close();
    }
  });

  it('refuses numbers that are not live fan-out legs, and bad arguments, before sending anything', () => {
    const addon = requireAddon();
    const session = addon.srtpSession(Buffer.alloc(16, 1), Buffer.alloc(12, 2));
    const destination = addon.udpDestination('127.0.0.1', 9);
    const state = new Uint32Array(new ArrayBuffer(LEG_STATE.slots * Uint32Array.BYTES_PER_ELEMENT));
    state[LEG_STATE.send] = 0;
    const handle = addon.fanoutLeg(session, destination, Buffer.alloc(12), state);
    const id = state[LEG_STATE.id]!;
    // Not sending (LEG_SEND 0): the rollover state moves, nothing goes out.
    expect(addon.fanoutRtp(Uint32Array.of(id), 1, Buffer.alloc(10), false)).toBe(0);
    expect(state[LEG_STATE.rolloverStarted]).toBe(1);
    expect(() => addon.fanoutRtp(Uint32Array.of(id, id + 1_000), 2, Buffer.alloc(10), false)).toThrow(
      /not the number of a fan-out leg/,
    );
    expect(() => addon.fanoutRtp(Uint32Array.of(id), 2, Buffer.alloc(10), false)).toThrow(/fanoutRtp/);
    expect(() => addon.fanoutRtp([id] as never, 1, Buffer.alloc(10), false)).toThrow(/Uint32Array/);
    expect(() => addon.fanoutLeg(session, destination, Buffer.alloc(12), new Uint32Array(2))).toThrow(/Uint32Array/);
    expect(() => addon.fanoutLeg(session, destination, Buffer.alloc(8), new Uint32Array(16))).toThrow(/12 to 64/);
    expect(handle).toBeDefined();
  });
});

describe('SenderReportClock', () => {
  it('sends each connection one compound SR + SDES per tick with the counters werift keeps', async () => {
    const sent: Buffer[] = [];
    const { sender, leg, transport } = fastPath(ProtectionProfileAeadAes128Gcm, []);
    const reports = new SenderReportClock();
    transport.sendRtcp = async (packets) => {
      sent.push(Buffer.concat(packets.map((packet) => packet.serialize())));
    };
    const arrivalMs = 5_000.25;
    const ntp = ntpTimeOf(performance.timeOrigin + arrivalMs);
    for (const packet of sourcePackets().slice(0, 5)) leg.forward(packet, arrivalMs);
    reports.add(leg);
    reports.tick();
    // Nothing sent since: no report.
    reports.tick();
    reports.close();
    expect(sent).toHaveLength(1);
    const [report, description] = RtcpPacketConverter.deSerialize(sent[0]!);
    expect(report).toBeInstanceOf(RtcpSrPacket);
    const senderInfo = (report as RtcpSrPacket).senderInfo;
    expect({
      ssrc: (report as RtcpSrPacket).ssrc,
      packets: senderInfo.packetCount,
      ntp: senderInfo.ntpTimestamp,
    }).toEqual({
      ssrc: sender.ssrc,
      packets: 5,
      ntp,
    });
    expect(description?.type).toBe(202);
    // The middle 32 bits, which a receiver report's LSR echoes (RFC 3550 §6.4.1).
    expect(sender.lastSRtimestamp).toBe(Number((ntp >> 16n) & 0xffffffffn));
  });

  it("is the only reporter of its senders: werift's own send path starts no report loop beside it", async () => {
    const { werift, leg } = fastPath(ProtectionProfileAeadAes128Gcm, []);
    const reports = new SenderReportClock();
    reports.add(leg);
    // werift calls runRtcp() after each packet it sends itself (padding, CSRCs); its loop would send
    // an SR of its own every 0.5–1.5 s and never return until the sender stops.
    const loop = werift.runRtcp();
    const settled = await Promise.race([
      loop.then(() => 'returned'),
      new Promise((resolve) => setTimeout(resolve, 2_000, 'still running')),
    ]);
    werift.stop();
    reports.close();
    expect(settled).toBe('returned');
  });

  it('stamps reports with the NTP time to the fraction of a second (werift rounds to the second)', () => {
    // 2001-09-09T01:46:40.25Z: 0xBF454880 seconds since 1900, a quarter second.
    expect(ntpTimeOf(1_000_000_000_250)).toBe(0xbf454880_40000000n);
    expect(ntpTimeOf(0)).toBe(BigInt(2_208_988_800) << 32n);
    // Era 1 begins in February 2036: the seconds wrap (RFC 5905 §6).
    expect(ntpTimeOf(2_085_978_496_000 + 500) >> 32n).toBe(0n);
    expect(ntpTimeOf(2_085_978_496_000 + 500) & 0xffffffffn).toBe(0x80000000n);
  });

  it("writes the SR and SDES bytes werift's serializers write, and ends the CNAME item list as RFC 3550 says", () => {
    const report = {
      ssrc: 0xfedc_ba98,
      ntpTimestamp: 0xbf454880_40000000n,
      rtpTimestamp: 0x8000_0001,
      packetCount: 0xffff_ffff,
      octetCount: 1_234_567,
    };
    const werift = (cname: string | undefined) =>
      Buffer.concat([
        new RtcpSrPacket({ ssrc: report.ssrc, senderInfo: new RtcpSenderInfo(report) }).serialize(),
        ...(cname
          ? [
              new RtcpSourceDescriptionPacket({
                chunks: [
                  new SourceDescriptionChunk({
                    source: report.ssrc,
                    items: [new SourceDescriptionItem({ type: 1, text: cname })],
                  }),
                ],
              }).serialize(),
            ]
          : []),
      ]);
    // CNAMEs whose item does not end on a 32-bit boundary (werift then pads with the null octets).
    for (const cname of [undefined, 'a', 'b6a1c7e2-4f3d-4e8a-9c1b-2d3e4f5a6b7c', 'x'.repeat(255)]) {
      expect(senderReportBytes({ ...report, cname }).toString('hex')).toBe(werift(cname).toString('hex'));
    }
    // One whose item does: werift writes no null octet, RFC 3550 §6.5 wants one (and a word of padding).
    const bytes = senderReportBytes({ ...report, cname: 'ab' });
    const [, description] = RtcpPacketConverter.deSerialize(bytes);
    expect((description as RtcpSourceDescriptionPacket).chunks[0]!.items[0]!.text).toBe('ab');
    expect(bytes.subarray(28 + 4 + 4 + 2 + 2).toString('hex')).toBe('00000000');
    // The counters wrap at 32 bits, as the fields do.
    expect(senderReportBytes({ ...report, octetCount: 2 ** 32 + 5 }).readUInt32BE(24)).toBe(5);
  });
});

describe('SourceTrack fan-out', () => {
  it('gives every sink its copy even when one throws (a send failing on one leg)', () => {
    const track = new MediaStreamTrack({ kind: 'video' });
    const logged: string[] = [];
    const logger: Logger = {
      debug: (message) => logged.push(message),
      info() {},
      warn() {},
      error() {},
      child: () => logger,
    };
    const source = vp8Source([track], logger);
    const received: number[] = [];
    const failing = {
      forward: () => {
        throw new Error('Not running');
      },
      layersChanged() {},
      close() {},
    };
    const healthy = {
      forward: (packet: RtpPacket) => received.push(packet.header.sequenceNumber),
      layersChanged() {},
      close() {},
    };
    const [layer] = source.layers;
    source.attach(failing, layer!);
    source.attach(healthy, layer!);
    const packets = sourcePackets().slice(0, 3);
    for (const packet of packets) track.onReceiveRtp.execute(packet.clone());
    expect(received).toEqual(packets.map((packet) => packet.header.sequenceNumber));
    expect(logged).toEqual(['forwarding a packet failed', 'forwarding a packet failed', 'forwarding a packet failed']);
    // And the source keeps each packet for retransmissions.
    expect(layer!.packetBySequenceNumber(packets[1]!.header.sequenceNumber)?.payload).toEqual(packets[1]!.payload);
    source.close();
  });
});

/** A ForwardedTrack whose subscriber connection is up on loopback, with the fast path open from its first packet. */
async function fastPathTrack() {
  requireAddon();
  const pair = await loopbackPair();
  const media = new MediaStreamTrack({ kind: 'video' });
  const source = vp8Source([media]);
  const pc = new RTCPeerConnection({ iceServers: [] });
  const stats = createForwardingStats();
  const senderReports = new SenderReportClock();
  const track = new ForwardedTrack({
    source,
    peerConnection: pc,
    stream: new MediaStream({ id: 'publisher' }),
    stats,
    senderReports,
    logger: silentLogger,
    sent: { bytes: 0 },
  });
  // The subscriber's connection, up: the fixture's keys over a nominated UDP pair on loopback, on
  // werift's own ICE connection (its consent and state fields are what the leg follows).
  const connection = new Connection(true, {});
  Object.assign(connection, {
    nominated: {
      protocol: { transport: { type: 'udp', socket: pair.socket } },
      remoteAddr: ['127.0.0.1', pair.port],
      packetsSent: 0,
      bytesSent: 0,
    },
    state: 'connected',
    consentFresh: true,
  });
  const transport = {
    state: 'connected',
    srtp: new SrtpSession({ keys, profile: ProtectionProfileAeadAes128Gcm }),
    srtcp: new SrtcpSession({ keys, profile: ProtectionProfileAeadAes128Gcm }),
    transportSequenceNumber: 0,
    bytesSent: 0,
    packetsSent: 0,
    onStateChange: new Event<[string]>(),
    iceTransport: { connection },
    sendRtp: async () => 0,
    sendRtcp: async () => undefined,
  };
  const sender = track.transceiver.sender;
  const bookkeeping = sender as unknown as SenderBookkeeping;
  negotiateAsEgress(sender, transport);
  const decrypt = remoteSession(ProtectionProfileAeadAes128Gcm);
  const packets = sourcePackets().slice(0, 4);
  let socketOpen = true;
  return {
    pair,
    media,
    source,
    stats,
    senderReports,
    track,
    transport,
    /** werift keeps these private; the test writes consent as werift's expiry timer and checks do. */
    connection: connection as unknown as { consentFresh: boolean; canSendApplicationData(): boolean },
    nominated: connection.nominated as unknown as { packetsSent: number; bytesSent: number },
    bookkeeping,
    decrypt,
    packets,
    close: async () => {
      track.close('test over');
      senderReports.close();
      source.close();
      await pc.close();
      if (socketOpen) pair.socket.close();
      pair.receiver.close();
    },
    /** Closes the leg's socket, as werift does when the connection closes. */
    closeSocket: () => {
      socketOpen = false;
      pair.socket.close();
    },
  };
}

describe('ForwardedTrack on the fast path', () => {
  it("stops forwarding when the leg's DTLS transport leaves 'connected' (its event), and counts for werift only what it sent", async () => {
    const {
      pair,
      media,
      source,
      stats,
      senderReports,
      track,
      transport,
      nominated,
      bookkeeping,
      decrypt,
      packets,
      close,
    } = await fastPathTrack();
    const [layer] = source.layers;
    const setState = (state: string) => {
      transport.state = state;
      transport.onStateChange.execute(state);
    };
    try {
      media.onReceiveRtp.execute(packets[0]!.clone());
      await waitFor(() => pair.received.length === 1, { message: 'the first packet' });
      expect(senderReports.size).toBe(1);
      // A single-layer source's viewer with its leg open: steady, the source no longer calls the track.
      expect({ steady: layer!.steadyLegs.size, called: layer!.forwarders.includes(track) }).toEqual({
        steady: 1,
        called: false,
      });

      setState('closed');
      expect({ steady: layer!.steadyLegs.size, called: layer!.forwarders.includes(track) }).toEqual({
        steady: 0,
        called: true,
      });
      media.onReceiveRtp.execute(packets[1]!.clone());
      expect(stats.forwardedPackets).toBe(1);

      setState('connected');
      expect(layer!.steadyLegs.size).toBe(1);
      media.onReceiveRtp.execute(packets[2]!.clone());
      await waitFor(() => pair.received.length === 2, { message: 'the packet after the transport came back' });
      // A steady leg's packets count when collected: by the sender-report tick, or a reader.
      track.collectSent();
      expect(stats.forwardedPackets).toBe(2);
      expect(decrypt.decrypt(pair.received[1]!).subarray(-packets[2]!.payload.length)).toEqual(packets[2]!.payload);
      // What werift's stats and reports read: the two datagrams sent, once brought up to date.
      senderReports.tick();
      const bytes = pair.received[0]!.length + pair.received[1]!.length;
      expect({ packets: bookkeeping.packetCount, pair: nominated.packetsSent }).toEqual({ packets: 2, pair: 2 });
      expect({ pairBytes: nominated.bytesSent, transportBytes: transport.bytesSent }).toEqual({
        pairBytes: bytes,
        transportBytes: bytes,
      });
    } finally {
      await close();
    }
  });

  it("follows werift's ICE consent as werift writes it, and stops at its socket's close without throwing", async () => {
    const { pair, media, connection, decrypt, packets, close, closeSocket } = await fastPathTrack();
    try {
      media.onReceiveRtp.execute(packets[0]!.clone());
      await waitFor(() => pair.received.length === 1, { message: 'the first packet' });
      // The fast path took it (werift's path goes to the fake transport, not the socket): the route follows
      // the connection's sendabilityChanged, which only the werift patch adds.

      // Consent expired (werift's expiry timer writes the field, the patch's accessor announces it): nothing goes out.
      connection.consentFresh = false;
      expect(connection.canSendApplicationData()).toBe(false);
      media.onReceiveRtp.execute(packets[1]!.clone());
      // Consent regained: the next packet goes out, and is the only one after the first.
      connection.consentFresh = true;
      expect(connection.canSendApplicationData()).toBe(true);
      media.onReceiveRtp.execute(packets[2]!.clone());
      await waitFor(() => pair.received.length === 2, { message: 'the packet after consent came back' });
      expect(decrypt.decrypt(pair.received[1]!).subarray(-packets[2]!.payload.length)).toEqual(packets[2]!.payload);

      // werift closes the pair's socket: its descriptor may be reused from then on, so the leg stops
      // sending on it, and forwarding does not throw, whatever consent says.
      closeSocket();
      // A socket opened right after takes the lowest free descriptor: the closed one's, most likely.
      const reuser = createSocket('udp4');
      await new Promise<void>((resolve) => reuser.bind(0, '127.0.0.1', () => resolve()));
      connection.consentFresh = true;
      expect(() => media.onReceiveRtp.execute(packets[3]!.clone())).not.toThrow();
      // A packet sent despite the close (on whichever socket has the descriptor now) would arrive
      // before this probe, sent after it.
      await new Promise<void>((resolve) => reuser.send(Buffer.from('probe'), pair.port, '127.0.0.1', () => resolve()));
      await waitFor(() => pair.received.length >= 3, { message: 'the probe' });
      reuser.close();
      expect(pair.received[2]!.toString()).toBe('probe');
    } finally {
      await close();
    }
  });
});
