import { MessageChannel } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { MediaStreamTrack, RtpHeader, RtpPacket } from 'werift';
import { createForwardingStats } from '../../media-node/src/sfu/forwarding-stats.ts';
import type { MediaRoom } from '../../media-node/src/sfu/room.ts';
import { type RtpSink, type SourceLayer, SourceTrack } from '../../media-node/src/sfu/source-track.ts';
import { RING_RETRANSMISSION, RingReader, RingWriter } from '../../media-node/src/workers/packet-ring.ts';
import { createRingBuffer } from '../../media-node/src/workers/ring-buffer.ts';
import { WorkerRelay } from '../../media-node/src/workers/worker-relay.ts';
import { waitFor } from '../support/werift-peers.ts';
import { silentLogger, VP8 } from './source-tracks.ts';

function packet(sequenceNumber: number, payloadBytes = 100, header: Partial<RtpHeader> = {}): RtpPacket {
  const payload = Buffer.alloc(payloadBytes, sequenceNumber & 0xff);
  return new RtpPacket(
    new RtpHeader({ payloadType: 96, sequenceNumber, timestamp: sequenceNumber * 3000, ssrc: 1234, ...header }),
    payload,
  );
}

function readAll(reader: RingReader): { stream: number; flags: number; packet: RtpPacket }[] {
  const read: { stream: number; flags: number; packet: RtpPacket }[] = [];
  reader.read((stream, flags, packet) => read.push({ stream, flags, packet }));
  return read;
}

describe('packet ring (worker relay)', () => {
  it('carries every RTP field, CSRCs and the payload, with the stream id and flags', () => {
    const buffer = createRingBuffer(4096);
    const writer = new RingWriter(buffer);
    const reader = new RingReader(buffer);
    const original = packet(65_535, 37, {
      marker: true,
      csrc: [7, 0xffffffff],
      csrcLength: 2,
      timestamp: 0xfffffff0,
      ssrc: 0x80000001,
      payloadType: 111,
    });
    expect(writer.write(0xfffffffe, RING_RETRANSMISSION, original)).toBe(true);
    expect(writer.write(3, 0, packet(0, 0))).toBe(true);
    const [first, second] = readAll(reader);
    expect(first!.stream).toBe(0xfffffffe);
    expect(first!.flags & RING_RETRANSMISSION).toBeTruthy();
    expect(first!.packet.serialize().equals(original.serialize())).toBe(true);
    expect(second!.stream).toBe(3);
    expect(second!.packet.payload.length).toBe(0);
    expect(readAll(reader)).toEqual([]);
  });

  it('wraps around its end, and drops (and counts) what does not fit instead of overwriting', () => {
    const buffer = createRingBuffer(1024);
    const writer = new RingWriter(buffer);
    const reader = new RingReader(buffer);
    let next = 0;
    const seen: number[] = [];
    // Records of 24 + 200 bytes: four fit; reading frees room, the fifth write wraps.
    for (let round = 0; round < 20; round++) {
      while (writer.write(1, 0, packet(next, 200))) next++;
      expect(writer.dropped).toBe(round + 1);
      for (const { packet: read } of readAll(reader)) {
        expect(read.payload.equals(Buffer.alloc(200, read.header.sequenceNumber & 0xff))).toBe(true);
        seen.push(read.header.sequenceNumber);
      }
    }
    expect(seen).toEqual(Array.from({ length: next }, (_, index) => index));
    expect(next).toBeGreaterThan(20 * 3);
  });

  it('asks for one doorbell per batch, and only while the reader waits for one', () => {
    const buffer = createRingBuffer(4096);
    const writer = new RingWriter(buffer);
    const reader = new RingReader(buffer);
    // Not armed yet: the reader is reading anyway.
    writer.write(1, 0, packet(1));
    expect(writer.takeDoorbell()).toBe(false);
    // A packet came after the last read: arming says read again rather than wait.
    expect(reader.arm()).toBe(false);
    expect(readAll(reader)).toHaveLength(1);
    expect(reader.arm()).toBe(true);
    writer.write(1, 0, packet(2));
    writer.write(1, 0, packet(3));
    expect(writer.takeDoorbell()).toBe(true);
    expect(writer.takeDoorbell()).toBe(false);
    expect(readAll(reader)).toHaveLength(2);
  });
});

/** A sink that records what a relayed track fans out. */
class RecordingSink implements RtpSink {
  readonly packets: RtpPacket[] = [];
  closed = false;
  forward(packet: RtpPacket): void {
    this.packets.push(packet);
  }
  layersChanged(): void {}
  close(): void {
    this.closed = true;
  }
}

/**
 * Two worker relays linked as the pool links two worker threads, here in one thread: worker A holds a
 * publisher's VP8 track (fed by hand), worker B's room wants its feed.
 */
