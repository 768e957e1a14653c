import { Webhook } from 'standardwebhooks';
import { createLogger } from '../../../shared/src/log.ts';
import { WebhookMessageSchema } from '../../../shared/src/webhooks.ts';
import { edgeConfig } from '../config.ts';
import type { Env } from '../env.ts';

/** A receiver that does not answer within this is a failed attempt (retried). */
const DELIVERY_TIMEOUT_MS = 10_000;
/** Backoff between attempts: 2, 4, 8 … 300 s (wrangler.toml's max_retries ends it, in the dead-letter queue). */
const RETRY_BASE_SECONDS = 2;
const RETRY_MAX_SECONDS = 300;

export const retryDelaySeconds = (attempts: number): number =>
  Math.min(RETRY_BASE_SECONDS * 2 ** Math.max(0, attempts - 1), RETRY_MAX_SECONDS);

/**
 * The queue consumer: POSTs each event to WEBHOOK_URL, signed per Standard Webhooks
 * (`webhook-id`, `webhook-timestamp`, `webhook-signature`). A 2xx acknowledges it; anything else is
 * retried with backoff. Within a batch, a room whose event failed has its later events retried too,
 * so a receiver that comes back sees each room's events in order. Runs apart from the rooms: a slow
 * or failing receiver never delays one.
 */
export async function deliverWebhooks(batch: MessageBatch<unknown>, env: Env): Promise<void> {
  const config = edgeConfig(env);
  const logger = createLogger(config.logLevel, { component: 'webhooks' });
  if (!config.webhooks) {
    // Events queued before webhooks were switched off have nowhere to go.
    batch.ackAll();
    return;
  }
  const { url, secret } = config.webhooks;
  const signer = new Webhook(secret);
  const failedRooms = new Set<string>();
  for (const message of batch.messages) {
    const parsed = WebhookMessageSchema.safeParse(message.body);
    if (!parsed.success) {
      logger.error('dropping a malformed webhook message', { id: message.id });
      message.ack();
      continue;
    }
    const { id, event } = parsed.data;
    const roomId = event.data.room_id;
    const retry = () => message.retry({ delaySeconds: retryDelaySeconds(message.attempts) });
    if (failedRooms.has(roomId)) {
      retry();
      continue;
    }
    const body = JSON.stringify(event);
    const sentAt = new Date();
    let status: number | undefined;
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'webhook-id': id,
          'webhook-timestamp': String(Math.floor(sentAt.getTime() / 1000)),
          'webhook-signature': signer.sign(id, sentAt, body),
        },
        body,
        signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
        // A 3xx is a failed delivery, retried like any other: following it would send the signed event
        // wherever the receiver (or whoever answers for it) points, an internal address included.
        redirect: 'manual',
      });
      status = response.status;
      await response.body?.cancel();
    } catch {
      status = undefined;
    }
    if (status !== undefined && status >= 200 && status < 300) {
      message.ack();
    } else {
      failedRooms.add(roomId);
      logger.warn('webhook delivery failed; retrying', { id, attempts: message.attempts, status: status ?? 'network' });
      retry();
    }
  }
}
