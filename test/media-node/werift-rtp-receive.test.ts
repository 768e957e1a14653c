import { afterEach, describe, expect, it, vi } from 'vitest';
import { MediaStreamTrack, RTCRtpCodecParameters, RTCRtpReceiver, RtpHeader, RtpPacket } from 'werift';

/**
 * Every media packet a publisher sends goes through werift's RTCRtpReceiver.handleRTP, which keeps
 * the receive statistics its receiver reports carry. As patched in patches/werift+*.patch, the
 * arrival time in clock ticks is a Math.floor (stock werift's int() parsed the number's decimal
 * string: ~3 % of a received packet's handling on the node), and the codec's name is taken once per
 * packet (stock: twice, each splitting the MIME type).
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
  it('delivers each packet to its track without parsing numbers from strings or splitting the MIME type twice', () => {
    const { receiver, track } = videoReceiver();
    const delivered: number[] = [];
    track.onReceiveRtp.subscribe((received) => delivered.push(received.header.sequenceNumber));
    const parseNumber = vi.spyOn(Number, 'parseInt');
    const split = vi.spyOn(String.prototype, 'split');
    try {
      for (let index = 0; index < 3; index++) receiver.handleRtpBySsrc(packet(100 + index, 3_000 * index), {});
      expect(delivered).toEqual([100, 101, 102]);
      expect(parseNumber).not.toHaveBeenCalled();
      expect(split).toHaveBeenCalledTimes(3);
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
