import { describe, expect, it } from 'vitest';
import {
  MediaStreamTrack,
  RTCRtpCodecParameters,
  RTCRtpReceiver,
  RTP_EXTENSION_URI,
  RtpHeader,
  RtpPacket,
  RtpRouter,
  serializeRepairedRtpStreamId,
  serializeSdesMid,
  serializeSdesRTPStreamID,
  wrapRtx,
} from 'werift';
import { rembFields } from '../../media-node/src/sfu/bandwidth-feedback.ts';
import { simulcastProblem, withPlainRidLines } from '../../media-node/src/sfu/sdp-text.ts';
import type { RtpSink, SourceLayer } from '../../media-node/src/sfu/source-track.ts';
import {
  emptyVp8Descriptor,
  isH264KeyframeStart,
  readVp8Descriptor,
  Vp8PictureIdRewriter,
} from '../../media-node/src/sfu/video-frames.ts';
import { VP8, vp8Source } from './source-tracks.ts';

const VP8_RTX = new RTCRtpCodecParameters({
  mimeType: 'video/rtx',
  clockRate: 90_000,
  payloadType: 97,
  parameters: 'apt=96',
});

/**
 * A VP8 payload as Chromium sends it: X, I (15-bit picture ID), L (TL0PICIDX), T (TID); for a
 * keyframe the first packet also carries the frame tag, start code and size.
 */
function vp8Payload(options: { pictureId: number; tl0PicIdx: number; keyframe?: { width: number; height: number } }) {
  const descriptor = Buffer.from([
    0x90, // X, S, partition 0
    0xe0, // I, L, T
    0x80 | (options.pictureId >> 8),
    options.pictureId & 0xff,
    options.tl0PicIdx,
    0x00,
  ]);
  if (!options.keyframe) return Buffer.concat([descriptor, Buffer.from([0x01, 0xaa, 0xbb, 0xcc])]);
  const header = Buffer.alloc(10);
  header[0] = 0x00; // P = 0: keyframe
  header[3] = 0x9d;
  header[4] = 0x01;
  header[5] = 0x2a;
  header.writeUInt16LE(options.keyframe.width, 6);
  header.writeUInt16LE(options.keyframe.height, 8);
  return Buffer.concat([descriptor, header, Buffer.from([0xaa])]);
}

function rtp(ssrc: number, sequenceNumber: number, payload: Buffer, payloadType = 96) {
  return new RtpPacket(new RtpHeader({ ssrc, sequenceNumber, timestamp: sequenceNumber * 3000, payloadType }), payload);
}

