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

/**
 * Where the room's Durable Object keeps each participant's node: participant id → node URL, in the
 * order participants were placed (the order the room's nodes fill up in). The publisher and the
 * subscriber connections of one participant live on its one node.
 */
export const MEDIA_NODES_KEY = 'media-nodes';
/** Nodes this room lost (URL → until when it keeps away from them, while the registry may still list them). */
export const MEDIA_NODES_LOST_KEY = 'media-nodes-lost';
/** Per node, consecutive calls that got no answer in time (storage key prefix, this room's count). */
const MEDIA_NODE_TIMEOUTS_PREFIX = 'media-node-timeouts:';
/** Nodes this room placed participants on although they were suspect (no other was left): their first answer clears it. */
const PLACED_ON_SUSPECT_KEY = 'media-nodes-placed-on-suspect';
/** A little over the registry's entry TTL: by then a dead node has left the registry. */
const LOST_NODE_AVOID_MS = (MEDIA_NODE_REGISTRATION_TTL_SECONDS + 5) * 1000;
/**
 * Calls in a row without an answer after which a room leaves a node as if it were dead and marks it
 * suspect for every room: a node that keeps heartbeating but whose control API (or the path to it)
 * hangs would otherwise keep getting new participants. Probes run every 3 s with a 2 s timeout, so a
 * room with media on the node gives up on it within about 10 s.
 */
export const MEDIA_NODE_TIMEOUTS_BEFORE_SUSPECT = 2;
/**
 * How long a suspicion keeps new participants off a node: twice the registry's entry TTL. Rooms still
 * on the node renew it as they give up on it; a room placed there because no other node was left
 * clears it at its first answer. A node that still hangs afterwards takes new participants, and is marked again.
 */
export const SUSPECT_NODE_TTL_MS = 2 * MEDIA_NODE_REGISTRATION_TTL_SECONDS * 1000;

/** The keys of the room's placement: kept until the nodes are told the room closed (room-coordinator.ts). */
export const PLACEMENT_KEYS = [MEDIA_NODES_KEY, MEDIA_NODES_LOST_KEY, PLACED_ON_SUSPECT_KEY] as const;

/** Participant id → node URL, as stored (an array of pairs: the order of placement matters). */
type Assignments = [participantId: string, url: string][];

/**
 * Which media node serves each participant of a room, kept in the room's Durable Object storage (it
 * survives eviction and hibernation). A new participant goes to a node the room already uses, in the
 * order the room started using them, while it has room; then to the least-loaded live, non-draining
 * node of the registry, else to the MEDIA_NODE_URL nodes in their order. RoomMedia tries them
 * in that order and moves on when a node answers that it is at capacity. A participant stays on its
 * node while that node answers: a registry read that misses the node moves nobody (a late heartbeat
 * must not move peers); only a node that cannot be reached is left ({@link release}), and once the
 * room's probe has found it dead its participants are placed again. Only registry entries signed with MEDIA_NODE_SECRET, fresh, and on
 * https (or a loopback/private address, or with MEDIA_NODE_ALLOW_HTTP) count: whoever can write to
 * Redis cannot draw participants to a node of theirs.
 *
 * Placement also keeps the room's tally of each node's answers: calls that time out
 * {@link MEDIA_NODE_TIMEOUTS_BEFORE_SUSPECT} times in a row leave the node and mark it suspect in the
 * store, where every room's placement sees it and passes the node over unless no other is left.
 */
export class MediaNodePlacement {
  readonly #kv: SyncKvStorage;
  readonly #repository: () => RoomRepository;
  readonly #staticUrls: string[];
  readonly #useRegistry: boolean;
  readonly #trust: { secret: Uint8Array; allowHttp: boolean } | undefined;
  readonly #logger: () => Logger;
  /** The suspects among the last candidates: one of them taken is remembered ({@link assign}). */
  #suspectCandidates = new Set<string>();

  constructor(kv: SyncKvStorage, repository: () => RoomRepository, config: EdgeConfig, logger: () => Logger) {
    this.#kv = kv;
    this.#repository = repository;
    this.#staticUrls = config.mediaNode?.urls ?? [];
    this.#useRegistry = config.upstash !== undefined;
    this.#trust = config.mediaNode && { secret: config.mediaNode.secret, allowHttp: config.mediaNode.allowHttp };
    this.#logger = logger;
  }

  /** The participant's node, if it has been placed. */
  nodeOf(participantId: string): string | undefined {
    return this.#assignments().find(([id]) => id === participantId)?.[1];
  }

