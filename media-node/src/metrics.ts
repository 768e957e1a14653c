import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { SIMULCAST_RANKS } from './sfu/forwarding-stats.ts';
import type { PoolStats } from './workers/pool.ts';

/**
 * Prometheus metrics. The default process metrics (CPU seconds, resident memory, open handles) are
 * read from the OS for the whole process, so they cover every worker thread: CPU per forwarded
 * packet is `rate(process_cpu_seconds_total) / rate(truegather_rtp_forwarded_packets_total)`. The
 * V8 heap figures of the default set are the main thread's; each worker's heap has its own gauge.
 * Media counters live in the workers and are gathered at scrape time.
 */
export class MediaMetrics {
  readonly registry = new Registry();
  readonly #source: { stats(): Promise<PoolStats>; readonly draining: boolean; readonly load: number };
  readonly #forwarded: Counter;
  readonly #received: Counter;
  readonly #keyframeRequests: Counter;
  readonly #layerSwitches: Counter;
  readonly #simulcastBytes: Counter<'layer'>;
  readonly #relaysOpen: Gauge<'direction'>;
  readonly #relayedPackets: Counter<'direction'>;
  readonly #relayedBytes: Counter<'direction'>;
  readonly #rooms: Gauge;
  readonly #publishers: Gauge;
  readonly #subscribers: Gauge;
  readonly #bandwidthLimited: Gauge;
  readonly #peerConnections: Gauge;
  readonly #draining: Gauge;
  readonly #workerHeap: Gauge<'worker'>;
  readonly #workerUtilization: Gauge<'worker'>;
  readonly #workerRooms: Gauge<'worker'>;
  readonly #workerPeers: Gauge<'worker'>;

