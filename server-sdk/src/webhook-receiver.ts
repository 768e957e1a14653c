import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import type { WebhookEvent } from '../../shared/src/webhooks.ts';

/** The headers of the incoming request: a fetch `Headers`, or Node's `IncomingMessage.headers`. */
export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;

/**
 * Verifies the edge's webhooks (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
 * `webhook-signature`, HMAC-SHA256 with `WEBHOOK_SECRET`) through the `standardwebhooks` package.
 * Delivery is at least once: deduplicate by `webhook-id`, order a room's events by `data.seq`.
 */
export class WebhookReceiver {
  readonly #webhook: Webhook;

  /** `secret`: the edge's `WEBHOOK_SECRET` (`whsec_…`, base64). */
  constructor(secret: string) {
    this.#webhook = new Webhook(secret);
  }

  /**
   * The event, once its signature checks out against the raw body (verify before parsing: any
   * re-serialization breaks the signature) and its timestamp is within 5 minutes. Throws
   * `WebhookVerificationError` otherwise: answer 400 and drop it.
   */
  receive(rawBody: string, headers: WebhookHeaders): WebhookEvent {
    const plain: Record<string, string> = {};
    const entries = headers instanceof Headers ? headers.entries() : Object.entries(headers);
    for (const [name, value] of entries) {
      if (value !== undefined) plain[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
    }
    return this.#webhook.verify(rawBody, plain) as WebhookEvent;
  }
}

export { WebhookVerificationError };
