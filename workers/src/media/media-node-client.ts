import { CodedError } from '../../../shared/src/errors.ts';
import type { IceCandidate } from '../../../shared/src/ice.ts';
import type {
  PublishResponse,
  RelayResponse,
  RoomPeersResponse,
  SubscribeResponse,
} from '../../../shared/src/media-control.ts';
import type { StreamKind } from '../../../shared/src/rest.ts';
import type { IceTarget, UpdateSubscription } from '../../../shared/src/signaling.ts';

/**
 * What the room needs from one media node: one method per route of the control API in
 * shared/src/media-control.ts. Implementations reject with MediaCallError so that the coordinator can
 * answer the client with an `error` frame carrying the right code. RoomMedia routes each call to the
 * node of the participant it concerns.
 */
export interface MediaNodeClient {
  /** Creates (or renegotiates) the participant's publishing peer connection from its offer. */
  publish(roomId: string, participantId: string, sdp: string): Promise<PublishResponse>;
  /** Adds a remote ICE candidate to one of the participant's peer connections; `null` ends the candidates. */
  addIceCandidate(
    roomId: string,
    participantId: string,
    target: IceTarget,
    candidate: IceCandidate | null,
  ): Promise<void>;
  /** Sets the complete set of feeds the participant receives (not a delta) and returns the new offer. */
  subscribe(roomId: string, participantId: string, feeds: string[]): Promise<SubscribeResponse>;
  setSubscriberAnswer(roomId: string, participantId: string, sdp: string): Promise<void>;
  /** Ends the participant's publishing peer connection; its feeds end for every subscriber. */
  unpublish(roomId: string, participantId: string): Promise<void>;
  /** Ends the participant's subscriber peer connection (a restart subscribes again afterwards). */
  closeSubscriber(roomId: string, participantId: string): Promise<void>;
  closeRoom(roomId: string): Promise<void>;
  /** The peers the node holds for the room: the coordinator's probe of its node (answers quickly or fails). */
  describeRoom(roomId: string): Promise<RoomPeersResponse>;
  /** Stops (muted) or resumes forwarding the participant's published tracks of one kind. */
  mute(roomId: string, participantId: string, kind: StreamKind, muted: boolean): Promise<void>;
  /** Which layer of one feed's video the participant's subscriber gets, or none (paused). */
  updateSubscription(roomId: string, participantId: string, subscription: UpdateSubscription): Promise<void>;
  /**
   * Sent to a pulling node: the complete set of `feeds` it pulls from the origin node at `originUrl`
   * for the room (`[]` closes that relay). Resolves once the relayed feeds exist on this node.
   */
  relay(roomId: string, originUrl: string, feeds: string[]): Promise<RelayResponse>;
}

/** A media node failure with the signaling error code the client should see (`media_unavailable`, `bad_sdp`, …). */
export class MediaCallError extends CodedError {}

/** The node refused or reset the connection (not merely slow): it is gone, and the room's pin is released. */
export class MediaNodeRefusedError extends MediaCallError {
  constructor() {
    super('media_unavailable', 'the media node is unreachable');
  }
}

/**
 * The node takes no new peer: it is at capacity (MEDIA_CAPACITY), or drains. It keeps the peers it
 * holds; a participant that asked for its first one there is placed on another node.
 */
export class MediaNodeFullError extends MediaCallError {
  /** Draining: the node refuses only rooms it no longer holds, so nothing of the room is left there. */
  readonly draining: boolean;

  constructor(reason: 'at capacity' | 'draining' = 'at capacity') {
    super('media_unavailable', `the media node is ${reason}`);
    this.draining = reason === 'draining';
  }
}

/** The client used when no media node can be reached: every operation fails with `media_unavailable`. */
export function unavailableMediaNodeClient(reason: string): MediaNodeClient {
  const fail = () => Promise.reject(new MediaCallError('media_unavailable', reason));
  return {
    publish: fail,
    addIceCandidate: fail,
    subscribe: fail,
    setSubscriberAnswer: fail,
    unpublish: fail,
    closeSubscriber: fail,
    closeRoom: fail,
    describeRoom: fail,
    mute: fail,
    updateSubscription: fail,
    relay: fail,
  };
}
