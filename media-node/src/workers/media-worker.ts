import { parentPort, workerData } from 'node:worker_threads';
import { createLogger } from '../../../shared/src/log.ts';
import { asMediaNodeError, loggableError } from '../errors.ts';
import { installNativeSrtpSessions } from '../sfu/srtp-sessions.ts';
import type { MainToWorker, WorkerInit, WorkerToMain } from './protocol.ts';
import { RoomHost } from './room-host.ts';

/**
 * A media worker thread: the rooms pinned to it, their peer connections and their forwarding, on
 * its own event loop (one core). Started by MediaWorkerPool.
 */
if (!parentPort) throw new Error('media-worker.ts runs as a worker thread');
const port = parentPort;
const init = workerData as WorkerInit;
const logger = createLogger(init.logLevel, { node_id: init.nodeId, worker: init.index });
const post = (message: WorkerToMain) => port.postMessage(message);
const host = new RoomHost(init, logger, post);
// What this thread's connections receive (media, RTCP) is decrypted by the SRTP addon, not werift's JS.
installNativeSrtpSessions();

// werift runs many fire-and-forget promises (RTCP loops, socket sends). One that rejects late, e.g.
// while its connection closes, must not take every room of this worker down with it.
process.on('unhandledRejection', (reason) => {
  logger.warn('unhandled rejection in a media worker', { error: loggableError(reason) });
});

port.on('message', async (message: MainToWorker) => {
  if (message.kind === 'link') {
    host.link(message);
    return;
  }
  if (message.kind === 'unlink') {
    host.unlink(message.peer);
    return;
  }
  try {
    const result = await host.execute(message.command, message.args as never);
    post({ kind: 'response', id: message.id, ok: true, result });
  } catch (error) {
    const failure = asMediaNodeError(error);
    if (failure.status >= 500 && failure.code === 'internal_error') {
      logger.error('command failed', { command: message.command, error: loggableError(error) });
    }
    post({ kind: 'response', id: message.id, ok: false, error: failure.serialize() });
  }
});

post({ kind: 'ready' });
