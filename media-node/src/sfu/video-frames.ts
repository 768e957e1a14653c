/**
 * What the forwarding path reads from video payloads: where a keyframe starts (a layer switch or a
 * resume may only happen there), the resolution a VP8 keyframe announces (layers are ranked by it),
 * and the VP8 picture ID / TL0PICIDX, which a viewer's stream must keep continuous across a switch.
 * Every reader fills a caller-owned object: nothing is allocated per packet.
 */

/** A VP8 payload descriptor (RFC 7741 §4.2) and, for a keyframe's first packet, its frame size. */
export interface Vp8Descriptor {
  /** Bytes of the payload descriptor (before the VP8 payload header). */
  length: number;
  /** Byte offset of the picture ID, -1 when absent. */
  pictureIdOffset: number;
  /** The picture ID is 15 bits (M bit set), else 7. */
  pictureIdLong: boolean;
  pictureId: number;
  /** Byte offset of TL0PICIDX, -1 when absent. */
  tl0PicIdxOffset: number;
  tl0PicIdx: number;
  /** The first packet of a keyframe (start of partition 0, P bit clear). */
  keyframe: boolean;
  /** From the keyframe header; 0 when this packet does not carry it. */
  width: number;
  height: number;
}

export function emptyVp8Descriptor(): Vp8Descriptor {
  return {
    length: 0,
    pictureIdOffset: -1,
    pictureIdLong: false,
    pictureId: 0,
    tl0PicIdxOffset: -1,
    tl0PicIdx: 0,
    keyframe: false,
    width: 0,
    height: 0,
  };
}

/** The longest VP8 payload descriptor: X, I/L/T/K, a 15-bit picture ID, TL0PICIDX, TID/KEYIDX. */
export const MAX_VP8_DESCRIPTOR_LENGTH = 6;

/** Parses `payload`'s VP8 payload descriptor into `out`; false when the payload is too short for one. */
export function readVp8Descriptor(payload: Buffer, out: Vp8Descriptor): boolean {
  const size = payload.length;
  if (size < 1) return false;
  const first = payload[0]!;
  let offset = 1;
  out.pictureIdOffset = -1;
  out.tl0PicIdxOffset = -1;
  out.keyframe = false;
  out.width = 0;
  out.height = 0;
  if (first & 0x80) {
    if (size < 2) return false;
    const extension = payload[1]!;
    offset = 2;
    if (extension & 0x80) {
      if (offset >= size) return false;
      out.pictureIdOffset = offset;
      if (payload[offset]! & 0x80) {
        if (offset + 1 >= size) return false;
        out.pictureIdLong = true;
        out.pictureId = ((payload[offset]! & 0x7f) << 8) | payload[offset + 1]!;
        offset += 2;
      } else {
        out.pictureIdLong = false;
        out.pictureId = payload[offset]!;
        offset += 1;
      }
    }
    if (extension & 0x40) {
      if (offset >= size) return false;
      out.tl0PicIdxOffset = offset;
      out.tl0PicIdx = payload[offset]!;
      offset += 1;
    }
    if (extension & 0x30) offset += 1;
  }
  if (offset >= size) return false;
  out.length = offset;
  const startOfPartitionZero = (first & 0x10) !== 0 && (first & 0x07) === 0;
  // The VP8 payload header's P bit (RFC 7741 §4.3): 0 for a keyframe.
  if (startOfPartitionZero && (payload[offset]! & 0x01) === 0) {
    out.keyframe = true;
    // Frame tag (3 bytes), start code 9d 01 2a, then 14-bit width and height (RFC 6386 §9.1).
    if (offset + 10 <= size && payload[offset + 3] === 0x9d && payload[offset + 4] === 0x01) {
      out.width = payload.readUInt16LE(offset + 6) & 0x3fff;
      out.height = payload.readUInt16LE(offset + 8) & 0x3fff;
    }
  }
  return true;
}

const H264_NAL_IDR = 5;
const H264_NAL_SPS = 7;
const H264_STAP_A = 24;
const H264_FU_A = 28;

/**
 * The packet starts a decodable H.264 picture: an SPS (browsers send SPS/PPS right before each IDR)
 * or an IDR slice, alone, in a STAP-A aggregate, or as the first fragment of an FU-A (RFC 6184).
 */
