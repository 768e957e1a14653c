import type { Logger } from '../../shared/src/log.ts';
import {
  MEDIA_NODE_REGISTRY_KEY_PREFIX,
  MEDIA_NODE_REGISTRY_SET,
  type MediaNodeRegistration,
} from '../../shared/src/media-control.ts';
import { MEDIA_NODE_REGISTRATION_TTL_SECONDS, signRegistration } from '../../shared/src/media-node-trust.ts';
import { loggableError } from './errors.ts';

export const HEARTBEAT_INTERVAL_MS = 5_000;
/**
 * One heartbeat (its Upstash calls, retries included) gives up after this long, so the next one
 * still comes on time; pass the same bound to the client as its abort signal.
 */
export const REGISTRY_CALL_TIMEOUT_MS = 4_000;

/** The slice of `@upstash/redis`'s client the heartbeat uses (a seam for unit tests). */
export interface RegistryClient {
  set(key: string, value: string, options: { ex: number }): Promise<unknown>;
  sadd(key: string, member: string): Promise<unknown>;
  srem(key: string, member: string): Promise<unknown>;
  del(key: string): Promise<unknown>;
}

export interface NodeStatus {
  load: number;
  capacity: number;
  draining: boolean;
}

/**
 * Keeps this node's registration fresh in Upstash: `media-node:<id>` holds the
 * MediaNodeRegistration JSON with a short TTL, the id is a member of `media-nodes`. The edge reads
 * both to place a room on the least-loaded live node; a node that stops beating vanishes by TTL
 * (the set may keep its id a while: the missing key is what counts).
 */
export class RegistryHeartbeat {
  readonly #client: RegistryClient;
  readonly #nodeId: string;
  readonly #url: string;
  readonly #secret: Uint8Array;
  readonly #status: () => NodeStatus;
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly #callTimeoutMs: number;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: {
    client: RegistryClient;
    nodeId: string;
    url: string;
    /** MEDIA_NODE_SECRET: entries are signed, and the edge ignores any that are not. */
    secret: Uint8Array;
    status: () => NodeStatus;
    logger: Logger;
    intervalMs?: number;
    callTimeoutMs?: number;
  }) {
    this.#client = options.client;
    this.#nodeId = options.nodeId;
    this.#url = options.url;
    this.#secret = options.secret;
    this.#status = options.status;
    this.#logger = options.logger;
    this.#intervalMs = options.intervalMs ?? HEARTBEAT_INTERVAL_MS;
    this.#callTimeoutMs = options.callTimeoutMs ?? REGISTRY_CALL_TIMEOUT_MS;
  }

  get key(): string {
    return `${MEDIA_NODE_REGISTRY_KEY_PREFIX}${this.#nodeId}`;
  }

  registration(): Promise<MediaNodeRegistration> {
    const entry = { id: this.#nodeId, url: this.#url, ...this.#status(), updated_at: new Date().toISOString() };
    return signRegistration(entry, this.#secret);
  }

  /**
   * Beats now, then again one interval after each beat has finished: a slow Upstash delays the
   * next beat instead of piling requests up behind it.
   */
  async start(): Promise<void> {
    await this.beat();
    this.#scheduleNextBeat();
  }

  #scheduleNextBeat(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(async () => {
      await this.beat();
      this.#scheduleNextBeat();
    }, this.#intervalMs);
    this.#timer.unref();
  }

  /** Writes the registration now (also called when draining starts, so placement stops at once). */
  async beat(): Promise<void> {
    try {
      await this.#bounded(
        Promise.all([
          this.registration().then((entry) =>
            this.#client.set(this.key, JSON.stringify(entry), { ex: MEDIA_NODE_REGISTRATION_TTL_SECONDS }),
          ),
          this.#client.sadd(MEDIA_NODE_REGISTRY_SET, this.#nodeId),
        ]),
      );
    } catch (error) {
      this.#logger.warn('registry heartbeat failed', { error: loggableError(error) });
    }
  }

  /** Stops beating and removes the registration, so the edge stops placing rooms here at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    try {
      await this.#bounded(
        Promise.all([this.#client.del(this.key), this.#client.srem(MEDIA_NODE_REGISTRY_SET, this.#nodeId)]),
      );
    } catch (error) {
      this.#logger.warn('removing the registry entry failed', { error: loggableError(error) });
    }
  }

  /**
   * Gives up on `calls` after the call timeout, whatever the client does (the Upstash client is also
   * given an abort signal, so its request really ends).
   */
  async #bounded(calls: Promise<unknown>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new RegistryTimeoutError(`no answer within ${this.#callTimeoutMs} ms`)),
        this.#callTimeoutMs,
      );
    });
    try {
      await Promise.race([calls, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

class RegistryTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RegistryTimeoutError';
  }
}
