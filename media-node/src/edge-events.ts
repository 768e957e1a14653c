import type { Logger } from '../../shared/src/log.ts';
import { EDGE_MEDIA_EVENTS_PATH, type MediaEvent, MediaEventSchema } from '../../shared/src/media-control.ts';
import { bodyDigest, signServiceToken } from '../../shared/src/service-token.ts';
import { EDGE_AUDIENCE } from '../../shared/src/token.ts';
import { loggableError } from './errors.ts';

export interface EdgeEventSenderOptions {
  /** The edge's base URL; absent: events are dropped (a node without an edge, e.g. a benchmark). */
  edgeUrl: string | undefined;
  secret: Uint8Array;
  /** This node's identity (its control URL, mediaNodeIdentity): the `iss` the edge checks against the room's pin. */
  identity: () => string;
  logger: Logger;
  fetch?: typeof fetch;
  /** Pauses before each retry; the event is dropped after the last. */
  retryDelaysMs?: readonly number[];
  timeoutMs?: number;
}

/** Events waiting per room beyond this are dropped oldest-first (an edge that is down for long). */
export const MAX_QUEUED_EVENTS_PER_ROOM = 256;

/**
 * POSTs media events to the edge (`/internal/media-events`, Bearer service token with the edge's
 * audience, issued by this node's identity, bound to the event's room and to the SHA-256 of the exact
 * body, with a fresh `jti` per request: the edge refuses a replay). Sending never blocks the caller: each room has its own queue, delivered in order, so
 * a slow answer for one room does not hold up another. Failures are retried briefly, then dropped.
 */
export class EdgeEventSender {
  readonly #options: Required<Omit<EdgeEventSenderOptions, 'edgeUrl'>> & { edgeUrl: string | undefined };
  readonly #queues = new Map<string, MediaEvent[]>();
  readonly #idleWaiters = new Set<() => void>();

  constructor(options: EdgeEventSenderOptions) {
    this.#options = {
      fetch: globalThis.fetch,
      retryDelaysMs: [250, 1_000, 3_000],
      timeoutMs: 5_000,
      ...options,
    };
  }

  send(event: MediaEvent): void {
    const parsed = MediaEventSchema.safeParse(event);
    if (!parsed.success) {
      this.#options.logger.error('dropping a malformed media event', { type: event.type });
      return;
    }
    if (!this.#options.edgeUrl) {
      this.#options.logger.debug('no EDGE_URL: media event not sent', { type: event.type, room_id: event.room_id });
      return;
    }
    const queue = this.#queues.get(event.room_id);
    if (queue) {
      if (parsed.data.type === 'active_speakers') dropWaitingSpeakerReport(queue);
      if (queue.length >= MAX_QUEUED_EVENTS_PER_ROOM) {
        const dropped = queue.shift();
        this.#options.logger.warn('media event queue full; dropping the oldest', {
          room_id: event.room_id,
          type: dropped?.type,
        });
      }
      queue.push(parsed.data);
      return;
    }
    this.#queues.set(event.room_id, [parsed.data]);
    void this.#drain(event.room_id);
  }

  /** Resolves when every queue is empty, or after `timeoutMs`. */
  async flush(timeoutMs: number): Promise<void> {
    if (this.#queues.size === 0) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#idleWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.#idleWaiters.add(done);
    });
  }

  async #drain(roomId: string): Promise<void> {
    const queue = this.#queues.get(roomId);
    while (queue && queue.length > 0) {
      await this.#deliver(queue[0]!);
      queue.shift();
    }
    this.#queues.delete(roomId);
    if (this.#queues.size === 0) {
      for (const done of [...this.#idleWaiters]) done();
    }
  }

  async #deliver(event: MediaEvent): Promise<void> {
    const { retryDelaysMs, logger } = this.#options;
    const fields = {
      type: event.type,
      room_id: event.room_id,
      participant_id: 'participant_id' in event ? event.participant_id : undefined,
    };
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.#post(event);
      if (outcome === 'delivered') return;
      if (outcome === 'rejected' || attempt >= retryDelaysMs.length) {
        logger.warn('media event not delivered to the edge', { ...fields, outcome, attempts: attempt + 1 });
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, retryDelaysMs[attempt]));
    }
  }

  /** `rejected`: the edge answered 4xx, a retry would get the same answer. */
  async #post(event: MediaEvent): Promise<'delivered' | 'rejected' | 'failed'> {
    const { edgeUrl, secret, identity, timeoutMs, logger } = this.#options;
    try {
      const body = JSON.stringify(event);
      const token = await signServiceToken(secret, {
        issuer: identity(),
        audience: EDGE_AUDIENCE,
        lifetimeSeconds: 30,
        claims: { room: event.room_id, jti: crypto.randomUUID(), body_sha256: await bodyDigest(body) },
      });
      const response = await this.#options.fetch(new URL(EDGE_MEDIA_EVENTS_PATH, edgeUrl), {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
      await response.body?.cancel();
      if (response.ok) return 'delivered';
      logger.debug('the edge refused a media event', { type: event.type, status: response.status });
      const retryable = response.status >= 500 || response.status === 408 || response.status === 429;
      return retryable ? 'failed' : 'rejected';
    } catch (error) {
      logger.debug('posting a media event failed', { type: event.type, error: loggableError(error) });
      return 'failed';
    }
  }
}

/**
 * A speaker report only says who speaks now: one still waiting behind a slow delivery is superseded
 * by the newer one, so that a backlog never reaches the room as a burst of stale reports. The queue's
 * head is being delivered and stays.
 */
function dropWaitingSpeakerReport(queue: MediaEvent[]): void {
  const waiting = queue.findIndex((queued, index) => index > 0 && queued.type === 'active_speakers');
  if (waiting > 0) queue.splice(waiting, 1);
}
