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
  /** A viewer moved from one simulcast layer to another (not counting its first layer, or a resume). */
  layerSwitches: number;
  /**
   * Payload bytes forwarded from simulcast sources, by the layer's rank in its source (see
   * {@link SIMULCAST_RANKS}): what each layer costs in egress.
   */
  simulcastForwardedBytes: number[];
  /** RTP packets and payload bytes sent over relays as their origin node (each once per relay). */
  relaySentPackets: number;
  relaySentBytes: number;
  /** RTP packets and payload bytes received over relays as their pulling node. */
  relayReceivedPackets: number;
  relayReceivedBytes: number;
}

/** Metric labels of the layer ranks: a 2-layer source has a low and a high layer. */
export const SIMULCAST_RANKS = ['low', 'mid', 'high'] as const;

export function createForwardingStats(): ForwardingStats {
  return {
    forwardedPackets: 0,
    receivedPackets: 0,
    keyframeRequests: 0,
    layerSwitches: 0,
    simulcastForwardedBytes: SIMULCAST_RANKS.map(() => 0),
    relaySentPackets: 0,
    relaySentBytes: 0,
    relayReceivedPackets: 0,
    relayReceivedBytes: 0,
  };
}

/** Adds `stats`'s counters to `total` (worker totals into the node's). */
export function addForwardingStats(total: ForwardingStats, stats: ForwardingStats): void {
  total.forwardedPackets += stats.forwardedPackets;
  total.receivedPackets += stats.receivedPackets;
  total.keyframeRequests += stats.keyframeRequests;
  total.layerSwitches += stats.layerSwitches;
  total.relaySentPackets += stats.relaySentPackets;
  total.relaySentBytes += stats.relaySentBytes;
  total.relayReceivedPackets += stats.relayReceivedPackets;
  total.relayReceivedBytes += stats.relayReceivedBytes;
  stats.simulcastForwardedBytes.forEach((bytes, rank) => {
    total.simulcastForwardedBytes[rank] = (total.simulcastForwardedBytes[rank] ?? 0) + bytes;
  });
}
