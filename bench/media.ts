/**
 * Media benchmark (issue #10): the media node against Janus VideoRoom and a plain Node UDP fan-out,
 * same workload, same run, so that this noisy 2-vCPU VM is compared with itself and the result is
 * quoted as ratios.
 *
 * Workload: one werift publisher (dummy VP8 + Opus, ~80 packets/s) and N subscribers, each group in
 * load-generator processes of its own (their CPU is reported, never counted as the SFU's). At least
 * `--full` subscribers (20) decrypt everything and check sequence continuity; the rest only count
 * packets after ICE and DTLS. For each N: CPU of the SFU process (every thread, from /proc) over a
 * window with media flowing, then over a window with the publisher paused (idle cost), and RSS.
 *
 *   npm run bench:media                              # N = 0,20,60,100,300, every system, three times in turn
 *   npm run bench:media -- --steps 0,20,60 --window 10 --systems node,janus-el2
 *   npm run bench:media -- --steps 60 --systems node --node-options="--cpu-prof --cpu-prof-dir=/tmp/prof"
 *   npm run bench:media -- --publisher werift,chromium-simulcast --steps 20,60 --systems node
 *
 * `--publisher chromium-simulcast`: the publisher is headless Chromium (fake 1280×720 camera, the SDK's
 * three layers, Opus) instead of the werift one; with both publishers listed, each system runs with
 * each in turn and the report compares their cost per forwarded packet. Such runs write
 * bench/results/media-simulcast.json and leave bench/README.md alone (its figures are the werift run's).
 *
 * `--scale 1x1,1x2`: the single-room scale dimension (#14). The media node runs once per placement,
 * `<nodes>x<worker threads per node>`, with the same steps (default 20,60,100,200,300,400), each
 * reporting the node's worker threads' event-loop utilization and peers per step, and the N at which
 * loss first passes 1 %; the other `--systems` (Janus) run once as the same-run reference. Such runs
 * write bench/results/media-scale.json and their own section of bench/README.md.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { defaultHostAddresses } from '../media-node/src/sfu/rtc-settings.ts';
import { newId } from '../shared/src/ids.ts';
import { mediaControlPath, type PublishResponse, type SubscribeResponse } from '../shared/src/media-control.ts';
import { MediaNodeProcess } from '../test/media-node/harness.ts';
import { freePort } from '../test/support/ports.ts';
import { BenchChild } from './media/child.ts';
import { ChromiumSimulcastPublisher } from './media/chromium-publisher.ts';
import { ChromiumViewer } from './media/chromium-viewer.ts';
import { ensureJanusInstalled, JanusProcess, JanusSession } from './media/janus.ts';
import type { LoadCommand, LoadStats } from './media/load-generator.ts';
import { cpuShare, sampleProcess, sampleProcesses } from './media/proc-stats.ts';
import {
  type BenchReport,
  medianOfRepetitions,
  type PublisherKind,
  type StepResult,
  type SystemName,
  summarize,
  writeReport,
  writeSimulcastReport,
} from './media/report.ts';
import { parseTopologies, type Topology, writeScaleReport } from './media/scale-report.ts';
import type { FloorCommand } from './media/udp-floor.ts';

const { values: args } = parseArgs({
  options: {
    steps: { type: 'string' },
    window: { type: 'string', default: '20' },
    'idle-window': { type: 'string', default: '20' },
    systems: { type: 'string', default: 'node,janus,janus-el2,floor' },
    full: { type: 'string', default: '20' },
    'per-process': { type: 'string', default: '100' },
    'no-readme': { type: 'boolean', default: false },
    /** How many times each system runs, in turn (node, Janus, …, node, Janus, …): figures are medians. */
    repetitions: { type: 'string', default: '3' },
    /** Which publishers, each in turn: `werift` (dummy VP8 + Opus) and/or `chromium-simulcast`. */
    publisher: { type: 'string', default: 'werift' },
    /** NODE_OPTIONS for the media node, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile it under load. */
    'node-options': { type: 'string' },
    /** The single-room scale dimension: the node's placements to compare, e.g. `1x1,1x2` (nodes x workers). */
    scale: { type: 'string' },
    /** Headless Chromium viewers timed `subscribe` → first decoded frame after the last step (0: none). */
    'browser-viewers': { type: 'string', default: '5' },
  },
});
const TOPOLOGIES: Topology[] | undefined = args.scale === undefined ? undefined : parseTopologies(args.scale);
const STEPS = (args.steps ?? (TOPOLOGIES ? '20,60,100,200,300,400' : '0,20,60,100,300')).split(',').map(Number);
const WINDOW_S = Number(args.window);
const IDLE_WINDOW_S = Number(args['idle-window']);
const FULL_SUBSCRIBERS = Number(args.full);
const SUBSCRIBERS_PER_PROCESS = Number(args['per-process']);
const SYSTEMS = args.systems.split(',') as SystemName[];
const REPETITIONS = Number(args.repetitions);
if (!Number.isInteger(REPETITIONS) || REPETITIONS < 1) throw new Error(`--repetitions must be a positive integer`);
const PUBLISHERS = args.publisher.split(',') as PublisherKind[];
for (const kind of PUBLISHERS) {
  if (kind !== 'werift' && kind !== 'chromium-simulcast') throw new Error(`unknown --publisher ${kind}`);
}
/** A step whose subscribers do not all receive media in this time ends the run of that system. */
const MEDIA_TIMEOUT_MS = 60_000;
const SETTLE_MS = 2_000;
const SUBSCRIBE_CONCURRENCY = 4;
const BROWSER_VIEWERS = TOPOLOGIES ? 0 : Number(args['browser-viewers']);