function linkedRelays() {
  const roomId = 'room';
  const feed = 'publisher';
  const keyframeRequests: SourceLayer[] = [];
  const weriftTracks = [
    new MediaStreamTrack({ kind: 'video', rid: 'q' }),
    new MediaStreamTrack({ kind: 'video', rid: 'h' }),
  ];
  let published: SourceTrack[] = [];
  const publish = () => {
    const source = new SourceTrack({
      publisherId: feed,
      kind: 'video',
      mid: '1',
      codec: VP8,
      tracks: weriftTracks,
      sendKeyframeRequest: async (layer) => {
        keyframeRequests.push(layer);
      },
      stats: createForwardingStats(),
      logger: silentLogger,
    });
    published = [source];
    return source;
  };
  const refreshed: string[] = [];
  const originRooms = { localFeedTracks: () => published };
  const origin = new WorkerRelay({ roomOf: () => originRooms as unknown as MediaRoom, logger: silentLogger });
  const viewing = new WorkerRelay({
    roomOf: () => ({ refreshSubscribersOf: (id: string) => refreshed.push(id) }) as unknown as MediaRoom,
    logger: silentLogger,
  });
  const { port1, port2 } = new MessageChannel();
  const toViewing = createRingBuffer(64 * 1024);
  const toOrigin = createRingBuffer(64 * 1024);
  origin.link({ peer: 1, port: port1, outbound: toViewing, inbound: toOrigin });
  viewing.link({ peer: 0, port: port2, outbound: toOrigin, inbound: toViewing });
  return {
    roomId,
    feed,
    origin,
    viewing,
    weriftTracks,
    publish,
    keyframeRequests,
    refreshed,
    published: () => published,
  };
}

describe('worker relay between two workers', () => {
  it('describes a wanted feed with its layers, relays its packets once, and sends keyframe requests and NACKs back', async () => {
    const relay = linkedRelays();
    const source = relay.publish();
    source.layers[1]!.width = 1280;
    source.layers[1]!.height = 720;
    await relay.viewing.want(relay.roomId, new Set([relay.feed]));
    const [relayed] = relay.viewing.tracksOf(relay.roomId, relay.feed);
    expect(relayed).toBeDefined();
    expect(relayed!.layers.map((layer) => [layer.rid, layer.width, layer.height])).toEqual([
      ['q', 0, 0],
      ['h', 1280, 720],
    ]);
    expect(relayed!.codec.mimeType).toBe('video/VP8');

    const sink = new RecordingSink();
    relayed!.attach(sink, relayed!.layers[1]!);
    for (let sequenceNumber = 100; sequenceNumber < 110; sequenceNumber++) {
      relay.weriftTracks[1]!.onReceiveRtp.execute(packet(sequenceNumber));
    }
    await waitFor(() => sink.packets.length === 10, { message: 'the relayed packets' });
    expect(sink.packets.map((forwarded) => forwarded.header.sequenceNumber)).toEqual(
      Array.from({ length: 10 }, (_, index) => 100 + index),
    );
    expect(relayed!.layers[1]!.active).toBe(true);

    relayed!.requestKeyframe(relayed!.layers[1]!);
    await waitFor(() => relay.keyframeRequests.length === 1, { message: 'the keyframe request at the origin' });
    expect(relay.keyframeRequests[0]).toBe(source.layers[1]);

    // The relayed layer keeps its own history: NACKs of its viewers are answered on their worker.
    expect(relayed!.layers[1]!.packetBySequenceNumber(105)?.header.sequenceNumber).toBe(105);
  });

  it('retransmits from the origin what the relayed history lost', async () => {
    const relay = linkedRelays();
    const source = relay.publish();
    // The origin relays 200-204 before the viewing side wants the feed: only the origin holds them.
    for (let sequenceNumber = 200; sequenceNumber < 205; sequenceNumber++) {
      relay.weriftTracks[0]!.onReceiveRtp.execute(packet(sequenceNumber));
    }
    await relay.viewing.want(relay.roomId, new Set([relay.feed]));
    const [relayed] = relay.viewing.tracksOf(relay.roomId, relay.feed);
    const layer = relayed!.layers[0]!;
    expect(source.layers[0]!.packetBySequenceNumber(202)).toBeDefined();
    expect(layer.packetBySequenceNumber(202)).toBeUndefined();
    await waitFor(() => layer.packetBySequenceNumber(202)?.header.sequenceNumber === 202, {
      message: 'the retransmission in the relayed history',
    });
  });

  it('follows the origin: mute, a track ended, a feed published again; unwanting releases the origin', async () => {
    const relay = linkedRelays();
    const source = relay.publish();
    await relay.viewing.want(relay.roomId, new Set([relay.feed]));
    const [relayed] = relay.viewing.tracksOf(relay.roomId, relay.feed);
    const sink = new RecordingSink();
    relayed!.attach(sink, relayed!.layers[0]!);

    source.setMuted(true);
    relay.origin.feedChanged(relay.roomId, relay.feed);
    await waitFor(() => relayed!.muted, { message: 'the relayed track muted' });

    // The publisher's track ends (it left or renegotiated): the relayed one ends, its viewers with it.
    relay.published().length = 0;
    source.close();
    await waitFor(() => relayed!.closed && sink.closed, { message: 'the relayed track closed' });
    expect(relay.viewing.tracksOf(relay.roomId, relay.feed)).toEqual([]);

    // Published again: the room's subscribers are told to take the new track up.
    const again = relay.publish();
    relay.origin.feedChanged(relay.roomId, relay.feed);
    await waitFor(() => relay.viewing.tracksOf(relay.roomId, relay.feed).length === 1, { message: 'the new track' });
    expect(relay.refreshed).toContain(relay.feed);

    // The last viewer here is gone: the origin's track has no relay attached any more.
    const attachedLayer = again.layers[0]!;
    expect(attachedLayer.sinks).toHaveLength(1);
    await relay.viewing.want(relay.roomId, new Set());
    await waitFor(() => attachedLayer.sinks.length === 0, { message: 'the origin to stop relaying' });
    expect(relay.viewing.tracksOf(relay.roomId, relay.feed)).toEqual([]);
  });
});
