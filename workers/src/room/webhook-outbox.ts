import type { WebhookData, WebhookEventType, WebhookMessage } from '../../../shared/src/webhooks.ts';
import { DurableOutbox, type DurableOutboxOptions, type RetryState } from './durable-outbox.ts';

/** Keys of the outbox in the room's storage; they survive the room's close (room.finished must go out). */
export const WEBHOOK_OUTBOX_KEY = 'webhook-outbox';
export const WEBHOOK_SEQ_KEY = 'webhook-seq';

/** Queues take at most 100 messages per sendBatch. */
const BATCH_MAX = 100;

interface Outbox extends RetryState {
  messages: WebhookMessage[];
}

export interface WebhookOutboxOptions extends DurableOutboxOptions {
  /** The queue, or undefined when webhooks are not configured (nothing is recorded then). */
  queue: () => Queue<WebhookMessage> | undefined;
}

/**
 * The room's webhook events on their way to the queue. An event is numbered and stored in the same
 * synchronous step as the change it reports, then handed to the queue right after; if the queue
 * refuses, it stays and the room's alarm retries. The room never waits for a receiver: delivery
 * (and its retries and dead-letter queue) is the queue consumer's (workers/src/webhooks).
 */
export class WebhookOutbox extends DurableOutbox<Outbox, WebhookOutboxOptions> {
  constructor(options: WebhookOutboxOptions) {
    super(WEBHOOK_OUTBOX_KEY, options);
  }

  /** Numbers the event and stores it; it is sent once the current synchronous step ends. */
  record(type: WebhookEventType, roomId: string, data: Omit<WebhookData, 'room_id' | 'seq'> = {}): void {
    if (!this.options.queue()) return;
    const { kv } = this.options;
    const seq = (kv.get<number>(WEBHOOK_SEQ_KEY) ?? 0) + 1;
    kv.put(WEBHOOK_SEQ_KEY, seq);
    const message: WebhookMessage = {
      id: `msg_${roomId}_${seq}`,
      event: { type, timestamp: new Date().toISOString(), data: { room_id: roomId, seq, ...data } },
    };
    const outbox = this.entry() ?? { messages: [], attempts: 0, retryAt: null };
    this.enqueue({ ...outbox, messages: [...outbox.messages, message] });
  }

  protected async drain(): Promise<void> {
    const queue = this.options.queue();
    for (;;) {
      const outbox = this.entry();
      if (!outbox || outbox.messages.length === 0 || !queue) return;
      const batch = outbox.messages.slice(0, BATCH_MAX);
      try {
        await queue.sendBatch(batch.map((body) => ({ body, contentType: 'json' })));
      } catch (error) {
        await this.failed(error, 'webhook queue refused events; retrying');
        return;
      }
      // Events recorded meanwhile stay; only those sent go.
      const rest = this.entry()?.messages.slice(batch.length) ?? [];
      this.replace(rest.length === 0 ? undefined : { messages: rest, attempts: 0, retryAt: null });
    }
  }
}
