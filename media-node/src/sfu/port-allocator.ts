import { randomInt } from 'node:crypto';

/**
 * Hands each peer connection its own block of UDP ports from this worker's slice of
 * MEDIA_RTC_MIN_PORT..MEDIA_RTC_MAX_PORT.
 *
 * werift probes a port range from its lowest port and binds the first free one, leaving a gap
 * between the probe and the bind; two connections gathering at once (in one thread or across worker
 * threads) could pick the same port, and the losing bind is an uncaught socket error. Disjoint
 * blocks make that impossible, and exhausting them is a clean "node full" instead.
 */
export interface PortBlock {
  readonly index: number;
  /** werift's `icePortRange`. */
  readonly range: [number, number];
}

export class PortAllocator {
  readonly #min: number;
  readonly #blockSize: number;
  readonly #blockCount: number;
  readonly #used = new Set<number>();
  #cursor: number;

  constructor(slice: { min: number; max: number }, blockSize: number) {
    this.#min = slice.min;
    // werift requires min < max: a block is at least two ports, the second a spare in case
    // another process holds the first.
    this.#blockSize = Math.max(2, blockSize);
    this.#blockCount = Math.floor((slice.max - slice.min + 1) / this.#blockSize);
    // A random first block: media nodes sharing a host and range (a node draining while its
    // successor starts, or parallel test stacks) would otherwise all hand out the lowest block first
    // and fight over its ports; a connection whose whole block is taken by another process gathers
    // no candidate and fails.
    this.#cursor = randomInt(Math.max(1, this.#blockCount));
  }

  get capacity(): number {
    return this.#blockCount;
  }

  /** A free block, or undefined when every block is in use. Rotates so freed ports rest a while. */
  acquire(): PortBlock | undefined {
    for (let attempt = 0; attempt < this.#blockCount; attempt++) {
      const index = (this.#cursor + attempt) % this.#blockCount;
      if (this.#used.has(index)) continue;
      this.#used.add(index);
      this.#cursor = (index + 1) % this.#blockCount;
      const low = this.#min + index * this.#blockSize;
      return { index, range: [low, low + this.#blockSize - 1] };
    }
    return undefined;
  }

  release(block: PortBlock): void {
    this.#used.delete(block.index);
  }
}

/** Worker `index` of `count` gets an equal, disjoint slice of the configured range. */
export function workerPortSlice(range: { min: number; max: number }, index: number, count: number) {
  const size = Math.floor((range.max - range.min + 1) / count);
  const min = range.min + index * size;
  return { min, max: min + size - 1 };
}
