import type { ErrorCode } from '../../../shared/src/errors.ts';
import type { IceCandidate } from '../../../shared/src/ice.ts';
import type {
  PublishResponse,
  RelayResponse,
  RoomPeersResponse,
  SubscribeResponse,
} from '../../../shared/src/media-control.ts';
import type { Stream, StreamKind } from '../../../shared/src/rest.ts';
import type { IceTarget, UpdateSubscription } from '../../../shared/src/signaling.ts';
import {
  MediaCallError,
  type MediaNodeClient,
  MediaNodeFullError,
  MediaNodeRefusedError,
} from '../../../workers/src/media/media-node-client.ts';

type Method = keyof MediaNodeClient;

/** How a call may fail: with a code, or as a node that refuses connections, or one that drains. */
type Failure = ErrorCode | 'refused' | 'draining';

const failure = (code: Failure, method: Method) =>
  code === 'refused'
    ? new MediaNodeRefusedError()
    : code === 'draining'
      ? new MediaNodeFullError('draining')
      : new MediaCallError(code, `fake media node refused ${method}`);

export interface MediaCall {
  method: Method;
  roomId: string;
  participantId?: string;
  detail?: unknown;
}

/** A minimal SDP that passes the contract's SdpSchema, naming what it stands for. */
export const fakeSdp = (label: string, kinds: Stream['kind'][] = ['audio', 'video']) =>
  ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', `s=${label}`, 't=0 0', ...kinds.map((kind) => `m=${kind} 9 UDP/TLS/RTP/SAVPF 96`)]
    .join('\r\n')
    .concat('\r\n');

/**
 * An in-memory MediaNodeClient for Durable Object tests: it keeps publishers, subscriptions and
 * relayed feeds per room like the media node does, records every call, and can be told to fail the
 * next call of a method. With a `capacity`, a call that would add a peer beyond it is refused as the
 * node's pool refuses it (at capacity).
 */
export class FakeMediaNode implements MediaNodeClient {
  readonly calls: MediaCall[] = [];
  /** `${roomId} ${originUrl}` → the feeds this node pulls from that origin (as a pulling node). */
  readonly relays = new Map<string, string[]>();
  capacity = Number.POSITIVE_INFINITY;
  /** `${roomId}/${participantId}` → streams. */
  readonly publishers = new Map<string, Stream[]>();
  /** `${roomId}/${participantId}` → feeds. */
  readonly subscribers = new Map<string, string[]>();
  readonly candidates: { participantId: string; target: IceTarget; candidate: IceCandidate | null }[] = [];
  readonly #failures = new Map<Method, Failure>();

  /**
   * The next call of `method` fails with `code` (`refused`: as a node whose connection is refused;
   * `draining`: as a draining node refuses a room it no longer holds).
   */
  failNext(method: Method, code: Failure): void {
    this.#failures.set(method, code);
  }

  readonly #holds = new Map<Method, Promise<void>>();

  /** The next call of `method` waits until the returned function is called (a slow node). */
  holdNext(method: Method): () => void {
    let release = () => {};
    this.#holds.set(method, new Promise<void>((resolve) => (release = resolve)));
    return () => release();
  }

  callsOf(method: Method): MediaCall[] {
    return this.calls.filter((call) => call.method === method);
  }

  /** Peers (publishers and subscribers) the node holds, all rooms: what MEDIA_CAPACITY counts. */
  get load(): number {
    return this.publishers.size + this.subscribers.size;
  }

