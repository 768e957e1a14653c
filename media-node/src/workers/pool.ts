import { fork } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { EventLoopUtilization } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { MessageChannel, type TransferListItem, Worker } from 'node:worker_threads';
import type { LogLevel } from '../../../shared/src/config.ts';
import type { Logger } from '../../../shared/src/log.ts';
import type { MediaEvent } from '../../../shared/src/media-control.ts';
import type { ActiveSpeaker } from '../../../shared/src/signaling.ts';
import { loggableError, MediaNodeError, notFound, unavailable } from '../errors.ts';
import { addForwardingStats, createForwardingStats } from '../sfu/forwarding-stats.ts';
import { workerPortSlice } from '../sfu/port-allocator.ts';
import type { DtlsCertificate, RtcSettings } from '../sfu/rtc-settings.ts';
import type {
  CommandArgs,
  CommandName,
  CommandResult,
  MainToWorker,
  RoomCommandName,
  WorkerInit,
  WorkerStats,
  WorkerToMain,
} from './protocol.ts';
import { createRingBuffer } from './ring-buffer.ts';

/** The pool's figures before any worker's are added: nothing forwarded, no rooms. */
export function emptyPoolStats(): PoolStats {
  return {
    ...createForwardingStats(),
    rooms: 0,
    publishers: 0,
    subscribers: 0,
    bandwidthLimitedViewers: 0,
    relaysSending: 0,
    relaysReceiving: 0,
    workers: [],
  };
}

/** A worker that has not answered a command this long is treated as stuck for that command. */
export const COMMAND_TIMEOUT_MS = 20_000;
const STATS_TIMEOUT_MS = 2_000;
/**
 * A script beside this module: `name`.ts when the pool runs from source (tests), and `name`.mjs in
 * the bundle (scripts/build-media-node.ts), where this module is part of main.mjs.
 */
const workerScript = (name: string) =>
  new URL(`./${name}${import.meta.url.endsWith('.ts') ? '.ts' : '.mjs'}`, import.meta.url);
const DEFAULT_WORKER_URL = workerScript('media-worker');
const DTLS_CERTIFICATE_SCRIPT_URL = workerScript('dtls-certificate-process');
/**
 * A small young generation (V8's default grows to 16 MB semi-spaces): forwarding allocates fast and
 * almost everything dies young, so scavenges stay cheap while the node keeps ~25 MB less resident
 * (bench:media, 60 subscribers: no measurable CPU cost).
 */
const WORKER_RESOURCE_LIMITS = { maxYoungGenerationSizeMb: 3 };

/** A worker other than the first that has held no room this long is stopped (its memory returns). */
export const IDLE_WORKER_STOP_MS = 30_000;
/**
 * The watchdog pings every running worker this often, and a ping unanswered for as long counts as
 * missed: a worker thread that misses {@link WATCHDOG_MISSES} in a row is stuck (an endless loop, a
 * blocked native call) and is replaced, its peers reported closed as after a crash.
 */
export const WATCHDOG_INTERVAL_MS = 5_000;
export const WATCHDOG_MISSES = 2;
/**
 * Each worker's event-loop utilization is read this often, over the interval since the last reading:
 * long enough that a keyframe burst or a join does not make a worker look busy, short enough that
 * a room spreads within seconds of its worker filling up.
 */
export const UTILIZATION_WINDOW_MS = 5_000;
/** How long the DTLS certificate's child process may take (~1 s here) before it is killed and the start fails. */
export const DTLS_CERTIFICATE_TIMEOUT_MS = 20_000;

