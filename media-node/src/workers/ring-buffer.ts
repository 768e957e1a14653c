/**
 * The memory of a worker relay's packet ring (workers/packet-ring.ts): the main thread allocates it
 * when it links two workers. Apart from the ring's reader and writer so that the main thread, which
 * never reads or writes a packet, does not load werift for them (~6 MB of heap).
 */

/**
 * The relay's ring, each way between two workers: ~3 s of a 3 Mbit/s feed should the receiving worker
 * stall (a GC pause is milliseconds), and little resident memory for a node that relays little.
 */
export const RING_BYTES = 1024 * 1024;

/** Four control words before the records: head, tail, doorbell armed, packets dropped. */
export const RING_CONTROL_BYTES = 16;

export const align4 = (bytes: number) => (bytes + 3) & ~3;

export function createRingBuffer(bytes = RING_BYTES): SharedArrayBuffer {
  return new SharedArrayBuffer(RING_CONTROL_BYTES + align4(bytes));
}