  /** The nodes the room uses, in the order it started using them. */
  nodesInUse(): string[] {
    return [...new Set(this.#assignments().map(([, url]) => url))];
  }

  /** The participants on `url`. */
  participantsOn(url: string): string[] {
    return this.#assignments().flatMap(([id, node]) => (node === url ? [id] : []));
  }

  /**
   * Records the participant's node (before the first call that creates a peer there: its events come
   * from it). A node taken although it was suspect (only suspects were left) is remembered: its first
   * answer clears the suspicion.
   */
  assign(participantId: string, url: string): void {
    const assignments = this.#assignments().filter(([id]) => id !== participantId);
    assignments.push([participantId, url]);
    this.#kv.put(MEDIA_NODES_KEY, assignments);
    const placedOnSuspect = this.#kv.get<string[]>(PLACED_ON_SUSPECT_KEY) ?? [];
    if (this.#suspectCandidates.has(url) && !placedOnSuspect.includes(url)) {
      this.#kv.put(PLACED_ON_SUSPECT_KEY, [...placedOnSuspect, url]);
    }
  }

  /** The participant has no peer left on its node: its next call places it again. */
  unassign(participantId: string): void {
    const assignments = this.#assignments();
    const kept = assignments.filter(([id]) => id !== participantId);
    if (kept.length === assignments.length) return;
    if (kept.length === 0) this.#kv.delete(MEDIA_NODES_KEY);
    else this.#kv.put(MEDIA_NODES_KEY, kept);
  }

  /**
   * Where a new participant may go, best first: the room's nodes that have room, then the other live
   * nodes (registry, least loaded first, suspects last), else the MEDIA_NODE_URL nodes in their order.
   * Nodes the room lost come only when nothing else is left (a restarted node is back on its URL).
   * Throws media_unavailable when there is none.
   */
  async candidates(): Promise<string[]> {
    const lost = this.#lostNodes();
    const registry = await this.#fromRegistry();
    this.#suspectCandidates = registry?.suspects ?? new Set();
    const full = new Set(registry?.full ?? []);
    const inUse = this.nodesInUse().filter((url) => !full.has(url));
    const others = registry?.ranked.length ? registry.ranked : this.#staticUrls;
    const all = [...new Set([...inUse, ...others])];
    const live = all.filter((url) => !lost.has(url));
    const ordered = live.length > 0 ? live : all;
    if (ordered.length === 0) throw new MediaCallError('media_unavailable', 'no media node is available');
    return ordered;
  }

  /** Whether the room left this node lately (dead, unreachable or hung). */
  isLost(url: string): boolean {
    return this.#lostNodes().has(url);
  }

  /**
   * The node refused the connection, drains, or stopped answering: the room keeps away from it while
   * the registry may still list it. Its participants stay recorded there until the room's probe
   * has dealt with what they lost (RoomCoordinator), which places them again.
   */
  async release(url: string): Promise<void> {
    const now = Date.now();
    const lost = Object.fromEntries(
      Object.entries(this.#kv.get<Record<string, number>>(MEDIA_NODES_LOST_KEY) ?? {}).filter(
        ([, until]) => until > now,
      ),
    );
    lost[url] = now + LOST_NODE_AVOID_MS;
    this.#kv.put(MEDIA_NODES_LOST_KEY, lost);
  }

  /** The node answered a call (whatever the status): it is responsive. */
  async answered(url: string): Promise<void> {
    this.#kv.delete(MEDIA_NODE_TIMEOUTS_PREFIX + url);
    const suspects = this.#kv.get<string[]>(PLACED_ON_SUSPECT_KEY);
    if (!suspects?.includes(url)) return;
    const rest = suspects.filter((node) => node !== url);
    if (rest.length === 0) this.#kv.delete(PLACED_ON_SUSPECT_KEY);
    else this.#kv.put(PLACED_ON_SUSPECT_KEY, rest);
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
    const key = MEDIA_NODE_TIMEOUTS_PREFIX + url;
    const count = (this.#kv.get<number>(key) ?? 0) + 1;
    if (count < MEDIA_NODE_TIMEOUTS_BEFORE_SUSPECT) {
      this.#kv.put(key, count);
      return;
    }
    this.#kv.delete(key);
    const suspects = this.#kv.get<string[]>(PLACED_ON_SUSPECT_KEY);
    if (suspects?.includes(url))
      this.#kv.put(
        PLACED_ON_SUSPECT_KEY,
        suspects.filter((node) => node !== url),
      );
    await this.release(url);
    this.#logger().warn('media node stopped answering: leaving it, and marking it suspect', {
      node: mediaNodeIdentity(url),
      timeouts: count,
    });
    try {
      await this.#repository().markMediaNodeSuspect(url, SUSPECT_NODE_TTL_MS);
    } catch {
      // The store is down: this room keeps away from the node all the same (release).
      this.#logger().warn('could not record a suspect media node: the store is unavailable');
    }
  }

  /** The room ended: nothing of its placement stays in its storage (assignments, lost nodes, tallies). */
  forget(): void {
    for (const key of PLACEMENT_KEYS) this.#kv.delete(key);
    for (const [key] of this.#kv.list({ prefix: MEDIA_NODE_TIMEOUTS_PREFIX })) this.#kv.delete(key);
  }

  #assignments(): Assignments {
    return this.#kv.get<Assignments>(MEDIA_NODES_KEY) ?? [];
  }

  #lostNodes(): Set<string> {
    const now = Date.now();
    const lost = this.#kv.get<Record<string, number>>(MEDIA_NODES_LOST_KEY) ?? {};
    return new Set(Object.entries(lost).flatMap(([url, until]) => (until > now ? [url] : [])));
  }

  /**
   * The registry's live nodes, best first (non-suspects by load, then suspects), and those that are full or draining; undefined
   * without a registry or when it cannot be read (MEDIA_NODE_URL, if set, then serves).
   */
  async #fromRegistry(): Promise<{ ranked: string[]; full: string[]; suspects: Set<string> } | undefined> {
    if (!this.#useRegistry || !this.#trust) return undefined;
    let entries: MediaNodeRegistration[];
    try {
      entries = await this.#repository().listMediaNodes();
    } catch {
      return undefined;
    }
    const trusted = await this.#trusted(entries, this.#trust);
    const suspects = new Set(await this.#suspects(trusted));
    const open = trusted.filter(hasRoom).sort((a, b) => a.load / a.capacity - b.load / b.capacity);
    const ranked = [
      ...open.filter((node) => !suspects.has(node.url)),
      ...open.filter((node) => suspects.has(node.url)),
    ].map((node) => node.url);
    const full = trusted.filter((node) => !hasRoom(node)).map((node) => node.url);
    return { ranked, full, suspects };
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

/** Whether a registered node takes new peers: not draining, not full. */
const hasRoom = (node: MediaNodeRegistration) => !node.draining && node.capacity > 0 && node.load < node.capacity;
