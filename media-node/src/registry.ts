import type { Logger } from '../../shared/src/log.ts';
import {
  MEDIA_NODE_REGISTRY_KEY_PREFIX,
  MEDIA_NODE_REGISTRY_SET,
  type MediaNodeRegistration,
} from '../../shared/src/media-control.ts';
import { errorMessage } from './errors.ts';

export const HEARTBEAT_INTERVAL_MS = 5_000;
/** Three missed heartbeats and the node drops out of placement. */
export const REGISTRATION_TTL_SECONDS = 15;

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
  readonly #status: () => NodeStatus;
  readonly #logger: Logger;
  readonly #intervalMs: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: {
    client: RegistryClient;
    nodeId: string;
    url: string;
    status: () => NodeStatus;
    logger: Logger;
    intervalMs?: number;
  }) {
    this.#client = options.client;
    this.#nodeId = options.nodeId;
    this.#url = options.url;
    this.#status = options.status;
    this.#logger = options.logger;
    this.#intervalMs = options.intervalMs ?? HEARTBEAT_INTERVAL_MS;
  }

  get key(): string {
    return `${MEDIA_NODE_REGISTRY_KEY_PREFIX}${this.#nodeId}`;
  }

  registration(): MediaNodeRegistration {
    return { id: this.#nodeId, url: this.#url, ...this.#status(), updated_at: new Date().toISOString() };
  }

  /** Beats now and then every interval. */
  async start(): Promise<void> {
    await this.beat();
    this.#timer = setInterval(() => void this.beat(), this.#intervalMs);
    this.#timer.unref();
  }

  /** Writes the registration now (also called when draining starts, so placement stops at once). */
  async beat(): Promise<void> {
    try {
      await Promise.all([
        this.#client.set(this.key, JSON.stringify(this.registration()), { ex: REGISTRATION_TTL_SECONDS }),
        this.#client.sadd(MEDIA_NODE_REGISTRY_SET, this.#nodeId),
      ]);
    } catch (error) {
      this.#logger.warn('registry heartbeat failed', { error: errorMessage(error) });
    }
  }

  /** Stops beating and removes the registration, so the edge stops placing rooms here at once. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    try {
      await Promise.all([this.#client.del(this.key), this.#client.srem(MEDIA_NODE_REGISTRY_SET, this.#nodeId)]);
    } catch (error) {
      this.#logger.warn('removing the registry entry failed', { error: errorMessage(error) });
    }
  }
}