  constructor(source: { stats(): Promise<PoolStats>; readonly draining: boolean; readonly load: number }) {
    this.#source = source;
    const registers = [this.registry];
    // A coarser event-loop-delay sampler than the default 10 ms: its timer costs CPU on every tick.
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });
    this.#forwarded = new Counter({
      name: 'truegather_rtp_forwarded_packets_total',
      help: 'RTP packets forwarded to subscribers (one per packet per subscriber).',
      registers,
    });
    this.#received = new Counter({
      name: 'truegather_rtp_received_packets_total',
      help: 'RTP packets received from publishers.',
      registers,
    });
    this.#keyframeRequests = new Counter({
      name: 'truegather_keyframe_requests_total',
      help: 'Keyframe requests (PLI) sent to publishers, after throttling.',
      registers,
    });
    this.#layerSwitches = new Counter({
      name: 'truegather_layer_switches_total',
      help: 'Simulcast layer switches of viewers (at the new layer’s keyframe).',
      registers,
    });
    this.#simulcastBytes = new Counter({
      name: 'truegather_simulcast_forwarded_bytes_total',
      help: 'RTP payload bytes forwarded from simulcast sources, by layer rank in its source (low, mid, high).',
      labelNames: ['layer'],
      registers,
    });
    // Relays between media nodes, by this node's end: `sent` as the origin, `received` as the pulling node.
    this.#relaysOpen = new Gauge({
      name: 'truegather_relays_open',
      help: 'Relays open on this node (one per room and node pair), by direction: sent (origin) or received (pulling node).',
      labelNames: ['direction'],
      registers,
    });
    this.#relayedPackets = new Counter({
      name: 'truegather_relayed_packets_total',
      help: 'RTP packets relayed between media nodes (once per relay, whatever the viewers behind it), by direction.',
      labelNames: ['direction'],
      registers,
    });
    this.#relayedBytes = new Counter({
      name: 'truegather_relayed_bytes_total',
      help: 'RTP payload bytes relayed between media nodes, by direction.',
      labelNames: ['direction'],
      registers,
    });
    this.#rooms = new Gauge({ name: 'truegather_rooms', help: 'Rooms on this node.', registers });
    this.#publishers = new Gauge({ name: 'truegather_publishers', help: 'Publishers on this node.', registers });
    this.#subscribers = new Gauge({ name: 'truegather_subscribers', help: 'Subscribers on this node.', registers });
    this.#bandwidthLimited = new Gauge({
      name: 'truegather_viewers_bandwidth_limited',
      help: 'Subscribers that get a lower simulcast layer than they ask for, because their downlink estimate is short.',
      registers,
    });
    this.#peerConnections = new Gauge({
      name: 'truegather_peer_connections',
      help: 'Peer connections on this node (the unit of MEDIA_CAPACITY).',
      registers,
    });
    this.#draining = new Gauge({ name: 'truegather_draining', help: '1 while the node drains.', registers });
    this.#workerHeap = new Gauge({
      name: 'truegather_worker_heap_used_bytes',
      help: 'V8 heap used by each media worker thread.',
      labelNames: ['worker'],
      registers,
    });
    this.#workerRooms = new Gauge({
      name: 'truegather_worker_rooms',
      help: 'Rooms with peers on each media worker thread (a room spread over workers counts on each).',
      labelNames: ['worker'],
      registers,
    });
    this.#workerPeers = new Gauge({
      name: 'truegather_worker_peer_connections',
      help: 'Peer connections on each media worker thread.',
      labelNames: ['worker'],
      registers,
    });
    this.#workerUtilization = new Gauge({
      name: 'truegather_worker_event_loop_utilization',
      help: 'Share of time each media worker thread was busy since the previous scrape (0-1).',
      labelNames: ['worker'],
      registers,
    });
  }

  /** The exposition text, with the workers' counters gathered just now. */
  async render(): Promise<{ contentType: string; body: string }> {
    const stats = await this.#source.stats();
    setTotal(this.#forwarded, stats.forwardedPackets);
    setTotal(this.#received, stats.receivedPackets);
    setTotal(this.#keyframeRequests, stats.keyframeRequests);
    setTotal(this.#layerSwitches, stats.layerSwitches);
    this.#simulcastBytes.reset();
    SIMULCAST_RANKS.forEach((layer, rank) => {
      this.#simulcastBytes.inc({ layer }, stats.simulcastForwardedBytes[rank] ?? 0);
    });
    this.#relaysOpen.set({ direction: 'sent' }, stats.relaysSending);
    this.#relaysOpen.set({ direction: 'received' }, stats.relaysReceiving);
    this.#relayedPackets.reset();
    this.#relayedPackets.inc({ direction: 'sent' }, stats.relaySentPackets);
    this.#relayedPackets.inc({ direction: 'received' }, stats.relayReceivedPackets);
    this.#relayedBytes.reset();
    this.#relayedBytes.inc({ direction: 'sent' }, stats.relaySentBytes);
    this.#relayedBytes.inc({ direction: 'received' }, stats.relayReceivedBytes);
    this.#rooms.set(stats.rooms);
    this.#publishers.set(stats.publishers);
    this.#subscribers.set(stats.subscribers);
    this.#bandwidthLimited.set(stats.bandwidthLimitedViewers);
    this.#peerConnections.set(this.#source.load);
    this.#draining.set(this.#source.draining ? 1 : 0);
    this.#workerHeap.reset();
    this.#workerUtilization.reset();
    this.#workerRooms.reset();
    this.#workerPeers.reset();
    for (const worker of stats.workers) {
      this.#workerRooms.set({ worker: String(worker.index) }, worker.rooms);
      this.#workerPeers.set({ worker: String(worker.index) }, worker.peerConnections);
      this.#workerHeap.set({ worker: String(worker.index) }, worker.heapUsedBytes);
      this.#workerUtilization.set({ worker: String(worker.index) }, worker.eventLoopUtilization);
    }
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** A counter mirrors a total kept elsewhere (the workers): prom-client counters only go up by `inc`. */
function setTotal(counter: Counter, total: number): void {
  counter.reset();
  counter.inc(total);
}
