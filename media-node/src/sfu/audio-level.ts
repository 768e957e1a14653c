/**
 * RFC 6464 client-to-mixer audio levels (`urn:ietf:params:rtp-hdrext:ssrc-audio-level`), which
 * browsers put on every audio packet they send, and the per-track meter that turns them into a
 * speaking verdict and a level, as LiveKit does: a packet is active at −35 dBov or louder, a track
 * speaks when at least 40 % of its packets in the last 400 ms were active.
 */

import { ACTIVE_SPEAKERS_MIN_INTERVAL_MS } from '../../../shared/src/limits.ts';

/** The level value of silence: −127 dBov. */
export const SILENCE_DBOV = 127;
/** What {@link readAudioLevel} returns for a packet that carries no level. */
export const NO_AUDIO_LEVEL = -1;

/** An RTP header extension element as werift's RTP parser splits them (one-byte or two-byte form). */
export interface HeaderExtensionElement {
  id: number;
  payload: Buffer;
}

/**
 * The audio level of a packet in −dBov (0 loudest … 127 silence), or {@link NO_AUDIO_LEVEL}. Reads
 * the element in place (RFC 6464 §3: one byte, V flag in the top bit, level in the low 7 bits); no
 * allocation: it runs for every audio packet a publisher sends.
 */
export function readAudioLevel(extensions: readonly HeaderExtensionElement[], id: number): number {
  for (let index = 0; index < extensions.length; index++) {
    const element = extensions[index]!;
    if (element.id !== id) continue;
    return element.payload.length > 0 ? element.payload[0]! & 0x7f : NO_AUDIO_LEVEL;
  }
  return NO_AUDIO_LEVEL;
}

/** Speaking detection, LiveKit's defaults (`audio.active_level`, `min_percentile`, `update_interval`). */
export const SPEAKER_DETECTION = {
  /** A packet is active at this level or louder (levels are −dBov: 35 means −35 dBov). */
  activeLevelDbov: 35,
  /** A track speaks when at least this share of the window's packets were active. */
  minActiveShare: 0.4,
  /** The window slides by one tick: {@link windowTicks} × {@link tickMs} = 400 ms. */
  tickMs: 100,
  windowTicks: 4,
  /** Weight of the newest window in the smoothed level (exponential smoothing against transients). */
  smoothing: 0.5,
  /** The node reports a change at most this often (the contract's 4 times a second per room). */
  minReportIntervalMs: ACTIVE_SPEAKERS_MIN_INTERVAL_MS,
} as const;

/**
 * One audio track's levels over a sliding window: {@link observe} per packet (a few integer
 * operations into the current tick's bucket), {@link advance} per tick (closes the bucket and
 * evaluates the window), so that nothing per packet allocates or compares times.
 */
export class AudioLevelMeter {
  #packets = 0;
  #activePackets = 0;
  #loudest = SILENCE_DBOV;
  readonly #windowPackets = new Uint16Array(SPEAKER_DETECTION.windowTicks);
  readonly #windowActive = new Uint16Array(SPEAKER_DETECTION.windowTicks);
  readonly #windowLoudest = new Uint8Array(SPEAKER_DETECTION.windowTicks).fill(SILENCE_DBOV);
  #slot = 0;
  #level = 0;

  /** The hot path: one packet's level in −dBov, or {@link NO_AUDIO_LEVEL} (counted as not active). */
  observe(levelDbov: number): void {
    this.#packets++;
    if (levelDbov >= 0 && levelDbov <= SPEAKER_DETECTION.activeLevelDbov) {
      this.#activePackets++;
      if (levelDbov < this.#loudest) this.#loudest = levelDbov;
    }
  }

  /** The smoothed level of the last {@link advance}: 0 when the track was not speaking. */
  get level(): number {
    return this.#level;
  }

  /**
   * Closes the current tick's bucket and evaluates the window. Speaking: at least
   * `minActiveShare` of its packets active; its level is then the loudest packet's, lowered by how
   * little of the window was active (LiveKit's activity weight: a short burst ranks below steady
   * speech), as a linear amplitude, smoothed. Returns the level, 0 when not speaking.
   */
  advance(): number {
    const slot = this.#slot;
    this.#windowPackets[slot] = Math.min(this.#packets, 0xffff);
    this.#windowActive[slot] = Math.min(this.#activePackets, 0xffff);
    this.#windowLoudest[slot] = this.#loudest;
    this.#slot = (slot + 1) % SPEAKER_DETECTION.windowTicks;
    this.#packets = 0;
    this.#activePackets = 0;
    this.#loudest = SILENCE_DBOV;

    let packets = 0;
    let active = 0;
    let loudest = SILENCE_DBOV;
    for (let index = 0; index < SPEAKER_DETECTION.windowTicks; index++) {
      packets += this.#windowPackets[index]!;
      active += this.#windowActive[index]!;
      loudest = Math.min(loudest, this.#windowLoudest[index]!);
    }
    const share = packets === 0 ? 0 : active / packets;
    if (share < SPEAKER_DETECTION.minActiveShare) {
      this.#level = 0;
      return 0;
    }
    const weightedDbov = loudest - 20 * Math.log10(share);
    const linear = 10 ** (-weightedDbov / 20);
    this.#level += (linear - this.#level) * SPEAKER_DETECTION.smoothing;
    return this.#level;
  }

  /** Forgets the window (the track was muted: what it said before must not make it a speaker). */
  reset(): void {
    this.#packets = 0;
    this.#activePackets = 0;
    this.#loudest = SILENCE_DBOV;
    this.#windowPackets.fill(0);
    this.#windowActive.fill(0);
    this.#windowLoudest.fill(SILENCE_DBOV);
    this.#level = 0;
  }
}
