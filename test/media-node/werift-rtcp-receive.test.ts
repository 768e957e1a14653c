import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  RTCRtpSender,
  RtcpHeader,
  RtcpPacketConverter,
  RtcpReceiverInfo,
  RtcpRrPacket,
  RtcpSenderInfo,
  RtcpSrPacket,
  RtpRouter,
} from 'werift';

/**
 * Every RTCP packet the node receives is parsed by werift, and an idle subscriber still sends a
 * receiver report about every track each 0.5–1.5 s. As patched in patches/werift+*.patch, headers and
 * report blocks are read in place; stock werift cut a subarray per header and a slice per report block
 * and read each field through an array (`bufferReader`, which calls `readUIntBE`). Routing a report to
 * its senders, and each sender's reading of its own block, loop over the blocks instead of copying
 * them through `filter` with a closure per block.
 */
afterEach(() => vi.restoreAllMocks());

const block = (ssrc: number, packetsLost: number) =>
  new RtcpReceiverInfo({
    ssrc,
    fractionLost: 200,
    packetsLost,
    highestSequence: 0x0001_fffe,
    jitter: 17,
    lsr: 0xdead_beef,
    dlsr: 65_536,
  });

describe('werift RTCP receive path (patches/werift+*.patch)', () => {
  it('reads a compound SR + RR with the fields RFC 3550 §6.4 lays out, without slicing or field arrays', () => {
    const compound = Buffer.concat([
      new RtcpSrPacket({
        ssrc: 0x8000_0001,
        senderInfo: new RtcpSenderInfo({ ntpTimestamp: 1n << 40n, rtpTimestamp: 3, packetCount: 4, octetCount: 5 }),
      }).serialize(),
      new RtcpRrPacket({ ssrc: 0xffff_fff0, reports: [block(0x9000_0000, 0x00ab_cdef), block(7, 1)] }).serialize(),
    ]);
    const readUIntBE = vi.spyOn(Buffer.prototype, 'readUIntBE');
    const slice = vi.spyOn(Buffer.prototype, 'slice');

    const [sr, rr] = RtcpPacketConverter.deSerialize(compound);

    expect(sr).toBeInstanceOf(RtcpSrPacket);
    expect(rr).toBeInstanceOf(RtcpRrPacket);
    const receiverReport = rr as RtcpRrPacket;
    expect(receiverReport.ssrc).toBe(0xffff_fff0);
    expect(receiverReport.reports.map((report) => ({ ...report }))).toEqual([
      { ...block(0x9000_0000, 0x00ab_cdef) },
      { ...block(7, 1) },
    ]);
    expect(slice).not.toHaveBeenCalled();
    // The SR's sender info (28 bytes with its header) still goes through werift's field reader; the
    // receiver report, what idle subscribers send, reads nothing through it.
    readUIntBE.mockClear();
    expect(RtcpPacketConverter.deSerialize(compound.subarray(28))).toHaveLength(1);
    expect(readUIntBE).not.toHaveBeenCalled();
  });

  it('reads a header at an offset, and refuses a report block cut short', () => {
    const rr = new RtcpRrPacket({ ssrc: 1, reports: [block(2, 3)] }).serialize();
    const header = RtcpHeader.deSerialize(Buffer.concat([Buffer.alloc(3), rr]), 3);
    expect(header).toMatchObject({ version: 2, padding: false, count: 1, type: RtcpRrPacket.type, length: 7 });
    // A report count larger than the blocks present: the packet is dropped, not read past its end.
    const truncated = Buffer.from(rr.subarray(0, rr.length - 4));
    truncated.writeUInt16BE(truncated.length / 4 - 1, 2);
    expect(RtcpPacketConverter.deSerialize(truncated)).toEqual([]);
    expect(() => RtcpHeader.deSerialize(Buffer.from([0x81, 201, 0]))).toThrow(RangeError);
  });

  it('routes a receiver report to each sender it names, once, without copying its blocks', () => {
    const router = new RtpRouter();
    const audio = new RTCRtpSender('audio');
    const video = new RTCRtpSender('video');
    router.registerRtpSender(audio);
    router.registerRtpSender(video);
    const seen: { sender: string; packet: unknown }[] = [];
    audio.onRtcp.subscribe((packet) => seen.push({ sender: 'audio', packet }));
    video.onRtcp.subscribe((packet) => seen.push({ sender: 'video', packet }));
    const report = new RtcpRrPacket({ ssrc: 1, reports: [block(audio.ssrc, 5), block(0x1234_5678, 9)] });
    const filter = vi.spyOn(Array.prototype, 'filter');
    const forEach = vi.spyOn(Array.prototype, 'forEach');

    router.routeRtcp(report);

    expect(filter).not.toHaveBeenCalled();
    expect(forEach).not.toHaveBeenCalled();
    vi.restoreAllMocks();
    expect(seen).toEqual([{ sender: 'audio', packet: report }]);
    // What the sender keeps from its block (werift's stats read it); the other sender kept nothing.
    const remote = (sender: RTCRtpSender) =>
      sender as unknown as { remotePacketsLost?: number; remoteFractionLost?: number };
    expect(remote(audio)).toMatchObject({ remotePacketsLost: 5, remoteFractionLost: 200 / 256 });
    expect(remote(video).remotePacketsLost).toBeUndefined();
  });
});
