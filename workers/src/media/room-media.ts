import type { IceCandidate } from '../../../shared/src/ice.ts';
import type { Logger } from '../../../shared/src/log.ts';
import {
  type PublishResponse,
  RELAY_FEEDS_MAX,
  type RoomPeersResponse,
  type SubscribeResponse,
} from '../../../shared/src/media-control.ts';
import { mediaNodeIdentity } from '../../../shared/src/media-node-trust.ts';
import type { StreamKind } from '../../../shared/src/rest.ts';
import type { IceTarget, UpdateSubscription } from '../../../shared/src/signaling.ts';
import {
  MediaCallError,
  type MediaNodeClient,
  MediaNodeFullError,
  MediaNodeRefusedError,
} from './media-node-client.ts';
import type { MediaNodePlacement } from './media-node-placement.ts';

/**
 * The relays the room asked nodes for: `${pulling node} ${origin node}` → the feeds last sent (the
 * complete set, as the `relay` operation takes it). One key in the room's storage, kept until the
 * nodes are told the room closed.
 */
export const MEDIA_RELAYS_KEY = 'media-relays';
const RELAY_KEY_SEPARATOR = ' ';

/** What RoomMedia reads of the room's state (RoomState is its one writer): who receives which feeds. */
export interface RoomMediaView {
  /** Every participant's subscription (the feeds its subscriber carries), null while it has none. */
  subscriptions(): { participantId: string; feeds: string[] | null }[];
}

export interface RoomMediaOptions {
  roomId: () => string;
  kv: SyncKvStorage;
  placement: MediaNodePlacement;
  /** The control API client of one node (one per node, reused). */
  connect: (url: string) => MediaNodeClient;
  view: RoomMediaView;
  logger: () => Logger;
}

type Relays = Record<string, string[]>;

/**
 * The room's media across media nodes: each participant's calls go to its node (placement), and the
 * nodes pull from each other the feeds their viewers need (relays). Frame handlers see one media
 * API, with the control API's verbs; which node serves whom never reaches a client.
 *
 * Relays follow the room's state: for each (pulling node, origin node) the feeds wanted are those
 * that viewers on the pulling node subscribe to and whose publisher is on the origin. They grow
 * before a `subscribe` that needs them (the contract: `relay` resolves once the relayed feeds exist,
 * so the offer includes them), and shrink — to `feeds: []`, which closes the relay — once no viewer
 * there needs a feed any more ({@link settleRelays}). Calls for one relay go out one at a time, each
 * sending the set wanted when it leaves, so concurrent viewers cannot leave a stale set behind.
 */
export class RoomMedia {
  readonly #options: RoomMediaOptions;
  readonly #clients = new Map<string, MediaNodeClient>();
  /** Feeds a viewer is being subscribed to, counted as wanted before the room's state records them. */
  readonly #pending = new Map<string, string[]>();
  /** Tails of the per-relay call queues (transient: nothing is in flight across hibernation). */
  readonly #relayQueues = new Map<string, Promise<void>>();

  constructor(options: RoomMediaOptions) {
    this.#options = options;
  }

  get placement(): MediaNodePlacement {
    return this.#options.placement;
  }

  /** Creates (or renegotiates) the participant's publisher on its node, placing the participant first if new. */
  publish(roomId: string, participantId: string, sdp: string): Promise<PublishResponse> {
    return this.#onParticipantNode(participantId, (client) => client.publish(roomId, participantId, sdp));
  }

  async addIceCandidate(roomId: string, participantId: string, target: IceTarget, candidate: IceCandidate | null) {
    await this.#nodeClient(participantId).addIceCandidate(roomId, participantId, target, candidate);
  }

