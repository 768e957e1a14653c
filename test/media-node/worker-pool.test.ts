import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MediaNodeError } from '../../media-node/src/errors.ts';
import { MediaMetrics } from '../../media-node/src/metrics.ts';
import { MediaWorkerPool, type PoolOptions, UTILIZATION_WINDOW_MS } from '../../media-node/src/workers/pool.ts';
import { newId } from '../../shared/src/ids.ts';
import type { Logger } from '../../shared/src/log.ts';
import type { MediaEvent } from '../../shared/src/media-control.ts';
import { waitFor } from '../support/werift-peers.ts';

/** The crash is expected: its error line would only be noise in the test output. */
const silent: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };

/** The pools' MEDIA_ROOM_AFFINITY here. */
const ROOM_AFFINITY_PARTICIPANTS = 4;
/** The pools' MEDIA_WORKER_BUSY_UTILIZATION here. */
const BUSY_UTILIZATION = 0.7;

/** A pool of stand-in workers (fixtures/) on loopback: each test says how many, and which stand-in. */
const standInPool = (
  options: Pick<PoolOptions, 'workers' | 'capacity' | 'onEvent' | 'workerUrl'> & Partial<PoolOptions>,
) =>
  new MediaWorkerPool({
    connectTimeoutMs: 30_000,
    nodeId: 'node-test',
    logLevel: 'error',
    settings: { hostAddresses: ['127.0.0.1'] },
    portRange: { min: 40_000, max: 40_099 },
    secret: new TextEncoder().encode('x'.repeat(32)),
    logger: silent,
    busyUtilization: BUSY_UTILIZATION,
    roomAffinity: ROOM_AFFINITY_PARTICIPANTS,
    ...options,
  });

