import { afterEach, describe, expect, it, vi } from 'vitest';
import { MediaStreamTrack, RTCRtpCodecParameters, RTCRtpReceiver, RtpHeader, RtpPacket } from 'werift';

/**
 * Every media packet a publisher sends goes through werift's RTCRtpReceiver.handleRTP, which keeps
 * the receive statistics its receiver reports carry. As patched in patches/werift+*.patch, the
 * arrival time in clock ticks is a Math.floor (stock werift's int() parsed the number's decimal
 * string: ~3 % of a received packet's handling on the node). What handleRTP reads from the codecs
 * (whether TWCC and NACK were negotiated, each payload type's codec name) is taken once per
 * prepareReceive: stock werift sorted the codecs twice and split a MIME type twice per packet. The
 * RTCP loop is started without a promise per packet, and the copy each track gets is made field by
 * field rather than by an object spread.
 */
afterEach(() => vi.restoreAllMocks());

const SSRC = 0x9000_0001;
const CLOCK_RATE = 90_000;

interface ReceiverInternals {
  codecs: Record<number, RTCRtpCodecParameters>;
  trackBySSRC: Record<number, MediaStreamTrack>;
  remoteStreams: Record<number, { add(packet: RtpPacket, now: number): void; jitter: number }>;
}

function videoReceiver() {
  const receiver = new RTCRtpReceiver({} as never, 'video', 1234);
  const internals = receiver as unknown as ReceiverInternals;
  internals.codecs = {
    96: new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: CLOCK_RATE, payloadType: 96 }),
  };
  const track = new MediaStreamTrack({ kind: 'video', ssrc: SSRC, remote: true });
  internals.trackBySSRC[SSRC] = track;
  return { receiver, internals, track };
}

const packet = (sequenceNumber: number, timestamp: number) =>
  new RtpPacket(new RtpHeader({ ssrc: SSRC, payloadType: 96, sequenceNumber, timestamp }), Buffer.alloc(10));

describe('werift RTP receive path (patches/werift+*.patch)', () => {
  it('delivers each packet to its track, reading the codecs once rather than per packet', () => {
    const { receiver, track } = videoReceiver();
    const delivered: number[] = [];
    track.onReceiveRtp.subscribe((received) => delivered.push(received.header.sequenceNumber));
    const parseNumber = vi.spyOn(Number, 'parseInt');
    const split = vi.spyOn(String.prototype, 'split');
    const codecArray = vi.spyOn(
      RTCRtpReceiver.prototype as unknown as { readonly codecArray: unknown[] },
      'codecArray',
      'get',
    );
    const runRtcp = vi.spyOn(RTCRtpReceiver.prototype, 'runRtcp');
    try {
      for (let index = 0; index < 3; index++) receiver.handleRtpBySsrc(packet(100 + index, 3_000 * index), {});
      expect(delivered).toEqual([100, 101, 102]);
      expect(parseNumber).not.toHaveBeenCalled();
      // Once for the payload type's name; TWCC and NACK are looked up once (stock: 3 splits, 6 sorts).
      expect(split).toHaveBeenCalledTimes(1);
      expect(codecArray).toHaveBeenCalledTimes(2);
      expect(runRtcp).toHaveBeenCalledTimes(1);
    } finally {
      receiver.stop();
    }
  });

  it('gives the track a copy of the packet with every header field, extensions and CSRCs included', () => {
    const { receiver, track } = videoReceiver();
    const received: RtpPacket[] = [];
    track.onReceiveRtp.subscribe((copy) => received.push(copy));
    const header = new RtpHeader({
      ssrc: SSRC,
      payloadType: 96,
      sequenceNumber: 7,
      timestamp: 0xfffffff0,
      marker: true,
      csrc: [1, 2],
      csrcLength: 2,
      extension: true,
      extensions: [{ id: 1, payload: Buffer.from([0x11]) }],
    });
    const original = RtpPacket.deSerialize(new RtpPacket(header, Buffer.from([1, 2, 3])).serialize());
    try {
      receiver.handleRtpBySsrc(original, {});
      const copy = received[0]!;
      expect(copy).not.toBe(original);
      expect(copy.header).not.toBe(original.header);
      expect({ ...copy.header }).toEqual({ ...original.header });
      expect(copy.serialize()).toEqual(original.serialize());
      copy.header.sequenceNumber = 8;
      expect(original.header.sequenceNumber).toBe(7);
    } finally {
      receiver.stop();
    }
  });

  it('follows a renegotiation: a codec without NACK stops NACK tracking for later packets', () => {
    const { receiver } = videoReceiver();
    const nackFor = vi.spyOn(receiver as unknown as { nackFor(ssrc: number): unknown }, 'nackFor');
    const vp8 = (rtcpFeedback: { type: string }[]) =>
      new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: CLOCK_RATE, payloadType: 96, rtcpFeedback });
    try {
      receiver.resyncCodecs({ codecs: [vp8([{ type: 'nack' }])], encodings: [] } as never);
      receiver.handleRtpBySsrc(packet(1, 0), {});
      expect(nackFor).toHaveBeenCalledTimes(1);
      receiver.resyncCodecs({ codecs: [vp8([])], encodings: [] } as never);
      receiver.handleRtpBySsrc(packet(2, 3_000), {});
      expect(nackFor).toHaveBeenCalledTimes(1);
    } finally {
      receiver.stop();
    }
  });

  it('keeps the interarrival jitter of RFC 3550 §6.4.1 in its receiver statistics', () => {
    const { receiver, internals } = videoReceiver();
    try {
      receiver.handleRtpBySsrc(packet(1, 0), {});
      const statistics = internals.remoteStreams[SSRC]!;
      // Frames 3,000 ticks (33.3 ms) apart, arriving 10 ms late, then on time, then 25 ms early.
      const arrivals = [0.5, 0.5 + 0.0433, 0.5 + 0.0667, 0.5 + 0.075];
      let expectedQ4 = 0;
      let previousTransit: number | undefined;
      for (const [index, now] of arrivals.entries()) {
        const timestamp = 3_000 * index;
        statistics.add(packet(2 + index, timestamp), now);
        const transit = Math.floor(now * CLOCK_RATE) - timestamp;
        if (previousTransit !== undefined) {
          const difference = Math.abs(transit - previousTransit);
          expectedQ4 += difference - ((expectedQ4 + 8) >> 4);
        }
        previousTransit = transit;
      }
      expect(statistics.jitter).toBe(expectedQ4 >> 4);
      expect(statistics.jitter).toBeGreaterThan(0);
    } finally {
      receiver.stop();
    }
  });
});
