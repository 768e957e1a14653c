import type { Logger } from '../../../shared/src/log.ts';
import type { MediaNodeRegistration } from '../../../shared/src/media-control.ts';
import {
  checkRegistration,
  MEDIA_NODE_REGISTRATION_TTL_SECONDS,
  mediaNodeIdentity,
} from '../../../shared/src/media-node-trust.ts';
import type { EdgeConfig } from '../config.ts';
import type { RoomRepository } from '../store/room-repository.ts';
import { MediaCallError } from './media-node-client.ts';

/** Where the room's Durable Object keeps the pin (its storage, its key). */
export const MEDIA_NODE_PIN_KEY = 'media-node-url';
/** The node this room last lost, kept away from until its registry entry has expired. */
const MEDIA_NODE_LOST_KEY = 'media-node-lost';
/** A little over the registry's entry TTL: by then a dead node has left the registry. */
const LOST_NODE_AVOID_MS = (MEDIA_NODE_REGISTRATION_TTL_SECONDS + 5) * 1000;
/** Consecutive calls to the pinned node that got no answer in time (storage key, this room's count). */
const MEDIA_NODE_TIMEOUTS_KEY = 'media-node-timeouts';
/** The node this room was placed on although it was suspect (no other was left): its first answer clears it. */
const PLACED_ON_SUSPECT_KEY = 'media-node-placed-on-suspect';
/**
 * Calls in a row without an answer after which a room leaves its node as if it were dead and marks it
 * suspect for every room: a node that keeps heartbeating but whose control API (or the path to it)
 * hangs would otherwise keep getting new rooms. Probes run every 3 s with a 2 s timeout, so a room
 * with media on the node gives up on it within about 10 s.
 */
export const MEDIA_NODE_TIMEOUTS_BEFORE_SUSPECT = 2;
/**
 * How long a suspicion keeps new rooms off a node: twice the registry's entry TTL. Rooms still on the
 * node renew it as they give up on it; a room placed there because no other node was left clears it
 * at its first answer. A node that still hangs afterwards takes a new room, and is marked again.
 */
export const SUSPECT_NODE_TTL_MS = 2 * MEDIA_NODE_REGISTRATION_TTL_SECONDS * 1000;

interface LostNode {
  url: string;
  until: number;
}

interface NodeTimeouts {
  url: string;
  count: number;
}

/**
 * The room lost its pinned node (refused connections, or found dead by the room's probe): the pin
 * goes, and the next placement keeps away from that node while the registry may still list it.
 */
export function abandonNode(kv: SyncKvStorage, url: string, now = Date.now()): void {
  if (kv.get<string>(MEDIA_NODE_PIN_KEY) === url) kv.delete(MEDIA_NODE_PIN_KEY);
  kv.put(MEDIA_NODE_LOST_KEY, { url, until: now + LOST_NODE_AVOID_MS } satisfies LostNode);
}

/** The room ended: nothing of its placement stays in its storage (pin, lost node, tallies). */
export function forgetPlacement(kv: SyncKvStorage): void {
  for (const key of [MEDIA_NODE_PIN_KEY, MEDIA_NODE_LOST_KEY, MEDIA_NODE_TIMEOUTS_KEY, PLACED_ON_SUSPECT_KEY]) {
    kv.delete(key);
  }
}

/**
 * Which media node serves a room. A room is pinned to one node (its peers must meet on one SFU), and
 * the pin is kept in the room's Durable Object storage. It is not moved because a registry read
 * missed the node (a late heartbeat must not split a room over two nodes); only a node that cannot
 * be reached releases it ({@link release}), and the next call places the room again: on the
 * least-loaded live, non-draining node of the registry, else on MEDIA_NODE_URL. Only registry entries
 * signed with MEDIA_NODE_SECRET, fresh, and on https (or a loopback/private address, or with
 * MEDIA_NODE_ALLOW_HTTP) count: whoever can write to Redis cannot draw rooms to a node of theirs.
 *
 * Placement also keeps the room's tally of its node's answers: calls that time out
 * {@link MEDIA_NODE_TIMEOUTS_BEFORE_SUSPECT} times in a row release the pin and mark the node suspect
 * in the store, where every room's placement sees it and passes the node over unless no other is left.
 */
export class MediaNodePlacement {
  readonly #storage: DurableObjectStorage;
  readonly #repository: () => RoomRepository;
  readonly #staticUrl: string | undefined;
  readonly #useRegistry: boolean;
  readonly #trust: { secret: Uint8Array; allowHttp: boolean } | undefined;
  readonly #logger: () => Logger;

  constructor(
    storage: DurableObjectStorage,
    repository: () => RoomRepository,
    config: EdgeConfig,
    logger: () => Logger,
  ) {
    this.#storage = storage;
    this.#repository = repository;
    this.#staticUrl = config.mediaNode?.url;
    this.#useRegistry = config.upstash !== undefined;
    this.#trust = config.mediaNode && { secret: config.mediaNode.secret, allowHttp: config.mediaNode.allowHttp };
    this.#logger = logger;
  }

