/**
 * Per-worker counters, plain numbers on the hot path; the main thread reads them on each /metrics
 * scrape and aggregates them across workers.
 */
export interface ForwardingStats {
  /** RTP packets handed to an egress connection that could send them (DTLS up, codec negotiated). */
  forwardedPackets: number;
  /** RTP packets received from publishers. */
  receivedPackets: number;
  /** Keyframe requests (PLI) sent to publishers after throttling. */
  keyframeRequests: number;
}

export function createForwardingStats(): ForwardingStats {
  return { forwardedPackets: 0, receivedPackets: 0, keyframeRequests: 0 };
}
