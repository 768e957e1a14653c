import { mediaNodeIdentity } from '../../../shared/src/media-node-trust.ts';

/** Who sent a media event, from its verified service token. */
export interface MediaEventOrigin {
  /** The `iss` claim: the sending node's identity. */
  issuer: string;
  jti: string;
  /** The token's `exp`, in seconds. */
  expiresAt: number;
}

/** `accepted`; `other_node`: the issuer is not a node the event may come from; `replayed`: jti seen. */
export type MediaEventVerdict = 'accepted' | 'other_node' | 'replayed';

/** Where the room keeps the jtis of the event tokens it accepted, each until that token has expired. */
const SEEN_PREFIX = 'media-event-jti:';
/** jose accepts a token this long past its `exp` (service-token.ts): remember it as long. */
const CLOCK_TOLERANCE_MS = 5_000;
/** Expired jtis are swept at most this often, not on every event (ICE candidates come in bursts). */
const SWEEP_INTERVAL_MS = 10_000;

/**
 * The room's check of a media event's origin, in its Durable Object storage: the event must come from
 * one of the nodes it may come from (the node of the participant it is about, or for an event about
 * the room, one of the room's nodes), and each token is accepted once. Synchronous storage: the check
 * and the record of the jti happen in one step, so two deliveries of one token cannot both pass.
 */
export class MediaEventOriginCheck {
  readonly #kv: SyncKvStorage;
  #lastSweep = 0;

  constructor(kv: SyncKvStorage) {
    this.#kv = kv;
  }

  admit(origin: MediaEventOrigin, nodes: string[], now: number): MediaEventVerdict {
    if (!nodes.some((url) => mediaNodeIdentity(url) === origin.issuer)) return 'other_node';
    const key = SEEN_PREFIX + origin.jti;
    const until = this.#kv.get<number>(key);
    if (until !== undefined && until > now) return 'replayed';
    this.#kv.put(key, origin.expiresAt * 1000 + CLOCK_TOLERANCE_MS);
    this.#sweep(now);
    return 'accepted';
  }

  #sweep(now: number): void {
    if (now - this.#lastSweep < SWEEP_INTERVAL_MS) return;
    this.#lastSweep = now;
    for (const [key, until] of this.#kv.list<number>({ prefix: SEEN_PREFIX })) {
      if (until <= now) this.#kv.delete(key);
    }
  }
}