export function isH264KeyframeStart(payload: Buffer): boolean {
  if (payload.length < 2) return false;
  const type = payload[0]! & 0x1f;
  if (type === H264_NAL_IDR || type === H264_NAL_SPS) return true;
  if (type === H264_FU_A) return (payload[1]! & 0x80) !== 0 && (payload[1]! & 0x1f) === H264_NAL_IDR;
  if (type === H264_STAP_A) {
    for (let offset = 1; offset + 2 < payload.length; ) {
      const naluSize = payload.readUInt16BE(offset);
      const naluType = payload[offset + 2]! & 0x1f;
      if (naluType === H264_NAL_IDR || naluType === H264_NAL_SPS) return true;
      offset += 2 + naluSize;
    }
  }
  return false;
}

/**
 * One viewer's VP8 picture ID and TL0PICIDX rewriting: after a switch to another layer (another
 * encoder, with its own counters) they continue from the last ones the viewer saw, as mediasoup
 * and LiveKit do: a decoder that sees them jump back treats the frames as old and drops them.
 * Before the first switch the offsets are 0 and payloads go out untouched.
 */
export class Vp8PictureIdRewriter {
  #pictureIdOffset = 0;
  #tl0PicIdxOffset = 0;
  /** The last picture ID / TL0PICIDX sent to the viewer, -1 before any. */
  #lastPictureId = -1;
  #lastTl0PicIdx = -1;
  readonly #descriptor = emptyVp8Descriptor();
  readonly #scratch = Buffer.alloc(MAX_VP8_DESCRIPTOR_LENGTH);
  /** Views of the scratch buffer by length, made once. */
  readonly #prefixes = Array.from({ length: MAX_VP8_DESCRIPTOR_LENGTH + 1 }, (_, length) =>
    this.#scratch.subarray(0, length),
  );

  /**
   * The rewritten payload descriptor to send in place of `payload`'s own first bytes, or undefined
   * when it goes out unchanged. A retransmission does not move the last-sent counters.
   */
  prefixFor(payload: Buffer, retransmission: boolean): Buffer | undefined {
    const descriptor = this.#descriptor;
    if (!readVp8Descriptor(payload, descriptor)) return undefined;
    const pictureIdMask = descriptor.pictureIdLong ? 0x7fff : 0x7f;
    const pictureId = (descriptor.pictureId + this.#pictureIdOffset) & pictureIdMask;
    const tl0PicIdx = (descriptor.tl0PicIdx + this.#tl0PicIdxOffset) & 0xff;
    if (!retransmission) {
      if (descriptor.pictureIdOffset >= 0) this.#lastPictureId = pictureId;
      if (descriptor.tl0PicIdxOffset >= 0) this.#lastTl0PicIdx = tl0PicIdx;
    }
    if (this.#pictureIdOffset === 0 && this.#tl0PicIdxOffset === 0) return undefined;
    const scratch = this.#scratch;
    payload.copy(scratch, 0, 0, descriptor.length);
    if (descriptor.pictureIdOffset >= 0) {
      if (descriptor.pictureIdLong) {
        scratch[descriptor.pictureIdOffset] = 0x80 | (pictureId >> 8);
        scratch[descriptor.pictureIdOffset + 1] = pictureId & 0xff;
      } else {
        scratch[descriptor.pictureIdOffset] = pictureId;
      }
    }
    if (descriptor.tl0PicIdxOffset >= 0) scratch[descriptor.tl0PicIdxOffset] = tl0PicIdx;
    return this.#prefixes[descriptor.length];
  }

  /** The viewer switches to another stream starting with `payload`: its counters continue from the last sent. */
  rebase(payload: Buffer): void {
    const descriptor = this.#descriptor;
    if (!readVp8Descriptor(payload, descriptor)) return;
    if (descriptor.pictureIdOffset >= 0 && this.#lastPictureId >= 0) {
      this.#pictureIdOffset = (this.#lastPictureId + 1 - descriptor.pictureId) & 0x7fff;
    }
    if (descriptor.tl0PicIdxOffset >= 0 && this.#lastTl0PicIdx >= 0) {
      this.#tl0PicIdxOffset = (this.#lastTl0PicIdx + 1 - descriptor.tl0PicIdx) & 0xff;
    }
  }
}