describe('media worker pool', () => {
  let pool: MediaWorkerPool | undefined;
  afterEach(async () => {
    await pool?.stop();
  });

  it('reports the peers of a worker that dies, refuses its pending command, and replaces it', async () => {
    const events: MediaEvent[] = [];
    pool = standInPool({
      workers: 1,
      capacity: 10,
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
    pool = standInPool({
      workers: 1,
      capacity: 10,
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
    pool = standInPool({
      workers: 2,
      capacity: 10,
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

  it('places a room on one worker while it is small, spreads it past MEDIA_ROOM_AFFINITY, and routes by participant', async () => {
    pool = standInPool({
      workers: 2,
      capacity: 100,
      onEvent: () => {},
      workerUrl: new URL('./fixtures/plain-worker.ts', import.meta.url),
    });
    await pool.start();
    const roomId = newId();
    const publisherId = newId();
    await pool.run('publish', { roomId, participantId: publisherId, sdp: 'v=0' });
    const viewers = Array.from({ length: 2 * ROOM_AFFINITY_PARTICIPANTS }, () => newId());
    for (const participantId of viewers) await pool.run('subscribe', { roomId, participantId, feeds: [publisherId] });
    // The publisher and ROOM_AFFINITY_PARTICIPANTS viewers keep to the first worker; from there the
    // other one is the least loaded by more than that, and the room's later viewers go to it.
    expect(pool.workerOf(roomId, publisherId)).toBe(0);
    expect(viewers.map((participantId) => pool!.workerOf(roomId, participantId))).toEqual([
      ...Array(ROOM_AFFINITY_PARTICIPANTS).fill(0),
      ...Array(ROOM_AFFINITY_PARTICIPANTS).fill(1),
    ]);
    expect(pool.runningWorkers).toBe(2);
    // The edge sees one room: its peers over both workers.
    expect(pool.peersOf(roomId)).toEqual({ publishers: [publisherId], subscribers: viewers });
    expect(pool.roomCount).toBe(1);

    // Joins that arrive together spread before any worker reported them: the second room's
    // participants go to the worker with fewer participants, then stay together.
    const otherRoom = newId();
    const together = Array.from({ length: 3 }, () => newId());
    await Promise.all(
      together.map((participantId) => pool!.run('subscribe', { roomId: otherRoom, participantId, feeds: [] })),
    );
    expect(together.map((participantId) => pool!.workerOf(otherRoom, participantId))).toEqual([1, 1, 1]);

    // A participant's commands go to its worker; closeRoom to every worker holding part of the room.
    await pool.run('closeSubscriber', { roomId, participantId: viewers.at(-1)! });
    expect(pool.peersOf(roomId).subscribers).toEqual(viewers.slice(0, -1));
    await pool.run('closeRoom', { roomId });
    expect(pool.peersOf(roomId)).toEqual({ publishers: [], subscribers: [] });
    expect(pool.roomCount).toBe(1);
    expect(pool.load).toBe(together.length);
  });

  it('keeps a room on its worker while that worker is idle, and spreads its new participants once it is busy', async () => {
    // The workers' event-loop utilization, as the pool would have measured it over the last window.
    const utilization = [0, 0];
    pool = standInPool({
      workers: 2,
      capacity: 100,
      onEvent: () => {},
      workerUrl: new URL('./fixtures/plain-worker.ts', import.meta.url),
      roomAffinity: 50,
      utilizationOf: (worker) => utilization[worker]!,
    });
    await pool.start();
    const roomId = newId();
    const publisherId = newId();
    const join = async (count: number) => {
      const viewers = Array.from({ length: count }, () => newId());
      for (const participantId of viewers)
        await pool!.run('subscribe', { roomId, participantId, feeds: [publisherId] });
      return viewers.map((participantId) => pool!.workerOf(roomId, participantId));
    };
    await pool.run('publish', { roomId, participantId: publisherId, sdp: 'v=0' });
    // Far more participants than the other worker's none, but an idle worker: the room stays together.
    utilization[0] = BUSY_UTILIZATION - 0.05;
    expect(await join(20)).toEqual(Array(20).fill(0));
    expect(pool.runningWorkers).toBe(1);

    // Its worker is busy: new participants go to the other one, and the room spans both.
    utilization[0] = BUSY_UTILIZATION;
    expect(await join(3)).toEqual([1, 1, 1]);
    expect(pool.runningWorkers).toBe(2);
    expect(pool.peersOf(roomId).subscribers).toHaveLength(23);
    // A new room keeps away from the busy worker too.
    const otherRoom = newId();
    const otherParticipant = newId();
    await pool.run('subscribe', { roomId: otherRoom, participantId: otherParticipant, feeds: [] });
    expect(pool.workerOf(otherRoom, otherParticipant)).toBe(1);

    // Both busy: placement by participants alone, which keeps the room's next ones where the room has fewest.
    utilization[1] = 0.95;
    expect(await join(2)).toEqual([1, 1]);
    // The first worker is idle again and the other busy: the room's new participants go back to the first.
    utilization[0] = 0;
    utilization[1] = BUSY_UTILIZATION;
    expect(await join(2)).toEqual([0, 0]);
  });

  it('measures a worker busy from its event loop, and spreads the room away from it', async () => {
    // The pool's window timer is driven by the test; the worker's event loop and its counters are real.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      pool = standInPool({
        workers: 2,
        capacity: 100,
        onEvent: () => {},
        workerUrl: new URL('./fixtures/busy-worker.ts', import.meta.url),
        roomAffinity: 50,
      });
      await pool.start();
      const roomId = newId();
      const publisherId = newId();
      await pool.run('publish', { roomId, participantId: publisherId, sdp: 'v=0' });
      const subscribe = async () => {
        const participantId = newId();
        await pool!.run('subscribe', { roomId, participantId, feeds: [publisherId] });
        return pool!.workerOf(roomId, participantId);
      };
      expect(await subscribe()).toBe(0);
      // Worker 0's event loop is busy for most of the window that ends now (fixtures/busy-worker.ts).
      await pool.run('mute', { roomId, participantId: publisherId, kind: 'audio', muted: true });
      vi.advanceTimersByTime(UTILIZATION_WINDOW_MS);
      expect(await subscribe()).toBe(1);
      expect(pool.runningWorkers).toBe(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it('refuses a peer beyond MEDIA_CAPACITY and new rooms while draining, with 503', async () => {
    pool = standInPool({
      workers: 1,
      capacity: 1,
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
    pool = standInPool({
      workers: 1,
      capacity: 10,
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
    expect(stats).toMatchObject({ forwardedPackets: 1_000, subscribers: 2 });
    // Per-worker gauges would describe the past: left out.
    expect(stats.workers).toEqual([]);
  });

  describe('the DTLS certificate child process', () => {
    // Where fixtures/silent-certificate-process.ts writes its pid: named after this process, its parent.
    const pidFile = join(tmpdir(), `silent-certificate-process-${process.pid}.pid`);
    const silentCertificatePool = (timeoutMs: number) =>
      standInPool({
        workers: 1,
        capacity: 10,
        onEvent: () => {},
        workerUrl: new URL('./fixtures/plain-worker.ts', import.meta.url),
        dtlsCertificateScriptUrl: new URL('./fixtures/silent-certificate-process.ts', import.meta.url),
        dtlsCertificateTimeoutMs: timeoutMs,
      });
    const isRunning = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    afterEach(() => rmSync(pidFile, { force: true }));

    it('is killed when it sends no certificate in time, and the start fails', async () => {
      rmSync(pidFile, { force: true });
      pool = silentCertificatePool(1_000);
      await expect(pool.start()).rejects.toThrow(/DTLS certificate process sent no certificate within 1000 ms/);
      const pid = Number(readFileSync(pidFile, 'utf8'));
      expect(isRunning(pid)).toBe(false);
    });

    it('is killed by a stop during the start', async () => {
      rmSync(pidFile, { force: true });
      pool = silentCertificatePool(60_000);
      const started = pool.start();
      const pid = await waitFor(() => existsSync(pidFile) && Number(readFileSync(pidFile, 'utf8')), {
        message: 'the certificate process to run',
      });
      expect(isRunning(pid)).toBe(true);
      await pool.stop();
      await expect(started).rejects.toThrow(/was stopped with the media node/);
      expect(isRunning(pid)).toBe(false);
    });
  });
});
