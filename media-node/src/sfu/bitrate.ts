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
 *
 * A meter that has not yet seen one full window of packets — a new layer, or one that comes back
 * after an idle gap (dynacast turns layers off and on) — is not {@link measured}: its rate reads low
 * (0, or diluted by the gap) although the layer will cost its full rate, so a limited viewer must not
 * take it for a cheap one.
 */
export class BitrateMeter {
  #windowStart: number | undefined;
  #windowBytes = 0;
  #previousBps: number | undefined;
  #bps = 0;
  #lastPacketAt: number | undefined;
  /** When packets started (again) after a gap of two windows or more. */
  #flowingSince: number | undefined;

  add(bytes: number, now: number): void {
    if (this.#lastPacketAt === undefined || now - this.#lastPacketAt >= 2 * BITRATE_WINDOW_MS) {
      // After an idle gap the windows before it describe the past: start afresh.
      this.#flowingSince = now;
      this.#windowStart = now;
      this.#windowBytes = 0;
      this.#previousBps = undefined;
      this.#bps = 0;
    } else if (now - this.#windowStart! >= BITRATE_WINDOW_MS) {
      this.#roll(now);
    }
    this.#lastPacketAt = now;
    this.#windowBytes += bytes;
  }

  /** Bits per second over the last two complete windows (0 before the first one completes). */
  bps(now: number): number {
    if (this.#windowStart !== undefined && now - this.#windowStart >= BITRATE_WINDOW_MS) this.#roll(now);
    return this.#bps;
  }

  /** Packets have flowed for a full window without a gap: {@link bps} tells what the layer costs. */
  measured(now: number): boolean {
    return (
      this.#flowingSince !== undefined &&
      now - this.#lastPacketAt! < 2 * BITRATE_WINDOW_MS &&
      now - this.#flowingSince >= BITRATE_WINDOW_MS
    );
  }

  #roll(now: number): void {
    const elapsed = now - this.#windowStart!;
    const sample = (this.#windowBytes * 8_000) / elapsed;
    // A window that spans a gap is the news: the one before it describes the past.
    this.#bps =
      elapsed >= 2 * BITRATE_WINDOW_MS || this.#previousBps === undefined ? sample : (this.#previousBps + sample) / 2;
    this.#previousBps = sample;
    this.#windowStart = now;
    this.#windowBytes = 0;
  }
}
