import { RtpHeader, RtpPacket } from 'werift';
import { align4, RING_CONTROL_BYTES as CONTROL_BYTES } from './ring-buffer.ts';

/**
 * A single-producer, single-consumer ring of RTP packets in a SharedArrayBuffer: how a worker relay
 * hands packets to another worker thread of the node. The producer writes each packet once, into
 * memory both threads see; nothing is cloned or transferred per packet, and the consumer copies each
 * packet out once (its relayed feed keeps it for NACKs). A packet that does not fit (the consumer is
 * stalled for seconds) is dropped and counted, never blocks the producer.
 *
 * Layout: four control words, then the records. A record is 4-byte aligned:
 *   u32 length (header + CSRCs + payload), u32 stream, u8 flags, u8 payload type, u16 sequence number,
 *   u32 timestamp, u32 SSRC, u8 CSRC count, u8 padding size, u16 zero, CSRCs (u32 each), payload.
 * A length of {@link WRAP} says the next record starts at offset 0.
 */

/** Next byte the producer writes (relative to the data area). */
const HEAD = 0;
/** Next byte the consumer reads. */
const TAIL = 1;
/** 1 while the consumer waits for a doorbell: the producer must ring after writing. */
const ARMED = 2;
/** Packets the producer dropped because the ring was full. */
const DROPPED = 3;
const RECORD_HEADER_BYTES = 24;
const WRAP = 0xffffffff;

/** Record flags. */
export const RING_MARKER = 1;
export const RING_PADDING = 2;
/** A retransmission asked for with a NACK: it fills the receiving history, it is not forwarded. */
export const RING_RETRANSMISSION = 4;

abstract class RingView {
  protected readonly control: Int32Array;
  protected readonly view: DataView;
  protected readonly bytes: Uint8Array;
  protected readonly capacity: number;

  constructor(buffer: SharedArrayBuffer) {
    this.control = new Int32Array(buffer, 0, CONTROL_BYTES / 4);
    this.capacity = buffer.byteLength - CONTROL_BYTES;
    this.view = new DataView(buffer, CONTROL_BYTES, this.capacity);
    this.bytes = new Uint8Array(buffer, CONTROL_BYTES, this.capacity);
  }

  get dropped(): number {
    return Atomics.load(this.control, DROPPED);
  }
}

export class RingWriter extends RingView {
  /**
   * Appends a packet; false when it does not fit (dropped). Returns true whether or not the consumer
   * needs a doorbell: {@link takeDoorbell} says that, once per batch.
   */
  write(stream: number, flags: number, packet: RtpPacket): boolean {
    const header = packet.header;
    const csrcs = header.csrc;
    const payload = packet.payload;
    const length = RECORD_HEADER_BYTES + csrcs.length * 4 + payload.length;
    const size = align4(length);
    const capacity = this.capacity;
    let head = Atomics.load(this.control, HEAD);
    const tail = Atomics.load(this.control, TAIL);
    // Bytes free, keeping one aligned word so a full ring never looks empty.
    const free = (tail - head - 4 + capacity) % capacity;
    const untilEnd = capacity - head;
    let needed = size;
    if (size > untilEnd) needed = untilEnd + size;
    if (needed > free || size > capacity / 2) {
      Atomics.add(this.control, DROPPED, 1);
      return false;
    }
    const view = this.view;
    if (size > untilEnd) {
      if (untilEnd >= 4) view.setUint32(head, WRAP);
      head = 0;
    }
    view.setUint32(head, length);
    view.setUint32(head + 4, stream);
    view.setUint8(head + 8, flags | (header.marker ? RING_MARKER : 0) | (header.padding ? RING_PADDING : 0));
    view.setUint8(head + 9, header.payloadType);
    view.setUint16(head + 10, header.sequenceNumber);
    view.setUint32(head + 12, header.timestamp);
    view.setUint32(head + 16, header.ssrc);
    view.setUint8(head + 20, csrcs.length);
    view.setUint8(head + 21, header.paddingSize);
    view.setUint16(head + 22, 0);
    let offset = head + RECORD_HEADER_BYTES;
    for (const csrc of csrcs) {
      view.setUint32(offset, csrc);
      offset += 4;
    }
    this.bytes.set(payload, offset);
    const next = head + size;
    Atomics.store(this.control, HEAD, next === capacity ? 0 : next);
    return true;
  }

  /** True once after the consumer armed its doorbell: the caller rings it (one message per batch). */
  takeDoorbell(): boolean {
    return Atomics.exchange(this.control, ARMED, 0) === 1;
  }
}

export class RingReader extends RingView {
  /** Calls `onPacket` for every packet written so far, oldest first; returns how many. */
  read(onPacket: (stream: number, flags: number, packet: RtpPacket) => void): number {
    const capacity = this.capacity;
    const view = this.view;
    let tail = Atomics.load(this.control, TAIL);
    const head = Atomics.load(this.control, HEAD);
    let count = 0;
    while (tail !== head) {
      const length = capacity - tail >= 4 ? view.getUint32(tail) : WRAP;
      if (length === WRAP) {
        tail = 0;
        continue;
      }
      const flags = view.getUint8(tail + 8);
      const csrcCount = view.getUint8(tail + 20);
      const csrc: number[] = [];
      for (let index = 0; index < csrcCount; index++) csrc.push(view.getUint32(tail + RECORD_HEADER_BYTES + index * 4));
      const payloadStart = tail + RECORD_HEADER_BYTES + csrcCount * 4;
      const payload = Buffer.allocUnsafe(length - (payloadStart - tail));
      payload.set(this.bytes.subarray(payloadStart, tail + length));
      const header = new RtpHeader({
        marker: (flags & RING_MARKER) !== 0,
        padding: (flags & RING_PADDING) !== 0,
        paddingSize: view.getUint8(tail + 21),
        payloadType: view.getUint8(tail + 9),
        sequenceNumber: view.getUint16(tail + 10),
        timestamp: view.getUint32(tail + 12),
        ssrc: view.getUint32(tail + 16),
        csrc,
        csrcLength: csrcCount,
      });
      const stream = view.getUint32(tail + 4);
      const next = tail + align4(length);
      tail = next === capacity ? 0 : next;
      // Released before the callback: a callback that throws must not make the packet come again.
      Atomics.store(this.control, TAIL, tail);
      count++;
      onPacket(stream, flags, new RtpPacket(header, payload));
    }
    return count;
  }

  /**
   * Asks for a doorbell with the next write. Returns false when packets arrived meanwhile (the
   * producer may have seen the doorbell unarmed): the caller reads again instead of waiting.
   */
  arm(): boolean {
    Atomics.store(this.control, ARMED, 1);
    return Atomics.load(this.control, HEAD) === Atomics.load(this.control, TAIL);
  }
}