export interface PoolOptions {
  workers: number;
  /**
   * A worker whose event-loop utilization over the last {@link UTILIZATION_WINDOW_MS} reached this
   * (0–1, MEDIA_WORKER_BUSY_UTILIZATION) is busy: new participants go to the others while one of
   * them is not.
   */
  busyUtilization: number;
  /**
   * However idle its worker, a room's new participant goes to the least-loaded worker once its room's
   * worker holds more than this many participants more than that one (MEDIA_ROOM_AFFINITY): joins
   * arriving faster than utilization can show them still spread.
   */
  roomAffinity: number;
  capacity: number;
  connectTimeoutMs: number;
  nodeId: string;
  logLevel: LogLevel;
  settings: RtcSettings;
  portRange: { min: number; max: number };
  /** MEDIA_NODE_SECRET, for the workers' calls to other nodes (relays). */
  secret: Uint8Array;
  logger: Logger;
  /** Media events from any worker, for the edge. */
  onEvent: (event: MediaEvent) => void;
  /** The worker script (a seam for tests); default: media-worker.ts. */
  workerUrl?: URL;
  /** The DTLS certificate's child process script (a seam for tests); default: dtls-certificate-process.ts. */
  dtlsCertificateScriptUrl?: URL;
  /** How long that child process may take (a seam for tests); default {@link DTLS_CERTIFICATE_TIMEOUT_MS}. */
  dtlsCertificateTimeoutMs?: number;
  /** How long a scrape waits for each worker's stats (a seam for tests); default 2 s. */
  statsTimeoutMs?: number;
  /** How long a worker without rooms keeps running (a seam for tests); default {@link IDLE_WORKER_STOP_MS}. */
  idleWorkerStopMs?: number;
  /** The watchdog's ping interval and timeout (a seam for tests); default {@link WATCHDOG_INTERVAL_MS}. */
  watchdogIntervalMs?: number;
  /**
   * A worker's event-loop utilization over the last window, 0–1 (a seam for tests, which set a load
   * rather than burn CPU); default: measured from the main thread every {@link UTILIZATION_WINDOW_MS}.
   */
  utilizationOf?: (worker: number) => number;
}

/** The workers' counters summed, plus the per-worker figures that make no sense summed. */
export type PoolStats = Omit<WorkerStats, 'heapUsedBytes' | 'eventLoopUtilization'> & {
  workers: (Pick<WorkerStats, 'heapUsedBytes' | 'eventLoopUtilization' | 'rooms'> & {
    index: number;
    peerConnections: number;
  })[];
};

/** A room's part on one worker thread: the peers it reported there. */
interface RoomPart {
  publishers: string[];
  subscribers: string[];
  /** Commands sent to the worker and not answered yet. */
  inflight: number;
  /**
   * The worker reported the room closed while commands were in flight: one of them may create it
   * again on the same worker, so the part is kept until they are answered.
   */
  closed: boolean;
}

interface PlacedRoom {
  /** Each participant's worker: its publisher and subscriber live there together. */
  participants: Map<string, number>;
  /** The parts of the room, by worker. */
  parts: Map<number, RoomPart>;
  /** The active speakers each worker last reported: the edge gets them merged. */
  speakers: Map<number, ActiveSpeaker[]>;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * The placement key of a room's relays between nodes (both ends): they live on one worker of the room,
 * whose worker relays share their feeds with the others. No participant id is empty.
 */
const ROOM_RELAYS = '';

/** Commands that may create a room (and so place it) when the room is not on this node yet. */
const ROOM_CREATING: ReadonlySet<RoomCommandName> = new Set(['publish', 'subscribe', 'addIceCandidate', 'relay']);

interface PoolEvents {
  /** The number of rooms changed. */
  rooms: [count: number];
}

/**
 * The media worker threads (MEDIA_WORKERS, one per core by default) and the placement of rooms'
 * participants on them: a participant's publisher and subscriber live on one worker (one place to
 * route its commands and early ICE candidates, as one node holds both across nodes), chosen by load
 * when it first comes (`#place`): a room stays on one worker until that worker is busy, then its
 * new participants go to another, so a large room spreads over every worker and a small one pays
 * for no second thread. Every pair of running workers is linked for worker relays (worker-relay.ts): a
 * feed reaches a worker's viewers from its publisher's worker. Commands about a participant go to
 * its worker, room-wide ones (closeRoom) to every worker holding part of the room; the edge sees one
 * room. The main thread keeps each room's peers per worker, as the workers report them, for load,
 * draining and for reporting the peers of a worker that died.
 *
 * Only the first worker runs from the start; the others start with the first room placed on them
 * and stop after {@link IDLE_WORKER_STOP_MS} without rooms: a worker thread with werift loaded
 * costs ~30 MB of memory and its timers' wake-ups, whether or not it forwards anything.
 */
export class MediaWorkerPool extends EventEmitter<PoolEvents> {
  readonly #options: PoolOptions;
  readonly #threads: (WorkerThread | undefined)[];
  /** Workers starting (on demand, or replacing one that died). */
  readonly #spawning = new Map<number, Promise<WorkerThread>>();
  readonly #idleTimers = new Map<number, NodeJS.Timeout>();
  readonly #rooms = new Map<string, PlacedRoom>();
  /** Counters of workers that died, so the node's totals never go backwards. */
  readonly #retired = createForwardingStats();
  #draining = false;
  #stopping = false;
  /** Aborted by stop(): kills the DTLS certificate's child process if it is still running. */
  readonly #stopped = new AbortController();
  #watchdog: NodeJS.Timeout | undefined;
  #utilizationTimer: NodeJS.Timeout | undefined;
  /** One certificate for every worker's connections, so that no worker generates its own. */
  #dtlsCertificate: DtlsCertificate | undefined;

