/**
 * Media node benchmark: starts the media node (child process, loopback), one werift publisher (dummy
 * VP8 30 fps + Opus 50 pps) and subscribers in this process, in steps. For each step it reads the
 * node's /metrics over a window: forwarded packets per second, CPU of the whole node process (every
 * thread) per forwarded packet, and RSS. The marginal cost between two steps removes the fixed costs
 * (timers, RTCP, the metrics sampler) that dominate at small counts.
 *
 *   npm run bench:media -- --steps 10,40 --window 10 --workers 1
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { newId } from '../shared/src/ids.ts';
import { MediaNodeProcess, metricValue, publishThrough, subscribeThrough } from '../test/media-node/harness.ts';
import { TestPublisher, TestSubscriber, waitFor } from '../test/support/werift-peers.ts';

const { values: args } = parseArgs({
  options: {
    steps: { type: 'string', default: '10,40' },
    window: { type: 'string', default: '10' },
    workers: { type: 'string', default: '1' },
  },
});
const STEPS = args.steps.split(',').map(Number);
const WINDOW_S = Number(args.window);
const resultsFile = join(dirname(fileURLToPath(import.meta.url)), 'results', 'media-node.json');

interface StepResult {
  subscribers: number;
  forwarded_pps: number;
  cpu_percent: number;
  cpu_us_per_forwarded_packet: number;
  rss_mb: number;
}

const node = await MediaNodeProcess.start({ MEDIA_WORKERS: args.workers });
const publisher = await TestPublisher.create();
const subscribers: TestSubscriber[] = [];
const results: StepResult[] = [];
try {
  const roomId = newId();
  const publisherId = newId();
  await publishThrough(node, roomId, publisherId, publisher);
  for (const target of STEPS) {
    while (subscribers.length < target) {
      const subscriber = new TestSubscriber();
      subscribers.push(subscriber);
      await subscribeThrough(node, roomId, newId(), subscriber, [publisherId]);
    }
    await waitFor(() => subscribers.every((subscriber) => subscriber.totalPackets() > 0), {
      timeoutMs: 30_000,
      message: 'media at every subscriber',
    });
    const before = await sample();
    await new Promise((resolve) => setTimeout(resolve, WINDOW_S * 1_000));
    const after = await sample();
    const packets = after.forwarded - before.forwarded;
    const cpuSeconds = after.cpu - before.cpu;
    const result: StepResult = {
      subscribers: target,
      forwarded_pps: round(packets / WINDOW_S),
      cpu_percent: round((cpuSeconds / WINDOW_S) * 100),
      cpu_us_per_forwarded_packet: round((cpuSeconds / packets) * 1e6),
      rss_mb: round(after.rss / 2 ** 20),
    };
    results.push(result);
    console.log(JSON.stringify(result));
  }
} finally {
  await Promise.all([publisher.close(), ...subscribers.map((subscriber) => subscriber.close())]);
  await node.stop();
}

const [first, last] = [results[0]!, results.at(-1)!];
const marginal =
  results.length > 1
    ? round((((last.cpu_percent - first.cpu_percent) / 100) * 1e6) / (last.forwarded_pps - first.forwarded_pps))
    : undefined;
const report = {
  benchmark: 'media-node',
  date: new Date().toISOString(),
  node: process.version,
  workers: Number(args.workers),
  window_s: WINDOW_S,
  steps: results,
  marginal_cpu_us_per_forwarded_packet: marginal,
};
mkdirSync(dirname(resultsFile), { recursive: true });
writeFileSync(resultsFile, `${JSON.stringify(report, null, 2)}\n`);
console.log(`marginal CPU per forwarded packet: ${marginal ?? 'n/a'} µs → ${resultsFile}`);

async function sample() {
  return {
    forwarded: await metricValue(node, 'truegather_rtp_forwarded_packets_total'),
    cpu: await metricValue(node, 'process_cpu_seconds_total'),
    rss: await metricValue(node, 'process_resident_memory_bytes'),
  };
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