describe('video frame reading', () => {
  it('reads a VP8 keyframe: descriptor fields and the frame size', () => {
    const descriptor = emptyVp8Descriptor();
    expect(
      readVp8Descriptor(
        vp8Payload({ pictureId: 0x1234, tl0PicIdx: 7, keyframe: { width: 320, height: 180 } }),
        descriptor,
      ),
    ).toBe(true);
    expect(descriptor).toMatchObject({
      length: 6,
      pictureId: 0x1234,
      pictureIdLong: true,
      tl0PicIdx: 7,
      keyframe: true,
      width: 320,
      height: 180,
    });
    readVp8Descriptor(vp8Payload({ pictureId: 5, tl0PicIdx: 7 }), descriptor);
    expect(descriptor.keyframe).toBe(false);
    expect(readVp8Descriptor(Buffer.from([0x90]), descriptor)).toBe(false);
  });

  it('finds H.264 keyframe starts alone, in STAP-A and in FU-A', () => {
    expect(isH264KeyframeStart(Buffer.from([0x65, 0x88]))).toBe(true); // IDR
    expect(isH264KeyframeStart(Buffer.from([0x41, 0x9a]))).toBe(false); // non-IDR slice
    expect(isH264KeyframeStart(Buffer.from([0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce]))).toBe(true);
    expect(isH264KeyframeStart(Buffer.from([0x7c, 0x85, 0x00]))).toBe(true); // FU-A, start, IDR
    expect(isH264KeyframeStart(Buffer.from([0x7c, 0x05, 0x00]))).toBe(false); // FU-A, not the start
  });

  it('keeps a viewer’s picture IDs and TL0PICIDX continuous across a switch, without touching the source', () => {
    const rewriter = new Vp8PictureIdRewriter();
    // Before any switch: payloads go out as they are.
    const first = vp8Payload({ pictureId: 100, tl0PicIdx: 50 });
    expect(rewriter.prefixFor(first, false)).toBeUndefined();
    expect(rewriter.prefixFor(vp8Payload({ pictureId: 101, tl0PicIdx: 51 }), false)).toBeUndefined();
    // Another layer's keyframe with its own counters: the viewer continues at 102 / 52.
    const keyframe = vp8Payload({ pictureId: 0x7ffe, tl0PicIdx: 250, keyframe: { width: 1280, height: 720 } });
    const original = Buffer.from(keyframe);
    rewriter.rebase(keyframe);
    const descriptor = emptyVp8Descriptor();
    readVp8Descriptor(rewriter.prefixFor(keyframe, false)!, descriptor);
    expect([descriptor.pictureId, descriptor.tl0PicIdx]).toEqual([102, 52]);
    expect(keyframe).toEqual(original);
    // Wrapping source counters still count on by one.
    readVp8Descriptor(rewriter.prefixFor(vp8Payload({ pictureId: 0x7fff, tl0PicIdx: 251 }), false)!, descriptor);
    expect([descriptor.pictureId, descriptor.tl0PicIdx]).toEqual([103, 53]);
    readVp8Descriptor(rewriter.prefixFor(vp8Payload({ pictureId: 0, tl0PicIdx: 252 }), false)!, descriptor);
    expect([descriptor.pictureId, descriptor.tl0PicIdx]).toEqual([104, 54]);
    // A retransmission of an older packet is rewritten alike but does not move the counters.
    rewriter.prefixFor(vp8Payload({ pictureId: 0x7ffe, tl0PicIdx: 250 }), true);
    rewriter.rebase(vp8Payload({ pictureId: 9, tl0PicIdx: 9, keyframe: { width: 320, height: 180 } }));
    readVp8Descriptor(rewriter.prefixFor(vp8Payload({ pictureId: 9, tl0PicIdx: 9 }), false)!, descriptor);
    expect([descriptor.pictureId, descriptor.tl0PicIdx]).toEqual([105, 55]);
  });
});

describe('simulcast offers', () => {
  const offer = (rids: string[]) =>
    ['v=0', 'm=video 9 UDP/TLS/RTP/SAVPF 96', ...rids.map((rid) => `a=rid:${rid}`), `a=simulcast:send q;h;f`].join(
      '\r\n',
    );

  it('accepts up to three sent rids and strips restrictions werift would misread', () => {
    expect(simulcastProblem(offer(['q send', 'h send', 'f send max-width=1280']))).toBeUndefined();
    expect(withPlainRidLines(offer(['f send max-width=1280;max-height=720']))).toContain('a=rid:f send\r\n');
    expect(simulcastProblem(offer(['a send', 'b send', 'c send', 'd send']))).toMatch(/more than 3/);
    expect(simulcastProblem(offer(['q recv']))).toMatch(/only send/);
    expect(simulcastProblem(offer(['q send', 'q send']))).toMatch(/twice/);
    expect(simulcastProblem(offer(['bad!rid send']))).toMatch(/rid must be/);
  });

  it('encodes REMB bitrates in 18-bit mantissa and exponent', () => {
    const { brExp, brMantissa } = rembFields(6_000_000);
    expect(brMantissa).toBeLessThanOrEqual(0x3ffff);
    expect(brMantissa * 2 ** brExp).toBeGreaterThan(5_990_000);
    expect(rembFields(100_000)).toEqual({ brExp: 0, brMantissa: 100_000 });
  });
});

