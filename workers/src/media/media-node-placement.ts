import type { Logger } from '../../../shared/src/log.ts';
import type { MediaNodeRegistration } from '../../../shared/src/media-control.ts';
import { checkRegistration } from '../../../shared/src/media-node-trust.ts';
import type { EdgeConfig } from '../config.ts';
import type { RoomRepository } from '../store/room-repository.ts';
import { MediaCallError } from './media-node-client.ts';

/** Where the room's Durable Object keeps the pin (its storage, its key). */
export const MEDIA_NODE_PIN_KEY = 'media-node-url';
/** The node this room last lost, kept away from until its registry entry has expired. */
const MEDIA_NODE_LOST_KEY = 'media-node-lost';
/** A little over the registry's entry TTL (15 s): by then a dead node has left the registry. */
const LOST_NODE_AVOID_MS = 20_000;

interface LostNode {
  url: string;
  until: number;
}

/**
 * The room lost its pinned node (refused connections, or found dead by the room's probe): the pin
 * goes, and the next placement keeps away from that node while the registry may still list it.
 */
export function abandonNode(kv: SyncKvStorage, url: string, now = Date.now()): void {
  if (kv.get<string>(MEDIA_NODE_PIN_KEY) === url) kv.delete(MEDIA_NODE_PIN_KEY);
  kv.put(MEDIA_NODE_LOST_KEY, { url, until: now + LOST_NODE_AVOID_MS } satisfies LostNode);
}

/**
 * Which media node serves a room. A room is pinned to one node (its peers must meet on one SFU), and
 * the pin is kept in the room's Durable Object storage. It is not moved because a registry read
 * missed the node (a late heartbeat must not split a room over two nodes); only a node that cannot
 * be reached releases it ({@link release}), and the next call places the room again: on the
 * least-loaded live, non-draining node of the registry, else on MEDIA_NODE_URL. Only registry entries
 * signed with MEDIA_NODE_SECRET, fresh, and on https (or a loopback/private address, or with
 * MEDIA_NODE_ALLOW_HTTP) count: whoever can write to Redis cannot draw rooms to a node of theirs.
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

  /** The pinned node did not answer: the next call places the room again, elsewhere. */
  async release(url: string): Promise<void> {
    abandonNode(this.#storage.kv, url);
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
    return chooseNode(lost && lost.until > Date.now() ? trusted.filter((node) => node.url !== lost.url) : trusted);
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