  /**
   * Sets the viewer's complete set of feeds on its node. Feeds published on other nodes are pulled
   * there first (relay), then the node's offer includes them. Relays no longer needed shrink once
   * the room recorded the new subscription ({@link settleRelays}).
   */
  subscribe(roomId: string, participantId: string, feeds: string[]): Promise<SubscribeResponse> {
    return this.#onParticipantNode(participantId, async (client, url) => {
      this.#pending.set(participantId, feeds);
      try {
        await this.#syncRelays(url).catch((error: unknown) => {
          // The viewer still gets what its node can give now; the next change tries the relay again.
          this.#options.logger().warn('relay before subscribe failed', { error: (error as Error).message });
        });
        return await client.subscribe(roomId, participantId, feeds);
      } finally {
        this.#pending.delete(participantId);
      }
    });
  }

  async setSubscriberAnswer(roomId: string, participantId: string, sdp: string) {
    await this.#nodeClient(participantId).setSubscriberAnswer(roomId, participantId, sdp);
  }

  /** Idempotent: a participant with no node has nothing to end. */
  async unpublish(roomId: string, participantId: string) {
    await this.#placedClient(participantId)?.unpublish(roomId, participantId);
  }

  /** Idempotent: a participant with no node has nothing to end. */
  async closeSubscriber(roomId: string, participantId: string) {
    await this.#placedClient(participantId)?.closeSubscriber(roomId, participantId);
  }

  async mute(roomId: string, participantId: string, kind: StreamKind, muted: boolean) {
    await this.#nodeClient(participantId).mute(roomId, participantId, kind, muted);
  }

  async updateSubscription(roomId: string, participantId: string, subscription: UpdateSubscription) {
    await this.#nodeClient(participantId).updateSubscription(roomId, participantId, subscription);
  }

  /** Every node the room uses, pulling nodes included: where `closeRoom` and the probe go. */
  nodes(): string[] {
    const pulling = Object.keys(this.#relays()).map((key) => parseRelayKey(key).pulling);
    return [...new Set([...this.placement.nodesInUse(), ...pulling])];
  }

  /** Ends the room on every node it uses; the first failure is thrown once all were told. */
  async closeRoom(roomId: string): Promise<void> {
    const results = await Promise.allSettled(this.nodes().map((url) => this.#client(url).closeRoom(roomId)));
    this.#options.kv.delete(MEDIA_RELAYS_KEY);
    const failed = results.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** The peers one node holds for the room (the probe). */
  describeNode(roomId: string, url: string): Promise<RoomPeersResponse> {
    return this.#client(url).describeRoom(roomId);
  }

  /** The participant left the room: its next life (a new identity) is placed anew. */
  forget(participantId: string): void {
    this.placement.unassign(participantId);
  }

  /**
   * The origin's publisher renegotiated or republished (`publisher_ready`): every pulling node that
   * relays it is asked again with the same set, so that it carries the new tracks.
   */
  async publisherReady(publisherId: string): Promise<void> {
    const origin = this.placement.nodeOf(publisherId);
    if (!origin) return;
    const relays = this.#relays();
    const keys = Object.keys(relays).filter(
      (key) => parseRelayKey(key).origin === origin && relays[key]?.includes(publisherId),
    );
    await Promise.all(keys.map((key) => this.#queueRelay(key, { resend: true })));
  }

  /**
   * Brings every relay in line with the room's state: after a viewer left or unsubscribed, a
   * publisher left, or a node was lost. Failures are logged; the next change tries again.
   */
  async settleRelays(): Promise<void> {
    await this.#syncRelays().catch((error: unknown) => {
      this.#options.logger().warn('settling relays failed', { error: (error as Error).message });
    });
  }

  /**
   * Runs a participant's call on its node. A participant without one is placed: on the room's nodes
   * first, then on others; a node that answers it is at capacity (or drains), or refuses the
   * connection, passes the participant on to the next. The node is recorded before the call, since
   * the node's events about it may come first. A participant whose node the room has left (it refused
   * connections, kept timing out, or drains and no longer holds the room) is placed again: what it
   * had there is gone, or going.
   */
  async #onParticipantNode<T>(participantId: string, call: (client: MediaNodeClient, url: string) => Promise<T>) {
    const placed = this.placement.nodeOf(participantId);
    if (placed && !this.placement.isLost(placed)) {
      try {
        return await call(this.#client(placed), placed);
      } catch (error) {
        if (!(error instanceof MediaNodeFullError && error.draining)) throw error;
        await this.placement.release(placed);
      }
    }
    if (placed) this.placement.unassign(participantId);
    const candidates = await this.placement.candidates();
    for (const [index, url] of candidates.entries()) {
      this.placement.assign(participantId, url);
      try {
        return await call(this.#client(url), url);
      } catch (error) {
        // Any other refusal leaves the participant where it was asked: a call that timed out may
        // still have created its peer there, which its departure must end.
        if (!(error instanceof MediaNodeFullError || error instanceof MediaNodeRefusedError)) throw error;
        this.placement.unassign(participantId);
        // A draining node takes no new room: the room keeps away from it while the registry lists it.
        if (error instanceof MediaNodeFullError && error.draining) await this.placement.release(url);
        // What was pulled to that node for this participant alone goes again.
        await this.settleRelays();
        if (index === candidates.length - 1) throw error;
        this.#options.logger().info('media node takes no new peer: placing the participant on the next one', {
          node: mediaNodeIdentity(url),
          reason: error.message,
        });
      }
    }
    throw new MediaCallError('media_unavailable', 'no media node is available');
  }

  #placedClient(participantId: string): MediaNodeClient | undefined {
    const url = this.placement.nodeOf(participantId);
    return url ? this.#client(url) : undefined;
  }

  /** The participant's node for a call about a peer it must already have there. */
  #nodeClient(participantId: string): MediaNodeClient {
    const client = this.#placedClient(participantId);
    if (!client) throw new MediaCallError('media_unavailable', 'no media node holds this participant');
    return client;
  }

  #client(url: string): MediaNodeClient {
    let client = this.#clients.get(url);
    if (!client) {
      client = this.#options.connect(url);
      this.#clients.set(url, client);
    }
    return client;
  }

  #relays(): Relays {
    return this.#options.kv.get<Relays>(MEDIA_RELAYS_KEY) ?? {};
  }

  /** The feeds each (pulling, origin) pair should relay now: the room's subscriptions, pending ones included. */
  #wanted(): Map<string, Set<string>> {
    const wanted = new Map<string, Set<string>>();
    const subscriptions = new Map(
      this.#options.view.subscriptions().map(({ participantId, feeds }) => [participantId, feeds ?? []]),
    );
    for (const [participantId, feeds] of this.#pending) {
      subscriptions.set(participantId, [...new Set([...(subscriptions.get(participantId) ?? []), ...feeds])]);
    }
    for (const [viewer, feeds] of subscriptions) {
      const pulling = this.placement.nodeOf(viewer);
      if (!pulling) continue;
      for (const feed of feeds) {
        const origin = this.placement.nodeOf(feed);
        if (!origin || origin === pulling) continue;
        const key = relayKey(pulling, origin);
        const set = wanted.get(key) ?? new Set<string>();
        set.add(feed);
        wanted.set(key, set);
      }
    }
    return wanted;
  }

  /** Sends every relay (or those pulled by `pulling`) whose wanted set differs from the last one sent. */
  async #syncRelays(pulling?: string): Promise<void> {
    const keys = new Set([...this.#wanted().keys(), ...Object.keys(this.#relays())]);
    const chosen = [...keys].filter((key) => pulling === undefined || parseRelayKey(key).pulling === pulling);
    const results = await Promise.allSettled(chosen.map((key) => this.#queueRelay(key, { resend: false })));
    const failed = results.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Queues one relay's call behind the previous one of the same relay. */
  #queueRelay(key: string, options: { resend: boolean }): Promise<void> {
    const previous = this.#relayQueues.get(key) ?? Promise.resolve();
    const run = previous.then(() => this.#sendRelay(key, options));
    const tail = run.catch(() => undefined);
    this.#relayQueues.set(key, tail);
    void tail.then(() => {
      if (this.#relayQueues.get(key) === tail) this.#relayQueues.delete(key);
    });
    return run;
  }

  /** Asks the pulling node for the set wanted now, if it differs from the last one sent (or `resend`). */
  async #sendRelay(key: string, options: { resend: boolean }): Promise<void> {
    const { pulling, origin } = parseRelayKey(key);
    // The contract's bound on one relay: more feeds of one origin than that stay off the pulling node
    // (its viewers' offers leave them out), rather than the whole relay being refused.
    const feeds = [...(this.#wanted().get(key) ?? [])].sort().slice(0, RELAY_FEEDS_MAX);
    const sent = this.#relays()[key];
    if (!options.resend && sameSet(sent ?? [], feeds)) return;
    if (feeds.length === 0 && sent === undefined) return;
    const record = (carried: string[] | undefined) => {
      const relays = this.#relays();
      if (carried === undefined) delete relays[key];
      else relays[key] = carried;
      if (Object.keys(relays).length === 0) this.#options.kv.delete(MEDIA_RELAYS_KEY);
      else this.#options.kv.put(MEDIA_RELAYS_KEY, relays);
    };
    try {
      await this.#client(pulling).relay(this.#options.roomId(), origin, feeds);
    } catch (error) {
      // A relay that could not be closed stays on record, so that the next change asks again and
      // closeRoom reaches the node (it may hold no participant of the room any more). Only a node the
      // room lost (the call just failed) is forgotten: its relays died with it. A node the room merely
      // keeps away from (draining) is asked all the same: it is alive and would pull until the room ends.
      if (feeds.length === 0 && this.placement.isLost(pulling)) record(undefined);
      throw error;
    }
    record(feeds.length === 0 ? undefined : feeds);
  }
}

function relayKey(pulling: string, origin: string): string {
  return `${pulling}${RELAY_KEY_SEPARATOR}${origin}`;
}

function parseRelayKey(key: string): { pulling: string; origin: string } {
  const [pulling = '', origin = ''] = key.split(RELAY_KEY_SEPARATOR);
  return { pulling, origin };
}

function sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((item) => b.includes(item));
}