describe('werift simulcast receive (patches/werift+0.25.2.patch)', () => {
  /** A router with one receiver per m-line, each with rid tracks q/h/f, as werift sets them up from an offer. */
  function routerWithMlines(mids: string[]) {
    const router = new RtpRouter();
    router.extIdUriMap[1] = RTP_EXTENSION_URI.sdesMid;
    router.extIdUriMap[2] = RTP_EXTENSION_URI.sdesRTPStreamID;
    router.extIdUriMap[3] = RTP_EXTENSION_URI.repairedRtpStreamId;
    const receivers = mids.map((mid, index) => {
      const receiver = new RTCRtpReceiver({} as never, 'video', 1000 + index);
      receiver.prepareReceive({ codecs: [VP8, VP8_RTX], encodings: [], headerExtensions: [] } as never);
      const transceiver = {
        mid,
        kind: 'video',
        receiver,
        sender: { trackId: `track-${mid}` },
        addTrack: (track: MediaStreamTrack) => receiver.addTrack(track),
      };
      for (const rid of ['q', 'h', 'f']) {
        router.registerRtpReceiverByRid(transceiver as never, { rid } as never, { codecs: [VP8] } as never);
      }
      return receiver;
    });
    return { router, receivers };
  }

  function withIds(packet: RtpPacket, ids: { mid?: string; rid?: string; rrid?: string }) {
    const extensions = [];
    if (ids.mid) extensions.push({ id: 1, payload: serializeSdesMid(ids.mid) });
    if (ids.rid) extensions.push({ id: 2, payload: serializeSdesRTPStreamID(ids.rid) });
    if (ids.rrid) extensions.push({ id: 3, payload: serializeRepairedRtpStreamId(ids.rrid) });
    packet.header.extension = extensions.length > 0;
    packet.header.extensions = extensions;
    return packet;
  }

  it('delivers every rid of every m-line to its own track, two m-lines with the same rids included', () => {
    const { router, receivers } = routerWithMlines(['0', '1']);
    const received: string[] = [];
    receivers.forEach((receiver, index) => {
      for (const track of receiver.tracks) {
        track.onReceiveRtp.subscribe((packet) =>
          received.push(`${index}/${track.rid}/${packet.header.sequenceNumber}`),
        );
      }
    });
    const payload = vp8Payload({ pictureId: 1, tl0PicIdx: 1 });
    router.routeRtp(withIds(rtp(11, 1, payload), { mid: '0', rid: 'q' }));
    router.routeRtp(withIds(rtp(12, 1, payload), { mid: '0', rid: 'f' }));
    router.routeRtp(withIds(rtp(21, 1, payload), { mid: '1', rid: 'q' }));
    // Later packets carry no ids: the SSRC learnt from the first one routes them.
    router.routeRtp(rtp(21, 2, payload));
    router.routeRtp(rtp(11, 2, payload));
    expect(received).toEqual(['0/q/1', '0/f/1', '1/q/1', '1/q/2', '0/q/2']);
    for (const receiver of receivers) receiver.stop();
  });

  it('tracks NACKs per SSRC: interleaved layers are no loss, a real gap in one layer is', () => {
    const { router, receivers } = routerWithMlines(['0']);
    const receiver = receivers[0]!;
    const payload = vp8Payload({ pictureId: 1, tl0PicIdx: 1 });
    for (let index = 0; index < 5; index++) {
      router.routeRtp(withIds(rtp(11, 100 + index, payload), { mid: '0', rid: 'q' }));
      router.routeRtp(withIds(rtp(12, 30_000 + index, payload), { mid: '0', rid: 'h' }));
    }
    // The patched receiver's trackers (werift keeps them private).
    type Tracker = { lostSeqNumbers: number[] };
    const trackers = receiver as unknown as { nack: Tracker; nackBySsrc: Record<number, Tracker> };
    const lost = () => [trackers.nack, ...Object.values(trackers.nackBySsrc)].flatMap((nack) => nack.lostSeqNumbers);
    expect(lost()).toEqual([]);
    router.routeRtp(rtp(12, 30_007, payload));
    expect(lost()).toEqual([30_005, 30_006]);
    receiver.stop();
  });

  it('unwraps a layer’s retransmission known only by its repaired rid', () => {
    const { router, receivers } = routerWithMlines(['0']);
    const receiver = receivers[0]!;
    const delivered: number[] = [];
    receiver.trackByRID.h!.onReceiveRtp.subscribe((packet) => {
      expect(packet.header.ssrc).toBe(12);
      delivered.push(packet.header.sequenceNumber);
    });
    const payload = vp8Payload({ pictureId: 1, tl0PicIdx: 1 });
    router.routeRtp(withIds(rtp(12, 500, payload), { mid: '0', rid: 'h' }));
    router.routeRtp(withIds(rtp(12, 502, payload), { mid: '0', rid: 'h' }));
    const retransmission = wrapRtx(rtp(12, 501, payload), 97, 7, 99);
    router.routeRtp(withIds(retransmission, { mid: '0', rrid: 'h' }));
    expect(delivered).toEqual([500, 502, 501]);
    receiver.stop();
  });
});

