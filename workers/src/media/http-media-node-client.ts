import type { z } from 'zod';
import { type ErrorCode, ErrorEnvelopeSchema } from '../../../shared/src/errors.ts';
import type { IceCandidate } from '../../../shared/src/ice.ts';
import {
  MEDIA_CONTROL_ROUTES,
  MEDIA_CONTROL_TIMEOUT_MS,
  type MediaControlOperation,
  type MuteRequest,
  mediaControlPath,
  PublishResponseSchema,
  RelayResponseSchema,
  RoomPeersResponseSchema,
  SubscribeResponseSchema,
} from '../../../shared/src/media-control.ts';
import { mediaNodeIdentity } from '../../../shared/src/media-node-trust.ts';
import type { StreamKind } from '../../../shared/src/rest.ts';
import { signServiceToken } from '../../../shared/src/service-token.ts';
import type { IceTarget, UpdateSubscription } from '../../../shared/src/signaling.ts';
import { MEDIA_NODE_AUDIENCE, MEDIA_TOKEN_MAX_LIFETIME_SECONDS, TOKEN_ISSUER } from '../../../shared/src/token.ts';
import {
  MediaCallError,
  type MediaNodeClient,
  MediaNodeFullError,
  MediaNodeRefusedError,
} from './media-node-client.ts';

/** The node answers a probe from memory: one that takes longer than this is not answering. */
const PROBE_TIMEOUT_MS = 2_000;

/** What the room's placement learns from each call's outcome (MediaNodePlacement). */
export interface NodeHealth {
  release(url: string): Promise<void>;
  answered(url: string): Promise<void>;
  timedOut(url: string): Promise<void>;
}
/**
 * Tokens live as long as the node accepts (60 s) and are reused for 30 s with the same node: one HMAC
 * per half minute, not one per ICE candidate.
 */
const TOKEN_REUSE_MS = 30_000;

/**
 * One media node's control API over HTTP, each call signed with a short-lived service token.
 * One client serves one room on one node (RoomMedia holds one per node the room uses); `health`
 * hears how each call went: placement forgets a node that refuses connections, or that keeps timing
 * out, so that its participants are placed again.
 */
export class HttpMediaNodeClient implements MediaNodeClient {
  readonly #secret: Uint8Array;
  readonly #url: string;
  readonly #health: NodeHealth;
  #token: { value: string; mintedAt: number } | undefined;

  constructor(secret: Uint8Array, url: string, health: NodeHealth) {
    this.#secret = secret;
    this.#url = url;
    this.#health = health;
  }

  async publish(roomId: string, participantId: string, sdp: string) {
    return this.#call('publish', roomId, undefined, PublishResponseSchema, { participant_id: participantId, sdp });
  }

  async addIceCandidate(roomId: string, participantId: string, target: IceTarget, candidate: IceCandidate | null) {
    await this.#call('addIceCandidate', roomId, participantId, undefined, { target, candidate });
  }

  async subscribe(roomId: string, participantId: string, feeds: string[]) {
    return this.#call('subscribe', roomId, participantId, SubscribeResponseSchema, { feeds });
  }

  async setSubscriberAnswer(roomId: string, participantId: string, sdp: string) {
    await this.#call('setSubscriberAnswer', roomId, participantId, undefined, { sdp });
  }

  async unpublish(roomId: string, participantId: string) {
    await this.#call('unpublish', roomId, participantId);
  }

  async closeSubscriber(roomId: string, participantId: string) {
    await this.#call('closeSubscriber', roomId, participantId);
  }

  async closeRoom(roomId: string) {
    await this.#call('closeRoom', roomId);
  }

  async describeRoom(roomId: string) {
    return this.#call('describeRoom', roomId, undefined, RoomPeersResponseSchema, undefined, PROBE_TIMEOUT_MS);
  }

  async mute(roomId: string, participantId: string, kind: StreamKind, muted: boolean) {
    const body: MuteRequest = { kind, muted };
    await this.#call('mute', roomId, participantId, undefined, body);
  }

  async updateSubscription(roomId: string, participantId: string, subscription: UpdateSubscription) {
    await this.#call('updateSubscription', roomId, participantId, undefined, subscription);
  }

  async relay(roomId: string, originUrl: string, feeds: string[]) {
    return this.#call('relay', roomId, undefined, RelayResponseSchema, { origin_url: originUrl, feeds });
  }

