import { afterEach, describe, expect, it, vi } from 'vitest';
import { getBit, RtcpPacketConverter, RtcpReceiverInfo, RtcpRrPacket, RtpHeader, RtpPacket } from 'werift';

/**
 * werift reads the bit fields of every received RTP and RTCP header with `getBit`, as patched in
 * patches/werift+*.patch: by shifts. Stock werift built strings of binary digits and arrays for each
 * field (six per RTP header, three per RTCP header), garbage that an idle subscriber's receiver
 * reports alone made the worker's collector run for.
 */
afterEach(() => vi.restoreAllMocks());

describe('werift bit fields (patches/werift+*.patch)', () => {
  it('reads every field of every byte as the most-significant-first bit numbering says', () => {
    for (let byte = 0; byte < 256; byte++) {
      for (let start = 0; start < 8; start++) {
        for (let length = 1; start + length <= 8; length++) {
          const bits = byte.toString(2).padStart(8, '0');
          const expected = Number.parseInt(bits.slice(start, start + length), 2);
          expect(getBit(byte, start, length)).toBe(expected);
        }
      }
    }
    expect(getBit(0b1000_0000, 0)).toBe(1);
  });

  it('parses RTP and RTCP headers without formatting a number as binary digits', () => {
    const rtp = new RtpPacket(
      new RtpHeader({ marker: true, payloadType: 111, sequenceNumber: 65_535, timestamp: 1, ssrc: 7 }),
      Buffer.from([1, 2, 3]),
    ).serialize();
    const rtcp = new RtcpRrPacket({
      ssrc: 9,
      reports: [new RtcpReceiverInfo({ ssrc: 7, fractionLost: 3, packetsLost: 4, highestSequence: 5, jitter: 6 })],
    }).serialize();
    const toBinary = vi.spyOn(Number.prototype, 'toString');

    const header = RtpPacket.deSerialize(rtp).header;
    const [report] = RtcpPacketConverter.deSerialize(rtcp);

    expect(toBinary.mock.calls.filter(([radix]) => radix === 2)).toEqual([]);
    expect(header).toMatchObject({ version: 2, padding: false, extension: false, marker: true, payloadType: 111 });
    expect(report).toBeInstanceOf(RtcpRrPacket);
    expect((report as RtcpRrPacket).reports[0]).toMatchObject({ ssrc: 7, fractionLost: 3, packetsLost: 4 });
  });
});