describe('SourceTrack layers', () => {
  it('tells a sink that watches before any layer is active when layers become active (a relayed feed’s viewer)', () => {
    const tracks = ['q', 'h'].map((rid) => new MediaStreamTrack({ kind: 'video', rid }));
    const source = vp8Source(tracks);
    let changes = 0;
    const sink: RtpSink = { forward() {}, layersChanged: () => void changes++, close() {} };
    expect(source.layerFor({})).toBeUndefined();
    source.watch(sink);
    tracks[0]!.onReceiveRtp.execute(rtp(10, 1, vp8Payload({ pictureId: 1, tl0PicIdx: 1 })));
    expect(changes).toBe(1);
    expect(source.layerFor({})?.rid).toBe('q');
    // Released, it hears nothing more.
    source.release(sink);
    tracks[1]!.onReceiveRtp.execute(rtp(11, 1, vp8Payload({ pictureId: 1, tl0PicIdx: 1 })));
    expect(changes).toBe(1);
    source.close();
  });

  it('ranks layers by the resolution their keyframes announce, and forwards only watched layers', () => {
    const tracks = ['q', 'h', 'f'].map((rid) => new MediaStreamTrack({ kind: 'video', rid }));
    const source = vp8Source(tracks);
    const sizes = [
      { width: 320, height: 180 },
      { width: 640, height: 360 },
      { width: 1280, height: 720 },
    ];
    // The offer order says nothing: here the browser listed the full layer first.
    const order = [2, 0, 1];
    const forwarded: string[] = [];
    const sink: RtpSink = {
      forward: (_packet, layer: SourceLayer, keyframe) => forwarded.push(`${layer.rid}${keyframe ? '*' : ''}`),
      layersChanged() {},
      close() {},
    };
    tracks.forEach((track, index) => {
      const size = sizes[order[index]!]!;
      track.onReceiveRtp.execute(rtp(10 + index, 1, vp8Payload({ pictureId: 1, tl0PicIdx: 1, keyframe: size })));
    });
    expect(source.layerFor({})?.rid).toBe('q'); // 1280×720
    expect(source.layerFor({ maxWidth: 320, maxHeight: 180 })?.rid).toBe('h');
    expect(source.layerFor({ maxWidth: 321, maxHeight: 180 })?.rid).toBe('f');
    expect(source.layerFor({ maxWidth: 2000 })?.rid).toBe('q');
    expect(source.layerFor({ maxHeight: 0 })?.rid).toBe('h');
    source.attach(sink, source.layers[1]!);
    tracks.forEach((track, index) => {
      track.onReceiveRtp.execute(rtp(10 + index, 2, vp8Payload({ pictureId: 2, tl0PicIdx: 1 })));
    });
    expect(forwarded).toEqual(['h']);
    source.close();
  });
});