const loadScript = new URL('./media/load-generator.ts', import.meta.url);
const floorScript = new URL('./media/udp-floor.ts', import.meta.url);

/** The bench's one publisher, in a werift load generator or in headless Chromium. */
interface BenchPublisher {
  /** Its process, whose CPU is reported beside the load generators' (Chromium's: none measured). */
  pid: number | undefined;
  /** Simulcast: subscribers get one layer of several, so loss is read from sequence gaps, not from what was sent. */
  simulcast: boolean;
  createOffer(): Promise<string>;
  setAnswer(sdp: string): Promise<void>;
  pause(paused: boolean): Promise<void>;
  sentPackets(): Promise<number>;
  close(): Promise<void>;
}

function weriftPublisher(loadArgs: string[]): BenchPublisher {
  const load = new BenchChild<LoadCommand>(loadScript, loadArgs);
  return {
    pid: load.pid,
    simulcast: false,
    createOffer: () => load.send<string>({ op: 'publish' }),
    setAnswer: async (sdp) => void (await load.send({ op: 'publisher-answer', sdp })),
    pause: async (paused) => void (await load.send({ op: 'pause', paused })),
    sentPackets: async () => (await load.send<LoadStats>({ op: 'stats' })).publisherSent,
    close: () => load.close(),
  };
}