  #admitPeer(map: Map<string, unknown>, key: string): void {
    if (!map.has(key) && this.load >= this.capacity) throw new MediaNodeFullError();
  }

  /** Feeds of the room that this node relays from other nodes. */
  #relayed(roomId: string): Set<string> {
    const relayed = new Set<string>();
    for (const [key, feeds] of this.relays)
      if (key.startsWith(`${roomId} `)) for (const feed of feeds) relayed.add(feed);
    return relayed;
  }

  #enter(call: MediaCall): void {
    this.calls.push(call);
    const code = this.#failures.get(call.method);
    if (code) {
      this.#failures.delete(call.method);
      throw failure(code, call.method);
    }
  }

  async publish(roomId: string, participantId: string, sdp: string): Promise<PublishResponse> {
    this.#enter({ method: 'publish', roomId, participantId });
    const hold = this.#holds.get('publish');
    this.#holds.delete('publish');
    await hold;
    const kinds = [...sdp.matchAll(/^m=(audio|video) /gm)].map((match) => match[1] as Stream['kind']);
    if (kinds.length === 0) throw new MediaCallError('bad_sdp', 'the offer has no audio or video section');
    this.#admitPeer(this.publishers, `${roomId}/${participantId}`);
    const streams = kinds.map((kind, index) => ({ kind, mid: String(index) }));
    this.publishers.set(`${roomId}/${participantId}`, streams);
    return { sdp: fakeSdp(`answer for ${participantId}`, kinds), streams };
  }

  async addIceCandidate(roomId: string, participantId: string, target: IceTarget, candidate: IceCandidate | null) {
    this.#enter({ method: 'addIceCandidate', roomId, participantId, detail: { target, candidate } });
    this.candidates.push({ participantId, target, candidate });
  }

  async subscribe(roomId: string, participantId: string, feeds: string[]): Promise<SubscribeResponse> {
    this.#enter({ method: 'subscribe', roomId, participantId, detail: feeds });
    this.#admitPeer(this.subscribers, `${roomId}/${participantId}`);
    const relayed = this.#relayed(roomId);
    const carried = feeds.filter((feed) => this.publishers.has(`${roomId}/${feed}`) || relayed.has(feed));
    this.subscribers.set(`${roomId}/${participantId}`, carried);
    return { sdp: fakeSdp(`offer for ${participantId}: ${carried.join(',')}`), feeds: carried };
  }

  async setSubscriberAnswer(roomId: string, participantId: string, _sdp: string): Promise<void> {
    this.#enter({ method: 'setSubscriberAnswer', roomId, participantId });
    if (!this.subscribers.has(`${roomId}/${participantId}`)) throw new MediaCallError('bad_request', 'no subscriber');
  }

  async unpublish(roomId: string, participantId: string): Promise<void> {
    this.#enter({ method: 'unpublish', roomId, participantId });
    this.publishers.delete(`${roomId}/${participantId}`);
  }

  async closeSubscriber(roomId: string, participantId: string): Promise<void> {
    this.#enter({ method: 'closeSubscriber', roomId, participantId });
    this.subscribers.delete(`${roomId}/${participantId}`);
  }

  async mute(roomId: string, participantId: string, kind: StreamKind, muted: boolean): Promise<void> {
    this.#enter({ method: 'mute', roomId, participantId, detail: { kind, muted } });
    if (!this.publishers.has(`${roomId}/${participantId}`)) throw new MediaCallError('not_found', 'no publisher');
  }

  async updateSubscription(roomId: string, participantId: string, subscription: UpdateSubscription): Promise<void> {
    this.#enter({ method: 'updateSubscription', roomId, participantId, detail: subscription });
    if (!this.subscribers.has(`${roomId}/${participantId}`)) throw new MediaCallError('not_found', 'no subscriber');
  }

  async closeRoom(roomId: string): Promise<void> {
    this.#enter({ method: 'closeRoom', roomId });
    for (const map of [this.publishers, this.subscribers]) {
      for (const key of map.keys()) if (key.startsWith(`${roomId}/`)) map.delete(key);
    }
    for (const key of this.relays.keys()) if (key.startsWith(`${roomId} `)) this.relays.delete(key);
  }

  /** As a pulling node: records the set (`[]` closes the relay); carries what it was asked for. */
  async relay(roomId: string, originUrl: string, feeds: string[]): Promise<RelayResponse> {
    this.#enter({ method: 'relay', roomId, detail: { origin: originUrl, feeds } });
    if (feeds.length === 0) this.relays.delete(`${roomId} ${originUrl}`);
    else this.relays.set(`${roomId} ${originUrl}`, feeds);
    return { feeds };
  }

  /** The feeds this node pulls from `originUrl` for the room (none when no relay is open). */
  relayedFrom(roomId: string, originUrl: string): string[] {
    return this.relays.get(`${roomId} ${originUrl}`) ?? [];
  }

  /** Answers from the fake's maps; a probe is not recorded in {@link calls} (the alarm sends it on its own schedule). */
  async describeRoom(roomId: string): Promise<RoomPeersResponse> {
    const code = this.#failures.get('describeRoom');
    if (code) {
      this.#failures.delete('describeRoom');
      throw failure(code, 'describeRoom');
    }
    const inRoom = (map: Map<string, unknown>) =>
      [...map.keys()].filter((key) => key.startsWith(`${roomId}/`)).map((key) => key.slice(roomId.length + 1));
    return { publishers: inRoom(this.publishers), subscribers: inRoom(this.subscribers) };
  }
}
