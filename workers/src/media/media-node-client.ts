import type { ErrorCode } from '../../../shared/src/errors.ts';
import type { IceCandidate } from '../../../shared/src/ice.ts';
import type { CreatePublisherResponse, SubscriberOfferResponse } from '../../../shared/src/media-control.ts';
import type { IceTarget } from '../../../shared/src/signaling.ts';

/**
 * What the room coordinator needs from a media node: one method per route of the control API in
 * shared/src/media-control.ts. Implementations reject with MediaNodeError so that the coordinator can
 * answer the client with an `error` frame carrying the right code.
 */
export interface MediaNodeClient {
  /** Creates (or renegotiates) the participant's publishing peer connection from its offer. */
  createPublisher(roomId: string, participantId: string, sdp: string): Promise<CreatePublisherResponse>;
  /** Adds a remote ICE candidate to one of the participant's peer connections; `null` ends the candidates. */
  addIceCandidate(
    roomId: string,
    participantId: string,
    target: IceTarget,
    candidate: IceCandidate | null,
  ): Promise<void>;
  /** Sets the complete set of feeds the participant receives (not a delta) and returns the new offer. */
  updateSubscriber(roomId: string, participantId: string, feeds: string[]): Promise<SubscriberOfferResponse>;
  setSubscriberAnswer(roomId: string, participantId: string, sdp: string): Promise<void>;
  removePublisher(roomId: string, participantId: string): Promise<void>;
  removeSubscriber(roomId: string, participantId: string): Promise<void>;
  closeRoom(roomId: string): Promise<void>;
}

/** A media node failure with the signaling error code the client should see (`media_unavailable`, `bad_sdp`, …). */
export class MediaNodeError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'MediaNodeError';
    this.code = code;
  }
}

/** The client used when no media node can be reached: every operation fails with `media_unavailable`. */
export function unavailableMediaNodeClient(reason: string): MediaNodeClient {
  const fail = () => Promise.reject(new MediaNodeError('media_unavailable', reason));
  return {
    createPublisher: fail,
    addIceCandidate: fail,
    updateSubscriber: fail,
    setSubscriberAnswer: fail,
    removePublisher: fail,
    removeSubscriber: fail,
    closeRoom: fail,
  };
}