  async baseUrl(): Promise<string> {
    const pinned = await this.#storage.get<string>(MEDIA_NODE_PIN_KEY);
    if (pinned) return pinned;
    const url = (await this.#chooseFromRegistry()) ?? this.#staticUrl;
    if (!url) throw new MediaCallError('media_unavailable', 'no media node is available');
    await this.#storage.put(MEDIA_NODE_PIN_KEY, url);
    return url;
  }

  /** The pinned node refused the connection, or drains: the next call places the room again, elsewhere. */
  async release(url: string): Promise<void> {
    abandonNode(this.#storage.kv, url);
  }

  /** The node answered a call (whatever the status): it is responsive. */
  async answered(url: string): Promise<void> {
    const kv = this.#storage.kv;
    // Only this node's tally: another node answering says nothing about the one that hung.
    if (kv.get<NodeTimeouts>(MEDIA_NODE_TIMEOUTS_KEY)?.url === url) kv.delete(MEDIA_NODE_TIMEOUTS_KEY);
    if (kv.get<string>(PLACED_ON_SUSPECT_KEY) !== url) return;
    kv.delete(PLACED_ON_SUSPECT_KEY);
    try {
      await this.#repository().clearMediaNodeSuspect(url);
      this.#logger().info('media node answers again: no longer suspect', { node: mediaNodeIdentity(url) });
    } catch {
      // The suspicion then expires by itself.
    }
  }

  /**
   * A call to the node got no answer in time. One more in a row than the room tolerates, and the room
   * leaves the node as a dead one, and tells every room's placement through the store.
   */
  async timedOut(url: string): Promise<void> {
    const kv = this.#storage.kv;
    const previous = kv.get<NodeTimeouts>(MEDIA_NODE_TIMEOUTS_KEY);
    const count = previous?.url === url ? previous.count + 1 : 1;
    if (count < MEDIA_NODE_TIMEOUTS_BEFORE_SUSPECT) {
      kv.put(MEDIA_NODE_TIMEOUTS_KEY, { url, count } satisfies NodeTimeouts);
      return;
    }
    kv.delete(MEDIA_NODE_TIMEOUTS_KEY);
    if (kv.get<string>(PLACED_ON_SUSPECT_KEY) === url) kv.delete(PLACED_ON_SUSPECT_KEY);
    abandonNode(kv, url);
    this.#logger().warn('media node stopped answering: leaving it, and marking it suspect', {
      node: mediaNodeIdentity(url),
      timeouts: count,
    });
    try {
      await this.#repository().markMediaNodeSuspect(url, SUSPECT_NODE_TTL_MS);
    } catch {
      // The store is down: this room keeps away from the node all the same (abandonNode).
      this.#logger().warn('could not record a suspect media node: the store is unavailable');
    }
  }

  async #chooseFromRegistry(): Promise<string | undefined> {
    if (!this.#useRegistry || !this.#trust) return undefined;
    let entries: MediaNodeRegistration[];
    try {
      entries = await this.#repository().listMediaNodes();
    } catch {
      // The registry is unreachable: MEDIA_NODE_URL, if set, still serves.
      return undefined;
    }
    const trusted = await this.#trusted(entries, this.#trust);
    const lost = this.#storage.kv.get<LostNode>(MEDIA_NODE_LOST_KEY);
    const candidates = lost && lost.until > Date.now() ? trusted.filter((node) => node.url !== lost.url) : trusted;
    const suspects = new Set(await this.#suspects(candidates));
    const url = chooseNode(candidates.filter((node) => !suspects.has(node.url))) ?? chooseNode(candidates);
    // Only suspects were left: this room tries one, and its first answer clears the suspicion.
    if (url !== undefined && suspects.has(url)) this.#storage.kv.put(PLACED_ON_SUSPECT_KEY, url);
    return url;
  }

  /** The candidates some room found unresponsive lately; none when the store cannot say. */
  async #suspects(candidates: MediaNodeRegistration[]): Promise<string[]> {
    try {
      return await this.#repository().listSuspectMediaNodes(candidates.map((node) => node.url));
    } catch {
      return [];
    }
  }

  async #trusted(entries: MediaNodeRegistration[], trust: { secret: Uint8Array; allowHttp: boolean }) {
    const trusted: MediaNodeRegistration[] = [];
    for (const entry of entries) {
      const verdict = await checkRegistration(entry, trust.secret, { allowHttp: trust.allowHttp });
      if (verdict === 'trusted') trusted.push(entry);
      else this.#logger().warn('ignoring a media node registry entry', { verdict, node_id: entry.id });
    }
    return trusted;
  }
}

/** The live node with the lowest load relative to its capacity, skipping draining and full ones. */
export function chooseNode(nodes: MediaNodeRegistration[]): string | undefined {
  let best: { url: string; ratio: number } | undefined;
  for (const node of nodes) {
    if (node.draining || node.capacity === 0 || node.load >= node.capacity) continue;
    const ratio = node.load / node.capacity;
    if (!best || ratio < best.ratio) best = { url: node.url, ratio };
  }
  return best?.url;
}