/** Chromium with three camera layers; the step measurements start once it sends all three. */
async function chromiumPublisher(): Promise<BenchPublisher> {
  const chromium = await ChromiumSimulcastPublisher.launch();
  return {
    pid: undefined,
    simulcast: true,
    createOffer: () => chromium.createOffer(),
    async setAnswer(sdp) {
      await chromium.setAnswer(sdp);
      const deadline = performance.now() + MEDIA_TIMEOUT_MS;
      for (;;) {
        const widths = await chromium.sentLayerWidths();
        if (widths.length === 3) return console.log(`chromium-simulcast: sending layers ${widths.join(', ')} px wide`);
        if (performance.now() > deadline) throw new Error(`Chromium sends ${widths.length} of 3 layers`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    },
    pause: (paused) => chromium.pause(paused),
    sentPackets: () => chromium.sentPackets(),
    close: () => chromium.close(),
  };
}

interface Sfu {
  /** Its processes (several nodes, or one): CPU and RSS are their sum. */
  pids: number[];
  /** The local address the load generators' peers use for ICE (default 127.0.0.1). */
  iceAddress?: string;
  publish(offer: string): Promise<string>;
  subscribe(answer: (offer: string) => Promise<string>): Promise<void>;
  /** Its recent warnings and errors, printed when a step fails. */
  problems(): string[];
  /**
   * Per worker thread (of every node, in order): its event-loop utilization since the previous call,
   * and its peer connections (the media node's /metrics). Called at both ends of a window, so the utilization is the window's.
   */
  workerLoad?(): Promise<{ utilization: number[]; peers: number[] }>;
  stop(): Promise<void>;
}

/**
 * The media node as `npm start` runs it: default workers (one per core) unless told, capacity and port
 * range, info logs. With several nodes (`--scale 2x1`), they share MEDIA_NODE_SECRET and each its own
 * port range; the publisher is on the first, viewers go to the node with the fewest, and each other
 * node pulls the feed from the first through one relay (the `relay` operation, as the room's Durable
 * Object calls it). `spreadRoom`: the room's viewers go to each worker in turn (MEDIA_ROOM_AFFINITY=1)
 * instead of staying on one worker until it is busy, which this VM's load never makes it.
 */
async function startNodes(
  { nodes, workers }: Pick<Topology, 'nodes' | 'workers'>,
  { spreadRoom = false } = {},
): Promise<Sfu> {
  const secret = randomBytes(32).toString('base64url');
  const portsPerNode = Math.floor(10_000 / nodes);
  const started = await Promise.all(
    Array.from({ length: nodes }, (_, index) =>
      MediaNodeProcess.start({
        MEDIA_NODE_SECRET: secret,
        MEDIA_WORKERS: String(workers),
        ...(spreadRoom ? { MEDIA_ROOM_AFFINITY: '1' } : {}),
        MEDIA_RTC_MIN_PORT: String(40_000 + index * portsPerNode),
        MEDIA_RTC_MAX_PORT: String(40_000 + (index + 1) * portsPerNode - 1),
        ...(args['node-options'] ? { NODE_OPTIONS: args['node-options'] } : {}),
      }),
    ),
  );
  const [origin] = started as [MediaNodeProcess, ...MediaNodeProcess[]];
  const roomId = newId();
  const publisherId = newId();
  const viewers = started.map(() => 0);
  const relaying = new Set<MediaNodeProcess>([origin]);
  return {
    pids: started.map((node) => node.pid),
    async publish(offer) {
      const response = await origin.request<PublishResponse>('POST', mediaControlPath('publish', roomId), {
        participant_id: publisherId,
        sdp: offer,
      });
      if (response.status !== 201) throw new Error(`publish: ${response.status}`);
      return response.body.sdp;
    },
    async subscribe(answer) {
      const index = viewers.indexOf(Math.min(...viewers));
      viewers[index]! += 1;
      const node = started[index]!;
      if (!relaying.has(node)) {
        relaying.add(node);
        const relayed = await node.request('PUT', mediaControlPath('relay', roomId), {
          origin_url: origin.url,
          feeds: [publisherId],
        });
        if (relayed.status !== 200) throw new Error(`relay: ${relayed.status} ${JSON.stringify(relayed.body)}`);
      }
      const participantId = newId();
      const offer = await node.request<SubscribeResponse>('PUT', mediaControlPath('subscribe', roomId, participantId), {
        feeds: [publisherId],
      });
      if (offer.status !== 200) throw new Error(`subscribe: ${offer.status} ${JSON.stringify(offer.body)}`);
      const sdp = await answer(offer.body.sdp);
      const answered = await node.request('POST', mediaControlPath('setSubscriberAnswer', roomId, participantId), {
        sdp,
      });
      if (answered.status !== 200) throw new Error(`answer: ${answered.status}`);
    },
    problems: () =>
      started.flatMap((node) => node.logs.filter((line) => /"level":"(warn|error)"/.test(line))).slice(-20),
    async workerLoad() {
      const loads = await Promise.all(started.map((node) => workerLoadOf(node)));
      return {
        utilization: loads.flatMap((load) => load.utilization),
        peers: loads.flatMap((load) => load.peers),
      };
    },
    stop: async () => void (await Promise.all(started.map((node) => node.stop()))),
  };
}

/** A node's worker threads, from its /metrics: event-loop utilization since the previous scrape, and peers. */
async function workerLoadOf(node: MediaNodeProcess): Promise<{ utilization: number[]; peers: number[] }> {
  const text = await (await fetch(new URL('/metrics', node.url))).text();
  const perWorker = (metric: string) => {
    const values: number[] = [];
    for (const match of text.matchAll(new RegExp(`^${metric}\\{worker="(\\d+)"\\} (\\S+)$`, 'gm'))) {
      values[Number(match[1])] = round(Number(match[2]));
    }
    return Array.from(values, (value) => value ?? 0);
  };
  return {
    utilization: perWorker('truegather_worker_event_loop_utilization'),
    peers: perWorker('truegather_worker_peer_connections'),
  };
}

async function startJanus(eventLoops: number): Promise<Sfu> {
  const iceAddress = defaultHostAddresses(undefined)[0];
  if (!iceAddress) throw new Error('Janus needs a non-loopback IPv4 address to gather on');
  const janus = await JanusProcess.start(ensureJanusInstalled(), {
    iceAddress,
    eventLoops,
    wsPort: await freePort(),
    rtpPorts: [30_000, 39_999],
  });
  const session = await JanusSession.connect(janus.wsUrl);
  let feed = 0;
  return {
    pids: [janus.pid],
    iceAddress,
    async publish(offer) {
      const published = await session.publish(offer);
      feed = published.feed;
      return published.answer;
    },
    subscribe: (answer) => session.subscribe(feed, answer),
    problems: () => [],
    async stop() {
      session.close();
      await janus.stop();
    },
  };
}

/** Runs the steps against one SFU: a publisher, werift subscribers, CPU/RSS windows, loss, latency. */
async function runSfu(system: string, sfu: Sfu, publisherKind: PublisherKind): Promise<StepResult[]> {
  const loadArgs = sfu.iceAddress ? [sfu.iceAddress] : [];
  const publisher = publisherKind === 'werift' ? weriftPublisher(loadArgs) : await chromiumPublisher();
  const label = publisherKind === 'werift' ? system : `${system} (${publisherKind})`;
  const subscriberLoads: BenchChild<LoadCommand>[] = [];
  const subscribeStartedAt: number[] = [];
  const results: StepResult[] = [];
  const loadFor = (index: number) => {
    const processIndex =
      index < FULL_SUBSCRIBERS ? 0 : 1 + Math.floor((index - FULL_SUBSCRIBERS) / SUBSCRIBERS_PER_PROCESS);
    while (subscriberLoads.length <= processIndex)
      subscriberLoads.push(new BenchChild<LoadCommand>(loadScript, loadArgs));
    return subscriberLoads[processIndex]!;
  };
  const loadPids = () => [publisher.pid, ...subscriberLoads.map((load) => load.pid)].filter((pid) => pid !== undefined);
  const allStats = async () => {
    const [publisherSent, subscribers] = await Promise.all([
      publisher.sentPackets(),
      Promise.all(subscriberLoads.map((load) => load.send<LoadStats>({ op: 'stats' }))),
    ]);
    return { publisherSent, subscribers: subscribers.flatMap((stats) => stats.subscribers) };
  };
  try {
    await publisher.setAnswer(await sfu.publish(await publisher.createOffer()));
    for (const target of STEPS) {
      const failure = await addSubscribers(target);
      if (failure) {
        console.log(`${label}: stopped at N = ${target}: ${failure}`);
        for (const line of sfu.problems()) console.log(`  ${line}`);
        results.push({ subscribers: target, failed: failure } as StepResult);
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      const flowing = await measureWindow(WINDOW_S);
      await publisher.pause(true);
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      const idle = await measureWindow(IDLE_WINDOW_S);
      await publisher.pause(false);
      const stats = await allStats();
      const latencies = stats.subscribers
        .map((subscriber, index) =>
          subscriber.light ? Number.NaN : (subscriber.firstPacketAt ?? Number.NaN) - subscribeStartedAt[index]!,
        )
        .filter((latency) => Number.isFinite(latency));
      const full = stats.subscribers.filter((subscriber) => !subscriber.light);
      const result: StepResult = {
        subscribers: target,
        forwarded_pps: round(flowing.receivedPackets / WINDOW_S),
        publisher_pps: round(flowing.sentPackets / WINDOW_S),
        cpu_percent: round(flowing.cpu * 100),
        cpu_us_per_packet: target > 0 ? round((flowing.cpu * 1e6 * WINDOW_S) / flowing.receivedPackets) : undefined,
        idle_cpu_percent: round(idle.cpu * 100),
        rss_mb: round(flowing.rssBytes / 2 ** 20),
        rss_file_mb: round(flowing.rssFileBytes / 2 ** 20),
        loss_percent: target > 0 ? round(lossPercent(flowing, target)) : undefined,
        missing_sequence_numbers: flowing.missingSequenceNumbers,
        full_subscribers: full.length,
        load_cpu_percent: flowing.loadCpu.map((share) => round(share * 100)),
        ...(flowing.workers
          ? { worker_utilization: flowing.workers.utilization, worker_peers: flowing.workers.peers }
          : {}),
        first_rtp_ms:
          latencies.length > 0
            ? { p50: round(percentile(latencies, 50)), p95: round(percentile(latencies, 95)) }
            : undefined,
      };
      results.push(result);
      console.log(label, JSON.stringify(result));
    }
    const last = results.at(-1);
    if (BROWSER_VIEWERS > 0 && last && !last.failed) {
      const latencies = await browserFirstFrames();
      last.browser_first_frame_ms = { p50: round(percentile(latencies, 50)), max: round(Math.max(...latencies)) };
      console.log(
        label,
        `N = ${last.subscribers}: Chromium subscribe → first decoded frame`,
        last.browser_first_frame_ms,
      );
    }
  } finally {
    await Promise.all([publisher.close(), ...subscriberLoads.map((load) => load.close())]);
  }
  return results;

  /**
   * `subscribe` → first decoded video frame for {@link BROWSER_VIEWERS} headless Chromium viewers, one at
   * a time, with the last step's subscribers still connected (ms). They stay until the SFU stops: no
   * window is measured after them.
   */
  async function browserFirstFrames(): Promise<number[]> {
    const viewer = await ChromiumViewer.launch();
    try {
      const latencies: number[] = [];
      for (let index = 0; index < BROWSER_VIEWERS; index++) {
        const startedAt = performance.timeOrigin + performance.now();
        await sfu.subscribe((offer) => viewer.answer(offer));
        latencies.push((await viewer.firstDecodedFrameAt(MEDIA_TIMEOUT_MS)) - startedAt);
      }
      return latencies;
    } finally {
      await viewer.close();
    }
  }

  /**
   * What the subscribers did not get. Each gets everything a plain publisher sends, but only one of a
   * simulcast publisher's layers: there, the full subscribers' sequence gaps (the node rewrites each
   * viewer's sequence numbers into one run) against what they received.
   */
  function lossPercent(window: Awaited<ReturnType<typeof measureWindow>>, target: number): number {
    if (!publisher.simulcast) return Math.max(0, 100 * (1 - window.receivedPackets / (window.sentPackets * target)));
    const expected = window.fullReceivedPackets + window.missingSequenceNumbers;
    return expected > 0 ? (100 * window.missingSequenceNumbers) / expected : 0;
  }

  async function addSubscribers(target: number): Promise<string | undefined> {
    const queue: number[] = [];
    for (let index = subscribeStartedAt.length; index < target; index++) queue.push(index);
    const subscribe = async (index: number) => {
      const load = loadFor(index);
      subscribeStartedAt[index] = performance.timeOrigin + performance.now();
      await sfu.subscribe((offer) => load.send<string>({ op: 'subscribe', offer, light: index >= FULL_SUBSCRIBERS }));
    };
    const worker = async () => {
      for (let index = queue.shift(); index !== undefined; index = queue.shift()) await subscribe(index);
    };
    try {
      // The full subscribers one at a time, each waiting for its media: their `subscribe` → first RTP
      // is the latency figure, free of the queueing of subscribers joining together.
      while (queue.length > 0 && queue[0]! < FULL_SUBSCRIBERS) {
        const index = queue.shift()!;
        await subscribe(index);
        await waitForMedia(index);
      }
      await Promise.all(Array.from({ length: SUBSCRIBE_CONCURRENCY }, worker));
    } catch (error) {
      return `subscribing failed: ${error instanceof Error ? error.message : String(error)}`;
    }
    const deadline = performance.now() + MEDIA_TIMEOUT_MS;
    for (;;) {
      const { subscribers } = await allStats();
      const waiting = subscribers.filter((subscriber) => subscriber.packets === 0);
      if (waiting.length === 0) return undefined;
      if (performance.now() > deadline) {
        const states = waiting.map((subscriber) => `${subscriber.light ? 'light' : 'full'} ${subscriber.state}`);
        return `${waiting.length} of ${target} subscribers received no media in ${MEDIA_TIMEOUT_MS / 1000} s (${states.join(', ')})`;
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  /** Waits (up to the media timeout) for subscriber `index`'s first packet, polling its generator. */
  async function waitForMedia(index: number): Promise<void> {
    const load = loadFor(index);
    const deadline = performance.now() + MEDIA_TIMEOUT_MS;
    while (performance.now() < deadline) {
      const { subscribers } = await load.send<LoadStats>({ op: 'stats' });
      if (subscribers.some((subscriber, position) => position === index && subscriber.packets > 0)) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async function measureWindow(seconds: number) {
    const statsBefore = await allStats();
    // Starts the workers' utilization measurement afresh: the next call reports this window's.
    await sfu.workerLoad?.();
    const before = sampleProcesses(sfu.pids);
    const pids = loadPids();
    const loadBefore = pids.map((pid) => sampleProcess(pid));
    await new Promise((resolve) => setTimeout(resolve, seconds * 1_000));
    const after = sampleProcesses(sfu.pids);
    const loadAfter = pids.map((pid) => sampleProcess(pid));
    const workers = await sfu.workerLoad?.();
    const statsAfter = await allStats();
    // Pauses leave gaps in the publisher's sequence numbers: only what went missing in the window counts.
    const missing = (stats: typeof statsBefore) =>
      stats.subscribers.reduce((sum, subscriber) => sum + (subscriber.light ? 0 : subscriber.missing), 0);
    const received = (stats: typeof statsBefore, full = false) =>
      stats.subscribers.reduce((sum, subscriber) => sum + (full && subscriber.light ? 0 : subscriber.packets), 0);
    return {
      cpu: cpuShare(before, after),
      rssBytes: after.rssBytes,
      rssFileBytes: after.rssFileBytes,
      receivedPackets: received(statsAfter) - received(statsBefore),
      fullReceivedPackets: received(statsAfter, true) - received(statsBefore, true),
      missingSequenceNumbers: missing(statsAfter) - missing(statsBefore),
      sentPackets: statsAfter.publisherSent - statsBefore.publisherSent,
      loadCpu: loadAfter.map((sample, index) => cpuShare(loadBefore[index]!, sample)),
      workers,
    };
  }
}

/** The floor: the same packet rate fanned out by plain dgram sockets, no crypto. */
async function runFloor(packetsPerSecond: number): Promise<StepResult[]> {
  const forwarder = new BenchChild<FloorCommand>(floorScript);
  const load = new BenchChild<FloorCommand>(floorScript);
  const results: StepResult[] = [];
  const ports: number[] = [];
  try {
    const inbound = await forwarder.send<number>({ op: 'bind' });
    await load.send({ op: 'source', port: inbound, packetsPerSecond, paused: false });
    for (const target of STEPS) {
      ports.push(...(await load.send<number[]>({ op: 'sinks', count: target })));
      await forwarder.send({ op: 'targets', ports });
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      const statsBefore = await load.send<{ sent: number; received: number[] }>({ op: 'stats' });
      const before = sampleProcess(forwarder.pid);
      const loadBefore = sampleProcess(load.pid);
      await new Promise((resolve) => setTimeout(resolve, WINDOW_S * 1_000));
      const after = sampleProcess(forwarder.pid);
      const loadAfter = sampleProcess(load.pid);
      const statsAfter = await load.send<{ sent: number; received: number[] }>({ op: 'stats' });
      const received = statsAfter.received.reduce((a, b) => a + b, 0) - statsBefore.received.reduce((a, b) => a + b, 0);
      const sent = statsAfter.sent - statsBefore.sent;
      const cpu = cpuShare(before, after);
      const result: StepResult = {
        subscribers: target,
        forwarded_pps: round(received / WINDOW_S),
        publisher_pps: round(sent / WINDOW_S),
        cpu_percent: round(cpu * 100),
        cpu_us_per_packet: target > 0 ? round((cpu * 1e6 * WINDOW_S) / received) : undefined,
        rss_mb: round(after.rssBytes / 2 ** 20),
        rss_file_mb: round(after.rssFileBytes / 2 ** 20),
        loss_percent: target > 0 ? round(Math.max(0, 100 * (1 - received / (sent * target)))) : undefined,
        load_cpu_percent: [round(cpuShare(loadBefore, loadAfter) * 100)],
      };
      results.push(result);
      console.log('floor', JSON.stringify(result));
    }
  } finally {
    await Promise.all([forwarder.close(), load.close()]);
  }
  return results;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

/** The single-room scale dimension: the node in each placement, the other systems once, werift publisher. */
async function runScale(topologies: Topology[]): Promise<void> {
  const placements: Record<string, StepResult[]> = {};
  for (const topology of topologies) {
    console.log(`--- node, ${topology.label}`);
    // Each placement's workers all forward: the room is spread over them from its first viewers.
    const sfu = await startNodes(topology, { spreadRoom: true });
    try {
      placements[topology.key] = await runSfu(`node ${topology.key}`, sfu, 'werift');
    } finally {
      await sfu.stop();
    }
  }
  const references: Partial<Record<SystemName, StepResult[]>> = {};
  for (const system of SYSTEMS) {
    if (system !== 'janus' && system !== 'janus-el2') continue;
    console.log(`--- ${system} (reference)`);
    const sfu = await startJanus(system === 'janus-el2' ? 2 : 0);
    try {
      references[system] = await runSfu(system, sfu, 'werift');
    } finally {
      await sfu.stop();
    }
  }
  writeScaleReport(
    {
      benchmark: 'media-scale',
      date: new Date().toISOString(),
      node: process.version,
      cpus: availableParallelism(),
      window_s: WINDOW_S,
      full_subscribers: FULL_SUBSCRIBERS,
      topologies: topologies.map((topology) => ({ ...topology, steps: placements[topology.key]! })),
      references,
    },
    { readme: !args['no-readme'] },
  );
}

/** The systems compared at each N, with each publisher in turn (the default run, issue #10). */
async function runComparison(): Promise<void> {
  const runs: Partial<Record<PublisherKind, Partial<Record<SystemName, StepResult[][]>>>> = {};
  let publisherRate = 80;
  for (const publisherKind of PUBLISHERS) {
    const repetitions: Partial<Record<SystemName, StepResult[][]>> = {};
    runs[publisherKind] = repetitions;
    // The systems in turn, then again: this VM's load drifts over minutes, and each system's
    // repetitions spread over the whole run compare like with like.
    for (let repetition = 1; repetition <= REPETITIONS; repetition++) {
      for (const system of SYSTEMS) {
        console.log(`--- ${system}, ${publisherKind} publisher, repetition ${repetition} of ${REPETITIONS}`);
        repetitions[system] ??= [];
        const done = repetitions[system];
        if (system === 'floor') {
          done.push(await runFloor(publisherRate));
          continue;
        }
        const sfu =
          system === 'node'
            ? await startNodes({ nodes: 1, workers: availableParallelism() })
            : await startJanus(system === 'janus-el2' ? 2 : 0);
        try {
          const steps = await runSfu(system, sfu, publisherKind);
          publisherRate = steps.find((step) => step.publisher_pps)?.publisher_pps ?? publisherRate;
          done.push(steps);
        } finally {
          await sfu.stop();
        }
      }
    }
  }

  const reportOf = (repetitions: Partial<Record<SystemName, StepResult[][]>>): BenchReport => {
    const entries = Object.entries(repetitions) as [SystemName, StepResult[][]][];
    const systems = Object.fromEntries(entries.map(([name, runs]) => [name, medianOfRepetitions(runs)]));
    return {
      benchmark: 'media',
      date: new Date().toISOString(),
      node: process.version,
      cpus: availableParallelism(),
      window_s: WINDOW_S,
      idle_window_s: IDLE_WINDOW_S,
      full_subscribers: FULL_SUBSCRIBERS,
      repetitions: REPETITIONS,
      us_per_packet_60_by_repetition: Object.fromEntries(
        entries.map(([name, runs]) => [
          name,
          runs.map((steps) => steps.find((step) => step.subscribers === 60 && !step.failed)?.cpu_us_per_packet),
        ]),
      ),
      systems,
      summary: summarize(systems),
    };
  };
  if (runs['chromium-simulcast']) {
    writeSimulcastReport({
      werift: runs.werift && reportOf(runs.werift),
      simulcast: reportOf(runs['chromium-simulcast']),
    });
  } else {
    writeReport(reportOf(runs.werift ?? {}), { readme: !args['no-readme'] });
  }
}

if (TOPOLOGIES) await runScale(TOPOLOGIES);
else await runComparison();
