import type { Logger } from '../../../shared/src/log.ts';
import type { WebhookData, WebhookEventType, WebhookMessage } from '../../../shared/src/webhooks.ts';

/** Keys of the outbox in the room's storage; they survive the room's close (room.finished must go out). */
export const WEBHOOK_OUTBOX_KEY = 'webhook-outbox';
export const WEBHOOK_SEQ_KEY = 'webhook-seq';

/** Retries of a failed hand-over to the queue: 1, 2, 4 … 30 s. */
const RETRY_BASE_MS = 1_000;
const RETRY_MAX_MS = 30_000;
/** Queues take at most 100 messages per sendBatch. */
const BATCH_MAX = 100;

interface Outbox {
  messages: WebhookMessage[];
  attempts: number;
  retryAt: number | null;
}

export interface WebhookOutboxOptions {
  kv: SyncKvStorage;
  /** The queue, or undefined when webhooks are not configured (nothing is recorded then). */
  queue: () => Queue<WebhookMessage> | undefined;
  retryAt: (at: number) => Promise<void>;
  logger: () => Logger;
}

/**
 * The room's webhook events on their way to the queue. An event is numbered and stored in the same
 * synchronous step as the change it reports, then handed to the queue right after; if the queue
 * refuses, it stays and the room's alarm retries. The room never waits for a receiver: delivery
 * (and its retries and dead-letter queue) is the queue consumer's (workers/src/webhooks).
 */
export class WebhookOutbox {
  readonly #options: WebhookOutboxOptions;
  #flushing: Promise<void> | undefined;

  constructor(options: WebhookOutboxOptions) {
    this.#options = options;
  }

  /** Numbers the event and stores it; it is sent once the current synchronous step ends. */
  record(type: WebhookEventType, roomId: string, data: Omit<WebhookData, 'room_id' | 'seq'> = {}): void {
    if (!this.#options.queue()) return;
    const { kv } = this.#options;
    const seq = (kv.get<number>(WEBHOOK_SEQ_KEY) ?? 0) + 1;
    kv.put(WEBHOOK_SEQ_KEY, seq);
    const message: WebhookMessage = {
      id: `msg_${roomId}_${seq}`,
      event: { type, timestamp: new Date().toISOString(), data: { room_id: roomId, seq, ...data } },
    };
    const outbox = this.#outbox() ?? { messages: [], attempts: 0, retryAt: null };
    kv.put(WEBHOOK_OUTBOX_KEY, { ...outbox, messages: [...outbox.messages, message] } satisfies Outbox);
    void Promise.resolve().then(() => this.flush());
  }

  get retryAt(): number | null {
    return this.#outbox()?.retryAt ?? null;
  }

  /** Hands everything stored to the queue, in order. One flush at a time; never throws. */
  flush(): Promise<void> {
    this.#flushing ??= this.#drain().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  #outbox(): Outbox | undefined {
    return this.#options.kv.get<Outbox>(WEBHOOK_OUTBOX_KEY);
  }

  async #drain(): Promise<void> {
    const queue = this.#options.queue();
    for (;;) {
      const outbox = this.#outbox();
      if (!outbox || outbox.messages.length === 0 || !queue) return;
      const batch = outbox.messages.slice(0, BATCH_MAX);
      try {
        await queue.sendBatch(batch.map((body) => ({ body, contentType: 'json' })));
      } catch (error) {
        const attempts = outbox.attempts + 1;
        const retryAt = Date.now() + Math.min(RETRY_BASE_MS * 2 ** (attempts - 1), RETRY_MAX_MS);
        this.#options.kv.put(WEBHOOK_OUTBOX_KEY, { ...outbox, attempts, retryAt } satisfies Outbox);
        this.#options.logger().warn('webhook queue refused events; retrying', {
          attempts,
          error: error instanceof Error ? error.name : typeof error,
        });
        await this.#options.retryAt(retryAt);
        return;
      }
      // Events recorded meanwhile stay; only those sent go.
      const current = this.#outbox();
      const rest = current?.messages.slice(batch.length) ?? [];
      if (rest.length === 0) this.#options.kv.delete(WEBHOOK_OUTBOX_KEY);
      else this.#options.kv.put(WEBHOOK_OUTBOX_KEY, { messages: rest, attempts: 0, retryAt: null } satisfies Outbox);
    }
  }
}