  /**
   * A control token bound to the node it is sent to (`node` claim): a node that receives it, or
   * whoever runs a node drawn into placement, cannot replay it against another node.
   */
  async #bearer(): Promise<string> {
    const now = Date.now();
    if (!this.#token || now - this.#token.mintedAt > TOKEN_REUSE_MS) {
      const value = await signServiceToken(this.#secret, {
        issuer: TOKEN_ISSUER,
        audience: MEDIA_NODE_AUDIENCE,
        lifetimeSeconds: MEDIA_TOKEN_MAX_LIFETIME_SECONDS,
        claims: { node: mediaNodeIdentity(this.#url) },
      });
      this.#token = { value, mintedAt: now };
    }
    return this.#token.value;
  }

  async #call<S extends z.ZodType>(
    operation: MediaControlOperation,
    roomId: string,
    participantId?: string,
    responseSchema?: S,
    body?: unknown,
    timeoutMs = MEDIA_CONTROL_TIMEOUT_MS,
  ): Promise<z.output<S>> {
    const { method } = MEDIA_CONTROL_ROUTES[operation];
    const path = mediaControlPath(operation, roomId, participantId);
    const baseUrl = this.#url;
    // A timer cleared as soon as the call ends (AbortSignal.timeout would keep the room's Durable
    // Object awake until it fires).
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new DOMException('timed out', 'TimeoutError')), timeoutMs);
    let response: Response;
    let payload: unknown;
    try {
      response = await fetch(new URL(path, baseUrl), {
        method,
        headers: {
          authorization: `Bearer ${await this.#bearer()}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
        // A node's control API never redirects: following one would hand the bearer token to wherever
        // the node, or someone on the path to it, points.
        redirect: 'manual',
      });
      // A body that stops arriving is the same hang as a missing answer (caught below).
      payload = await response.json().catch((error: unknown) => {
        if (controller.signal.aborted) throw error;
        return undefined;
      });
    } catch {
      if (controller.signal.aborted) {
        // Slow, perhaps hung: placement counts it, and a node that keeps timing out is left.
        await this.#health.timedOut(baseUrl);
        throw new MediaCallError('media_unavailable', 'the media node did not answer in time');
      }
      // Refused or reset, not merely slow: the node is gone, and the room may move to a live one.
      await this.#health.release(baseUrl);
      throw new MediaNodeRefusedError();
    } finally {
      clearTimeout(timer);
    }
    await this.#health.answered(baseUrl);
    if (!response.ok) {
      // A draining node takes no new rooms, a full one no new peers: the participant that asked is
      // placed on another node (RoomMedia), and the room keeps away from a draining one.
      if (isRefusalFor('draining', response.status, payload)) throw new MediaNodeFullError('draining');
      if (isRefusalFor('capacity', response.status, payload)) throw new MediaNodeFullError('at capacity');
      throw errorFromResponse(response.status, payload);
    }
    if (!responseSchema) return undefined as z.output<S>;
    const parsed = responseSchema.safeParse(payload);
    if (!parsed.success) throw new MediaCallError('media_unavailable', 'the media node answered outside the contract');
    return parsed.data;
  }
}

/** A 503 whose details carry `key`: the pool's refusals name why (`draining`, or `capacity` when full). */
function isRefusalFor(key: 'draining' | 'capacity', status: number, payload: unknown): boolean {
  const envelope = ErrorEnvelopeSchema.safeParse(payload);
  const details = envelope.success ? envelope.data.error.details : undefined;
  return status === 503 && typeof details === 'object' && details !== null && key in details;
}

/** What a client may learn from a media node refusal: its own input was at fault. Anything else is the node's problem. */
const CLIENT_FACING_CODES = new Set<ErrorCode>(['bad_sdp', 'not_found', 'conflict']);

/**
 * Maps a media node error answer to the code a client sees. 4xx answers about the client's input
 * keep their code; the rest (5xx, 401 from a MEDIA_NODE_SECRET mismatch, 413…) are `media_unavailable`,
 * with the status in the message for the edge's log (never the node's own message).
 */
function errorFromResponse(status: number, payload: unknown): MediaCallError {
  if (status >= 300 && status < 400)
    return new MediaCallError('media_unavailable', `the media node redirected (${status})`);
  const envelope = ErrorEnvelopeSchema.safeParse(payload);
  const code = envelope.success ? envelope.data.error.code : undefined;
  if (status < 500 && code && CLIENT_FACING_CODES.has(code)) {
    return new MediaCallError(code, envelope.success ? envelope.data.error.message : 'media error');
  }
  return new MediaCallError('media_unavailable', `the media node failed (${status}${code ? ` ${code}` : ''})`);
}
