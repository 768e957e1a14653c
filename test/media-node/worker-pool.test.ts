import { afterEach, describe, expect, it } from 'vitest';
import { MediaNodeError } from '../../media-node/src/errors.ts';
import { MediaMetrics } from '../../media-node/src/metrics.ts';
import { MediaWorkerPool } from '../../media-node/src/workers/pool.ts';
import { newId } from '../../shared/src/ids.ts';
import type { Logger } from '../../shared/src/log.ts';
import type { MediaEvent } from '../../shared/src/media-control.ts';
import { waitFor } from '../support/werift-peers.ts';

/** The crash is expected: its error line would only be noise in the test output. */
const silent: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };

describe('media worker pool', () => {
  let pool: MediaWorkerPool | undefined;
  afterEach(async () => {
    await pool?.stop();
  });

  it('reports the peers of a worker that dies, refuses its pending command, and replaces it', async () => {
    const events: MediaEvent[] = [];
    pool = new MediaWorkerPool({
      workers: 1,
      capacity: 10,
      connectTimeoutMs: 30_000,
      nodeId: 'node-test',
      logLevel: 'error',
      settings: { hostAddresses: ['127.0.0.1'] },
      portRange: { min: 40_000, max: 40_099 },
      secret: new TextEncoder().encode('x'.repeat(32)),
      logger: silent,
      onEvent: (event) => events.push(event),
      workerUrl: new URL('./fixtures/crashing-worker.ts', import.meta.url),
    });
    await pool.start();
    const roomId = newId();
    const publisherId = newId();
    await pool.run('publish', { roomId, participantId: publisherId, sdp: 'v=0' });
    expect(pool.load).toBe(1);

    const crash = pool.run('closeRoom', { roomId });
    await expect(crash).rejects.toBeInstanceOf(MediaNodeError);
    await expect(crash).rejects.toMatchObject({ status: 503, code: 'service_unavailable' });
    expect(events).toEqual([
      { type: 'publisher_closed', room_id: roomId, participant_id: publisherId, reason: 'media worker failed' },
    ]);
    expect(pool.roomCount).toBe(0);

    // A new worker takes over: new rooms work again.
    const answer = await waitFor(
      () => pool!.run('publish', { roomId: newId(), participantId: newId(), sdp: 'v=0' }).catch(() => undefined),
      { message: 'the replacement worker' },
    );
    expect(answer).toEqual({ sdp: 'v=0\r\n', streams: [] });
  });

  it('replaces a worker that stops answering (watchdog), reporting its peers closed', async () => {
    const events: MediaEvent[] = [];
    pool = new MediaWorkerPool({
      workers: 1,
      capacity: 10,
      connectTimeoutMs: 30_000,
      nodeId: 'node-test',
      logLevel: 'error',
      settings: { hostAddresses: ['127.0.0.1'] },
      portRange: { min: 40_000, max: 40_099 },
      secret: new TextEncoder().encode('x'.repeat(32)),
      logger: silent,
      onEvent: (event) => events.push(event),
      workerUrl: new URL('./fixtures/hanging-worker.ts', import.meta.url),
      watchdogIntervalMs: 100,
    });
    await pool.start();
    const roomId = newId();
    const publisherId = newId();
    await pool.run('publish', { roomId, participantId: publisherId, sdp: 'v=0' });

    // The worker hangs on this command; the watchdog notices and terminates it, which refuses the command.
    const hung = pool.run('closeRoom', { roomId });
    await expect(hung).rejects.toMatchObject({ status: 503, code: 'service_unavailable' });
    expect(events).toEqual([
      { type: 'publisher_closed', room_id: roomId, participant_id: publisherId, reason: 'media worker failed' },
    ]);
    expect(pool.roomCount).toBe(0);
    const answer = await waitFor(
      () => pool!.run('publish', { roomId: newId(), participantId: newId(), sdp: 'v=0' }).catch(() => undefined),
      { message: 'the replacement worker' },
    );
    expect(answer).toEqual({ sdp: 'v=0\r\n', streams: [] });
  });

  it('starts workers beyond the first with their first room, and stops them once they hold none', async () => {
    pool = new MediaWorkerPool({
      workers: 2,
      capacity: 10,
      connectTimeoutMs: 30_000,
      nodeId: 'node-test',
      logLevel: 'error',
      settings: { hostAddresses: ['127.0.0.1'] },
      portRange: { min: 40_000, max: 40_099 },
      secret: new TextEncoder().encode('x'.repeat(32)),
      logger: silent,
      onEvent: () => {},
      workerUrl: new URL('./fixtures/crashing-worker.ts', import.meta.url),
      idleWorkerStopMs: 100,
    });
    await pool.start();
    expect(pool.runningWorkers).toBe(1);
    const [first, second] = [newId(), newId()];
    const [firstPublisher, secondPublisher] = [newId(), newId()];
    await pool.run('publish', { roomId: first, participantId: firstPublisher, sdp: 'v=0' });
    expect(pool.runningWorkers).toBe(1);
    // The second room goes to the least-loaded worker, which starts for it.
    await pool.run('publish', { roomId: second, participantId: secondPublisher, sdp: 'v=0' });
    expect(pool.runningWorkers).toBe(2);
    await pool.run('unpublish', { roomId: second, participantId: secondPublisher });
    await waitFor(() => pool!.runningWorkers === 1, { message: 'the idle worker to stop' });
    // The first worker stays, even without rooms; the other comes back with the next room.
    await pool.run('unpublish', { roomId: first, participantId: firstPublisher });
    await pool.run('publish', { roomId: newId(), participantId: newId(), sdp: 'v=0' });
    await pool.run('publish', { roomId: newId(), participantId: newId(), sdp: 'v=0' });
    expect(pool.runningWorkers).toBe(2);
  });

  it('refuses a peer beyond MEDIA_CAPACITY and new rooms while draining, with 503', async () => {
    pool = new MediaWorkerPool({
      workers: 1,
      capacity: 1,
      connectTimeoutMs: 30_000,
      nodeId: 'node-test',
      logLevel: 'error',
      settings: { hostAddresses: ['127.0.0.1'] },
      portRange: { min: 40_000, max: 40_099 },
      secret: new TextEncoder().encode('x'.repeat(32)),
      logger: silent,
      onEvent: () => {},
      workerUrl: new URL('./fixtures/crashing-worker.ts', import.meta.url),
    });
    await pool.start();
    const roomId = newId();
    await pool.run('publish', { roomId, participantId: newId(), sdp: 'v=0' });
    await expect(pool.run('publish', { roomId, participantId: newId(), sdp: 'v=0' })).rejects.toMatchObject({
      status: 503,
      details: { load: 1, capacity: 1 },
    });
    pool.draining = true;
    await expect(pool.run('subscribe', { roomId: newId(), participantId: newId(), feeds: [] })).rejects.toMatchObject({
      status: 503,
      details: { draining: true },
    });
    // Removals of unknown rooms are no-ops, answers to unknown rooms are 404.
    await expect(pool.run('closeSubscriber', { roomId: newId(), participantId: newId() })).resolves.toBeNull();
    await expect(
      pool.run('setSubscriberAnswer', { roomId: newId(), participantId: newId(), sdp: 'v=0' }),
    ).rejects.toMatchObject({ status: 404 });
  });

  it('keeps counting a worker that does not answer a scrape with its last stats: counters never go back', async () => {
    pool = new MediaWorkerPool({
      workers: 1,
      capacity: 10,
      connectTimeoutMs: 30_000,
      nodeId: 'node-test',
      logLevel: 'error',
      settings: { hostAddresses: ['127.0.0.1'] },
      portRange: { min: 40_000, max: 40_099 },
      secret: new TextEncoder().encode('x'.repeat(32)),
      logger: silent,
      onEvent: () => {},
      workerUrl: new URL('./fixtures/stalling-worker.ts', import.meta.url),
      statsTimeoutMs: 100,
    });
    await pool.start();
    const metrics = new MediaMetrics(pool);
    const counters = async () => {
      const { body } = await metrics.render();
      return [
        'truegather_rtp_forwarded_packets_total',
        'truegather_keyframe_requests_total',
        'truegather_layer_switches_total',
        'truegather_simulcast_forwarded_bytes_total{layer="low"}',
        'truegather_simulcast_forwarded_bytes_total{layer="high"}',
      ].map((name) => Number(body.match(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm'))?.[1]));
    };

    expect(await counters()).toEqual([1_000, 7, 3, 100, 5_000]);
    // The worker stalls from here on: the scrape waits 100 ms for it and then uses what it knew.
    expect(await counters()).toEqual([1_000, 7, 3, 100, 5_000]);
    const stats = await pool.stats();
    expect(stats).toMatchObject({ forwardedPackets: 1_000, rooms: 1, subscribers: 2 });
    // Per-worker gauges would describe the past: left out.
    expect(stats.workers).toEqual([]);
  });
});
