import type { MediaNodeRegistration } from '../../../shared/src/media-control.ts';
import type { EdgeConfig } from '../config.ts';
import type { RoomRepository } from '../store/room-repository.ts';
import { MediaNodeError } from './media-node-client.ts';

const STORAGE_KEY = 'media-node-url';
/** How long a resolved node is trusted before the registry is read again. */
const REVALIDATE_MS = 15_000;

/**
 * Which media node serves a room. A room is pinned to one node (its peers must meet on one SFU):
 * the choice is kept in the room's Durable Object storage and kept while that node stays registered.
 * A new choice takes the least-loaded live, non-draining node of the registry, else MEDIA_NODE_URL.
 */
export class MediaNodePlacement {
  readonly #storage: DurableObjectStorage;
  readonly #repository: () => RoomRepository;
  readonly #staticUrl: string | undefined;
  readonly #useRegistry: boolean;
  #resolved: { url: string; at: number } | undefined;

  constructor(storage: DurableObjectStorage, repository: () => RoomRepository, config: EdgeConfig) {
    this.#storage = storage;
    this.#repository = repository;
    this.#staticUrl = config.mediaNode?.url;
    this.#useRegistry = config.upstash !== undefined;
  }

  async baseUrl(): Promise<string> {
    if (this.#resolved && Date.now() - this.#resolved.at < REVALIDATE_MS) return this.#resolved.url;
    const pinned = await this.#storage.get<string>(STORAGE_KEY);
    const nodes = this.#useRegistry ? await this.#repository().listMediaNodes() : [];
    const url = pinned && this.#stillServes(pinned, nodes) ? pinned : (chooseNode(nodes) ?? this.#staticUrl);
    if (!url) throw new MediaNodeError('media_unavailable', 'no media node is available');
    if (url !== pinned) await this.#storage.put(STORAGE_KEY, url);
    this.#resolved = { url, at: Date.now() };
    return url;
  }

  /** A pinned node keeps its rooms while registered, even when draining: calls in progress must end there. */
  #stillServes(url: string, nodes: MediaNodeRegistration[]): boolean {
    return nodes.some((node) => node.url === url) || (nodes.length === 0 && url === this.#staticUrl);
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
