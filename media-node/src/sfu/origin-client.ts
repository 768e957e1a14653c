import type { z } from 'zod';
import {
  MEDIA_CONTROL_ROUTES,
  MEDIA_CONTROL_TIMEOUT_MS,
  type MediaControlOperation,
  mediaControlPath,
  type PullRequest,
  type PullResponse,
  PullResponseSchema,
} from '../../../shared/src/media-control.ts';
import { mediaNodeIdentity } from '../../../shared/src/media-node-trust.ts';
import { signServiceToken } from '../../../shared/src/service-token.ts';
import { MEDIA_NODE_AUDIENCE } from '../../../shared/src/token.ts';
import { MediaNodeError } from '../errors.ts';

/**
 * A call to the origin node that takes longer than this has failed (its worker answers within
 * seconds). A `relay` makes two in a row (pull, then the answer), and must answer the edge within
 * MEDIA_CONTROL_TIMEOUT_MS: else the edge counts the origin's silence against this node.
 */
export const ORIGIN_CALL_TIMEOUT_MS = (MEDIA_CONTROL_TIMEOUT_MS - 2_000) / 2;

/** The origin could not be reached or did not answer as the contract says: the relay is unavailable. */
export const originUnavailable = (reason: string) =>
  new MediaNodeError(503, 'media_unavailable', `the origin node is unavailable: ${reason}`, { reason });

/**
 * The pulling node's calls to one origin node's control API, for the relays of one room: each signed
 * with a service token (MEDIA_NODE_SECRET) whose issuer is this node and whose `node` claim is the
 * origin, so that it works nowhere else.
 */
export class OriginClient {
  readonly #originUrl: string;
  readonly #roomId: string;
  readonly #pullingNode: string;
  readonly #secret: Uint8Array;

  constructor(options: { originUrl: string; roomId: string; pullingNode: string; secret: Uint8Array }) {
    this.#originUrl = options.originUrl;
    this.#roomId = options.roomId;
    this.#pullingNode = options.pullingNode;
    this.#secret = options.secret;
  }

  /** The relay sender `relayId` on the origin should carry `feeds`: its offer and track map. */
  pull(relayId: string, request: PullRequest): Promise<PullResponse> {
    return this.#call('pull', relayId, request, PullResponseSchema);
  }

  async setRelaySenderAnswer(relayId: string, sdp: string): Promise<void> {
    await this.#call('setRelaySenderAnswer', relayId, { sdp });
  }

  async closeRelaySender(relayId: string): Promise<void> {
    await this.#call('closeRelaySender', relayId);
  }

  async #call<S extends z.ZodType>(
    operation: MediaControlOperation,
    relayId: string,
    body?: unknown,
    responseSchema?: S,
  ): Promise<z.output<S>> {
    const token = await signServiceToken(this.#secret, {
      issuer: this.#pullingNode,
      audience: MEDIA_NODE_AUDIENCE,
      claims: { node: mediaNodeIdentity(this.#originUrl) },
    });
    let response: Response;
    let payload: unknown;
    try {
      response = await fetch(new URL(mediaControlPath(operation, this.#roomId, relayId), this.#originUrl), {
        method: MEDIA_CONTROL_ROUTES[operation].method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        // A node's control API never redirects: following one would send the call (and, same-origin, the node token) elsewhere.
        redirect: 'error',
        signal: AbortSignal.timeout(ORIGIN_CALL_TIMEOUT_MS),
      });
      payload = await response.json().catch(() => undefined);
    } catch (error) {
      const timedOut = (error as { name?: string }).name === 'TimeoutError';
      throw originUnavailable(timedOut ? 'it did not answer in time' : 'it could not be reached');
    }
    if (response.status === 404) throw new MediaNodeError(404, 'not_found', 'the origin node has no such room');
    if (!response.ok) throw originUnavailable(`it answered ${response.status}`);
    if (!responseSchema) return undefined as z.output<S>;
    const parsed = responseSchema.safeParse(payload);
    if (!parsed.success) throw originUnavailable('it answered outside the contract');
    return parsed.data;
  }
}