  constructor(options: PoolOptions) {
    super();
    this.#options = options;
    this.#threads = Array.from({ length: options.workers }, () => undefined);
  }

  /**
   * Generates the node's DTLS certificate and starts the first worker: a node whose worker cannot
   * start fails at once, not at its first room.
   */
  async start(): Promise<void> {
    this.#dtlsCertificate = await generateDtlsCertificate(
      this.#options.dtlsCertificateScriptUrl ?? DTLS_CERTIFICATE_SCRIPT_URL,
      this.#options.dtlsCertificateTimeoutMs ?? DTLS_CERTIFICATE_TIMEOUT_MS,
      this.#stopped.signal,
    );
    await this.#spawn(0);
    this.#watchdog = setInterval(() => this.#watch(), this.#options.watchdogIntervalMs ?? WATCHDOG_INTERVAL_MS);
    this.#watchdog.unref();
    if (!this.#options.utilizationOf) {
      this.#utilizationTimer = setInterval(() => {
        for (const thread of this.#threads) thread?.measureUtilization();
      }, UTILIZATION_WINDOW_MS);
      this.#utilizationTimer.unref();
    }
  }

  /** Pings every running worker; one that missed too many pings in a row is terminated (#onExit replaces it). */
  #watch(): void {
    const timeoutMs = this.#options.watchdogIntervalMs ?? WATCHDOG_INTERVAL_MS;
    this.#threads.forEach((thread, index) => {
      if (!thread || thread.pinging) return;
      thread.pinging = true;
      thread
        .request('ping', {}, timeoutMs)
        .then(
          () => {
            thread.missedPings = 0;
          },
          () => {
            thread.missedPings += 1;
            if (thread.missedPings < WATCHDOG_MISSES || this.#threads[index] !== thread || this.#stopping) return;
            this.#options.logger.error('media worker stopped answering; replacing it', { worker: index });
            void thread.terminate();
          },
        )
        .finally(() => {
          thread.pinging = false;
        });
    });
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** While draining, rooms that are not on this node yet are refused (503). */
  set draining(value: boolean) {
    this.#draining = value;
  }

  get roomCount(): number {
    return this.#rooms.size;
  }

  /** Peer connections on this node: the unit of MEDIA_CAPACITY. */
  get load(): number {
    let peers = 0;
    for (const room of this.#rooms.values()) {
      for (const part of room.parts.values()) peers += part.publishers.length + part.subscribers.length;
    }
    return peers;
  }

  get capacity(): number {
    return this.#options.capacity;
  }

  get workerCount(): number {
    return this.#threads.length;
  }

  /** Worker threads running now (the others start with their first room). */
  get runningWorkers(): number {
    return this.#threads.filter((thread) => thread !== undefined).length;
  }

  /** The peers this node holds for a room, over all its workers as they last reported them (none for an unknown room). */
  peersOf(roomId: string): { publishers: string[]; subscribers: string[] } {
    const parts = [...(this.#rooms.get(roomId)?.parts.values() ?? [])];
    return {
      publishers: parts.flatMap((part) => part.publishers),
      subscribers: parts.flatMap((part) => part.subscribers),
    };
  }

  /** The worker holding a participant's peers (tests and the benchmark look; the edge never does). */
  workerOf(roomId: string, participantId: string): number | undefined {
    return this.#rooms.get(roomId)?.participants.get(participantId);
  }

  /**
   * Runs a control-API command on the worker of its participant (placing the participant first if
   * needed); closeRoom runs on every worker holding part of the room.
   */
  async run<N extends RoomCommandName>(command: N, args: CommandArgs<N>): Promise<CommandResult<N>> {
    const { roomId, participantId } = args as { roomId: string; participantId?: string };
    let room = this.#rooms.get(roomId);
    if (command === 'closeRoom') {
      if (!room) return null as CommandResult<N>;
      const placed = room;
      await Promise.all([...placed.parts.keys()].map((worker) => this.#runOn(roomId, placed, worker, command, args)));
      return null as CommandResult<N>;
    }
    // The room's relays between nodes are not a participant's: they have a worker of their own in the room.
    const placementKey = participantId ?? ROOM_RELAYS;
    let worker = room?.participants.get(placementKey);
    if (worker === undefined) {
      if (command === 'setSubscriberAnswer') throw notFound(room ? 'subscriber' : 'room');
      if (!room && (command === 'pull' || command === 'setRelaySenderAnswer')) throw notFound('room');
      if (command === 'setRelaySenderAnswer') throw notFound('relay sender');
      if (room && command === 'mute') throw notFound('publisher');
      if (room && command === 'updateSubscription') throw notFound('subscriber');
      // Removing what is not there already holds: removals are idempotent.
      if (!ROOM_CREATING.has(command) && command !== 'pull') return null as CommandResult<N>;
      if (!room && this.#draining) {
        throw unavailable('this media node is draining and takes no new rooms', { draining: true });
      }
    }
    const part = worker === undefined ? undefined : room?.parts.get(worker);
    if (this.#addsPeer(command, placementKey, part) && this.load >= this.#options.capacity) {
      throw unavailable('this media node is at capacity', { load: this.load, capacity: this.#options.capacity });
    }
    if (!room) {
      room = { participants: new Map(), parts: new Map(), speakers: new Map() };
      this.#rooms.set(roomId, room);
      this.emit('rooms', this.#rooms.size);
    }
    if (worker === undefined) {
      worker = this.#place(room);
      room.participants.set(placementKey, worker);
    }
    return this.#runOn(roomId, room, worker, command, args);
  }

  async #runOn<N extends RoomCommandName>(
    roomId: string,
    room: PlacedRoom,
    worker: number,
    command: N,
    args: CommandArgs<N>,
  ): Promise<CommandResult<N>> {
    let part = room.parts.get(worker);
    if (!part) {
      part = { publishers: [], subscribers: [], inflight: 0, closed: false };
      room.parts.set(worker, part);
    }
    part.inflight++;
    try {
      const thread = this.#threads[worker] ?? (await this.#spawn(worker));
      this.#cancelIdleStop(worker);
      return await thread.request(command, args);
    } finally {
      part.inflight--;
      this.#forgetIfClosed(roomId, worker);
    }
  }

  /**
   * Every worker's counters, summed. A worker that does not answer in time counts with the last
   * stats it gave: leaving it out would make the node's totals (Prometheus counters) go backwards.
   * Its per-worker gauges are left out, since they would describe the past.
   */
  async stats(): Promise<PoolStats> {
    const results = await Promise.all(
      this.#threads.map(async (thread, index) => {
        if (!thread) return undefined;
        try {
          const stats = await thread.request('stats', {}, this.#options.statsTimeoutMs ?? STATS_TIMEOUT_MS);
          thread.lastStats = stats;
          return { index, stats, fresh: true };
        } catch {
          return thread.lastStats && { index, stats: thread.lastStats, fresh: false };
        }
      }),
    );
    const total = emptyPoolStats();
    addForwardingStats(total, this.#retired);
    // A room spread over workers counts once.
    total.rooms = this.#rooms.size;
    for (const result of results) {
      if (!result) continue;
      const { stats, index, fresh } = result;
      addForwardingStats(total, stats);
      total.publishers += stats.publishers;
      total.subscribers += stats.subscribers;
      total.bandwidthLimitedViewers += stats.bandwidthLimitedViewers;
      total.relaysSending += stats.relaysSending;
      total.relaysReceiving += stats.relaysReceiving;
      if (!fresh) continue;
      total.workers.push({
        index,
        heapUsedBytes: stats.heapUsedBytes,
        eventLoopUtilization: stats.eventLoopUtilization,
        rooms: stats.rooms,
        peerConnections: stats.publishers + stats.subscribers,
      });
    }
    return total;
  }

  /** Closes every room on every worker (end of a drain, or shutdown). */
  async closeAllRooms(): Promise<void> {
    await Promise.all(
      this.#threads.map((thread) => thread?.request('closeAllRooms', {}).catch(() => undefined) ?? undefined),
    );
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#stopped.abort();
    clearInterval(this.#watchdog);
    clearInterval(this.#utilizationTimer);
    for (const timer of this.#idleTimers.values()) clearTimeout(timer);
    this.#idleTimers.clear();
    await Promise.allSettled(this.#spawning.values());
    await Promise.all(this.#threads.map((thread) => thread?.terminate()));
  }

  #addsPeer(command: RoomCommandName, participantId: string, part: RoomPart | undefined): boolean {
    if (command === 'publish') return !part?.publishers.includes(participantId);
    if (command === 'subscribe') return !part?.subscribers.includes(participantId);
    return false;
  }

  #forgetIfClosed(roomId: string, worker: number): void {
    const room = this.#rooms.get(roomId);
    const part = room?.parts.get(worker);
    if (!room || !part?.closed || part.inflight > 0) return;
    this.#dropPart(roomId, room, worker);
    this.#stopIfIdle(worker);
  }

  /** Forgets a room's part on a worker and the participants placed there; the room goes with its last part. */
  #dropPart(roomId: string, room: PlacedRoom, worker: number): void {
    room.parts.delete(worker);
    room.speakers.delete(worker);
    for (const [participantId, placed] of room.participants) {
      if (placed === worker) room.participants.delete(participantId);
    }
    if (room.parts.size > 0) return;
    this.#rooms.delete(roomId);
    this.emit('rooms', this.#rooms.size);
  }

  #holdsRooms(index: number): boolean {
    for (const room of this.#rooms.values()) if (room.parts.has(index)) return true;
    return false;
  }

  /** Schedules the stop of a worker (not the first) that holds no room. */
  #stopIfIdle(index: number): void {
    if (index === 0 || this.#stopping || this.#idleTimers.has(index) || this.#holdsRooms(index)) return;
    const timer = setTimeout(() => {
      this.#idleTimers.delete(index);
      const thread = this.#threads[index];
      if (!thread || this.#holdsRooms(index) || this.#stopping) return;
      this.#retire(index, thread).catch((error: unknown) => {
        this.#options.logger.warn('stopping an idle media worker failed', {
          worker: index,
          error: loggableError(error),
        });
      });
    }, this.#options.idleWorkerStopMs ?? IDLE_WORKER_STOP_MS);
    timer.unref();
    this.#idleTimers.set(index, timer);
  }

  #cancelIdleStop(index: number): void {
    clearTimeout(this.#idleTimers.get(index));
    this.#idleTimers.delete(index);
  }

  /** Stops an idle worker, keeping its counters in the node's totals. */
  async #retire(index: number, thread: WorkerThread): Promise<void> {
    const stats = await thread
      .request('stats', {}, this.#options.statsTimeoutMs ?? STATS_TIMEOUT_MS)
      .catch(() => thread.lastStats);
    // A room may have been placed on it meanwhile.
    if (this.#holdsRooms(index) || this.#threads[index] !== thread) return;
    this.#threads[index] = undefined;
    this.#unlink(index);
    if (stats) this.#addRetired(stats);
    await thread.terminate();
  }

  #addRetired(stats: WorkerStats): void {
    addForwardingStats(this.#retired, stats);
  }

  /**
   * The worker for a room's new participant: the room's own worker while it is not busy, as an SFU
   * keeps a room together until its core fills up, since a spread room costs the second worker's
   * memory and a relayed copy of every packet. Busy workers (event-loop utilization over the last
   * window at or above {@link PoolOptions.busyUtilization}) are left out while any worker is not.
   * Among the rest, load is participants placed (counted at placement, so that joins arriving
   * together spread before any worker reports its peers): the least-loaded worker, unless a worker
   * already holding part of the room has at most `roomAffinity` more participants than it.
   */
  #place(room: PlacedRoom): number {
    const load = this.#threads.map(() => 0);
    for (const placed of this.#rooms.values()) for (const worker of placed.participants.values()) load[worker]! += 1;
    const workers = [...load.keys()];
    const calm = workers.filter((worker) => this.#utilization(worker) < this.#options.busyUtilization);
    const eligible = new Set(calm.length > 0 ? calm : workers);
    const leastLoaded = (candidates: Iterable<number>) => {
      let least: number | undefined;
      for (const worker of candidates) {
        if (eligible.has(worker) && (least === undefined || load[worker]! < load[least]!)) least = worker;
      }
      return least;
    };
    const least = leastLoaded(workers)!;
    const home = leastLoaded(room.parts.keys());
    return home !== undefined && load[home]! - load[least]! <= this.#options.roomAffinity ? home : least;
  }

  /** A worker's event-loop utilization over the last window (0 for one not running). */
  #utilization(worker: number): number {
    if (this.#options.utilizationOf) return this.#options.utilizationOf(worker);
    return this.#threads[worker]?.utilization ?? 0;
  }

  /** Starts worker `index`, or joins its start under way. */
  #spawn(index: number): Promise<WorkerThread> {
    const spawning = this.#spawning.get(index);
    if (spawning) return spawning;
    const started = this.#startThread(index).finally(() => this.#spawning.delete(index));
    this.#spawning.set(index, started);
    return started;
  }

  async #startThread(index: number): Promise<WorkerThread> {
    if (this.#stopping) throw unavailable('this media node is stopping');
    const init: WorkerInit = {
      index,
      logLevel: this.#options.logLevel,
      nodeId: this.#options.nodeId,
      settings: { ...this.#options.settings, dtlsCertificate: this.#dtlsCertificate },
      connectTimeoutMs: this.#options.connectTimeoutMs,
      ports: workerPortSlice(this.#options.portRange, index, this.#threads.length),
      secret: this.#options.secret,
    };
    const workerUrl = this.#options.workerUrl ?? DEFAULT_WORKER_URL;
    const thread = new WorkerThread(workerUrl, init, this.#options.logger.child({ worker: index }), (message) =>
      this.#onMessage(index, message),
    );
    thread.once('exit', (code) => this.#onExit(index, thread, code));
    try {
      await thread.ready;
    } catch (error) {
      await thread.terminate();
      throw unavailable(`a media worker could not start: ${loggableError(error)}`);
    }
    // Its first window starts now: loading its modules is not load.
    thread.measureUtilization();
    this.#threads[index] = thread;
    this.#threads.forEach((other, peer) => {
      if (other && peer !== index) this.#link(index, thread, peer, other);
    });
    return thread;
  }

  /** Pairs two running workers for worker relays: a port and a packet ring each way. */
  #link(index: number, thread: WorkerThread, peer: number, other: WorkerThread): void {
    const { port1, port2 } = new MessageChannel();
    const toPeer = createRingBuffer();
    const fromPeer = createRingBuffer();
    thread.post({ kind: 'link', peer, port: port1, outbound: toPeer, inbound: fromPeer }, [port1]);
    other.post({ kind: 'link', peer: index, port: port2, outbound: fromPeer, inbound: toPeer }, [port2]);
  }

  /** A worker stopped: the others end their links to it (its relayed feeds end with them). */
  #unlink(index: number): void {
    for (const thread of this.#threads) thread?.post({ kind: 'unlink', peer: index });
  }

  #onMessage(index: number, message: WorkerToMain): void {
    if (message.kind === 'event') {
      if (message.event.type === 'active_speakers') this.#reportSpeakers(index, message.event);
      else this.#options.onEvent(message.event);
    } else if (message.kind === 'room') {
      let room = this.#rooms.get(message.roomId);
      const part = room?.parts.get(index);
      if (message.closed) {
        if (!room || !part) return;
        part.publishers = [];
        part.subscribers = [];
        part.closed = true;
        this.#forgetIfClosed(message.roomId, index);
        return;
      }
      if (!room) {
        // Re-created by a command that was in flight when the room was dropped: placed back.
        room = { participants: new Map(), parts: new Map(), speakers: new Map() };
        this.#rooms.set(message.roomId, room);
        this.emit('rooms', this.#rooms.size);
      }
      const { publishers, subscribers } = message;
      if (part) Object.assign(part, { publishers, subscribers, closed: false });
      else room.parts.set(index, { publishers, subscribers, inflight: 0, closed: false });
      for (const participantId of [...publishers, ...subscribers]) {
        if (!room.participants.has(participantId)) room.participants.set(participantId, index);
      }
    }
  }

  /** Each worker hears its own publishers: the edge gets one list per room, loudest first. */
  #reportSpeakers(index: number, event: Extract<MediaEvent, { type: 'active_speakers' }>): void {
    const room = this.#rooms.get(event.room_id);
    if (!room) {
      this.#options.onEvent(event);
      return;
    }
    room.speakers.set(index, event.speakers);
    const speakers = [...room.speakers.values()].flat().sort((a, b) => b.level - a.level);
    this.#options.onEvent({ ...event, speakers });
  }

  /**
   * A worker died (a bug or a native crash in its rooms): its peers are reported closed so the edge
   * can tell the clients, its counters are kept, and a fresh worker takes its place.
   */
  #onExit(index: number, thread: WorkerThread, code: number): void {
    if (this.#threads[index] !== thread) return;
    this.#threads[index] = undefined;
    if (this.#stopping) return;
    this.#unlink(index);
    this.#options.logger.error('media worker exited; restarting it', { worker: index, code });
    if (thread.lastStats) this.#addRetired(thread.lastStats);
    const reason = 'media worker failed';
    for (const [roomId, room] of this.#rooms) {
      const part = room.parts.get(index);
      if (!part) continue;
      for (const participantId of part.publishers) {
        this.#options.onEvent({ type: 'publisher_closed', room_id: roomId, participant_id: participantId, reason });
      }
      for (const participantId of part.subscribers) {
        this.#options.onEvent({ type: 'subscriber_closed', room_id: roomId, participant_id: participantId, reason });
      }
      this.#dropPart(roomId, room, index);
    }
    this.emit('rooms', this.#rooms.size);
    // The first worker is replaced at once; the others start again with their next room.
    if (index !== 0) return;
    this.#spawn(index).catch((error: unknown) => {
      this.#options.logger.error('restarting a media worker failed', { worker: index, error: loggableError(error) });
    });
  }
}

/**
 * Runs dtls-certificate-process.ts: the certificate, generated in a child process stopped once it
 * sent it. Not a worker thread: what a thread allocated and touched stays resident in the process
 * after the thread ends (~28 MB measured for this one), while a process's memory goes with it.
 */
function generateDtlsCertificate(script: URL, timeoutMs: number, stopped: AbortSignal): Promise<DtlsCertificate> {
  return new Promise((resolve, reject) => {
    if (stopped.aborted) {
      reject(unavailable('this media node is stopping'));
      return;
    }
    const child = fork(fileURLToPath(script), [], {
      // None of the node's environment (its secret) nor its Node options: the child needs neither.
      env: {},
      execArgv: [],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    // Whatever happens, the child goes: one that hangs would otherwise hold the node's start (and,
    // through its IPC channel, the process) forever, and a stop during the start must not leave it.
    let failure = 'exited';
    const kill = (why: string) => {
      failure = why;
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => kill(`sent no certificate within ${timeoutMs} ms`), timeoutMs);
    const onStop = () => kill('was stopped with the media node');
    stopped.addEventListener('abort', onStop, { once: true });
    child.once('message', (certificate) => {
      resolve(certificate as DtlsCertificate);
      child.kill();
    });
    child.once('error', (error) => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      reject(error);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      stopped.removeEventListener('abort', onStop);
      reject(unavailable(`the DTLS certificate process ${failure} (${signal ?? `code ${code}`})`));
    });
  });
}

class WorkerThread extends EventEmitter<{ exit: [code: number] }> {
  readonly ready: Promise<void>;
  lastStats: WorkerStats | undefined;
  /** The watchdog's bookkeeping: a ping is out, and how many in a row went unanswered. */
  pinging = false;
  missedPings = 0;
  /** Event-loop utilization over the last window ({@link measureUtilization}), 0–1. */
  utilization = 0;
  readonly #worker: Worker;
  /** The worker's event-loop counters at the start of the window. */
  #utilizationMark: EventLoopUtilization | undefined;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;

  constructor(url: URL, init: WorkerInit, logger: Logger, onMessage: (message: WorkerToMain) => void) {
    super();
    this.#worker = new Worker(url, { workerData: init, resourceLimits: WORKER_RESOURCE_LIMITS });
    this.ready = new Promise((resolve, reject) => {
      this.#worker.once('error', reject);
      this.#worker.on('message', (message: WorkerToMain) => {
        if (message.kind === 'ready') {
          this.#worker.off('error', reject);
          resolve();
        } else if (message.kind === 'response') {
          this.#settle(message);
        } else {
          onMessage(message);
        }
      });
    });
    this.#worker.on('error', (error) => logger.error('media worker error', { error: loggableError(error) }));
    this.#worker.once('exit', (code) => {
      for (const pending of this.#pending.values()) {
        clearTimeout(pending.timer);
        pending.reject(unavailable('the media worker of this room stopped'));
      }
      this.#pending.clear();
      this.emit('exit', code);
    });
  }

  request<N extends CommandName>(command: N, args: CommandArgs<N>, timeoutMs = COMMAND_TIMEOUT_MS) {
    const id = this.#nextId++;
    return new Promise<CommandResult<N>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(unavailable('the media worker did not answer in time'));
      }, timeoutMs);
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject, timer });
      this.post({ kind: 'request', id, command, args });
    });
  }

  /** Ends the utilization window and starts the next one. */
  measureUtilization(): void {
    const now = this.#worker.performance.eventLoopUtilization();
    if (this.#utilizationMark) {
      this.utilization = this.#worker.performance.eventLoopUtilization(now, this.#utilizationMark).utilization;
    }
    this.#utilizationMark = now;
  }

  post(message: MainToWorker, transfer: TransferListItem[] = []): void {
    this.#worker.postMessage(message, transfer);
  }

  #settle(message: Extract<WorkerToMain, { kind: 'response' }>): void {
    const pending = this.#pending.get(message.id);
    if (!pending) return;
    this.#pending.delete(message.id);
    clearTimeout(pending.timer);
    if (message.ok) pending.resolve(message.result);
    else pending.reject(MediaNodeError.deserialize(message.error));
  }

  async terminate(): Promise<void> {
    await this.#worker.terminate();
  }
}
