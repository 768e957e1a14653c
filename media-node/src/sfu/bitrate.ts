/**
 * What a forwarded packet costs on a viewer's link beyond its payload: RTP header (12), the MID
 * extension (8), the SRTP tag (16), UDP (8) and IPv4 (20). Layer bitrates and what the node sends a
 * viewer are both counted with it, so they compare with what the link carries.
 */
export const PACKET_OVERHEAD_BYTES = 64;

/** Bytes are summed over windows of this length; the rate is the mean of the last two windows. */
export const BITRATE_WINDOW_MS = 1_000;

/**
 * A bitrate over a sliding window, cheap enough for the per-packet path: `add` is an addition and a
 * comparison; the rate is recomputed once per window. A window with no packets reads as 0, so a layer
 * or track that stops costs nothing in a viewer's budget.
 */
export class BitrateMeter {
  #windowStart: number | undefined;
  #windowBytes = 0;
  #previousBps: number | undefined;
  #bps = 0;

  add(bytes: number, now: number): void {
    if (this.#windowStart === undefined) this.#windowStart = now;
    else if (now - this.#windowStart >= BITRATE_WINDOW_MS) this.#roll(now);
    this.#windowBytes += bytes;
  }

  /** Bits per second over the last two complete windows (0 before the first one completes). */
  bps(now: number): number {
    if (this.#windowStart !== undefined && now - this.#windowStart >= BITRATE_WINDOW_MS) this.#roll(now);
    return this.#bps;
  }

  #roll(now: number): void {
    const elapsed = now - this.#windowStart!;
    const sample = (this.#windowBytes * 8_000) / elapsed;
    // After an idle gap the window before it describes the past: the new sample alone counts.
    this.#bps =
      elapsed >= 2 * BITRATE_WINDOW_MS || this.#previousBps === undefined ? sample : (this.#previousBps + sample) / 2;
    this.#previousBps = sample;
    this.#windowStart = now;
    this.#windowBytes = 0;
  }
}
