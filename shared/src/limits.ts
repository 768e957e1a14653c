/**
 * Size and count limits of the wire contract. They live next to the schemas that enforce them so
 * that every side (edge, media node, SDK, tests) rejects the same inputs.
 */
export const LIMITS = {
  roomNameMaxChars: 128,
  displayMaxChars: 64,
  maxPublishersMin: 1,
  maxPublishersMax: 100,
  maxPublishersDefault: 10,
  /** An SDP is at most 64 KiB; real offers with simulcast are ~10 KiB. */
  sdpMaxBytes: 64 * 1024,
  /**
   * A relay's offer or answer between media nodes: an m-line (~0.8 KiB) per layer of every relayed
   * track, up to 64 feeds of a simulcast camera and its audio (256 m-lines).
   */
  relaySdpMaxBytes: 256 * 1024,
  /** REST bodies above this are answered 413. */
  restBodyMaxBytes: 16 * 1024,
  /** A signaling frame above this is answered `message_too_large`: room for a 64 KiB SDP and its envelope. */
  frameMaxBytes: 64 * 1024 + 4 * 1024,
  requestIdMaxChars: 64,
  candidateMaxChars: 1024,
  feedsPerRequestMax: 100,
  tokenMaxChars: 4096,
  iceServerUrlMaxChars: 512,
  /** `send_data`: the message itself, in UTF-8 bytes. */
  dataMaxBytes: 16 * 1024,
  dataTopicMaxChars: 64,
  dataRecipientsMax: 100,
} as const;

/**
 * `active_speakers` reaches clients at most this often per room (4 times a second): the media node
 * reports no faster, and the room's Durable Object holds back a report that comes sooner. Here, not
 * beside the schema in signaling.ts, so that the media worker reads it without loading zod.
 */
export const ACTIVE_SPEAKERS_MIN_INTERVAL_MS = 250;

const encoder = new TextEncoder();

/** UTF-8 byte length: limits are on bytes on the wire, not on UTF-16 code units. */
export function utf8Length(text: string): number {
  return encoder.encode(text).byteLength;
}
