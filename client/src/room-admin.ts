import type { z } from 'zod';
import {
  DeleteRoomResponseSchema,
  type MuteRequest,
  type ParticipantDetails,
  ParticipantDetailsSchema,
  ParticipantListSchema,
  RemoveParticipantResponseSchema,
  type StreamKind,
  type UpdateParticipantRequest,
} from '../../shared/src/rest.ts';

/** Options of a `RoomAdmin`: which room, on which edge, with which credential. */
export interface RoomAdminOptions {
  /** The edge's base URL, e.g. `http://localhost:8080`. */
  baseUrl: string;
  /** The room to administer. */
  roomId: string;
  /**
   * The admin credential, read on every call: the room's `admin_token`, a participant token with the
   * `admin` grant (kept fresh by the client), or the server's API_KEY (server side only).
   */
  credential: () => string;
  /** The `fetch` used for the calls (default: the global one). */
  fetch?: typeof fetch;
}

/** A refused admin call: the HTTP status and the contract's error code. */
export class RoomAdminError extends Error {
  /** The HTTP status, e.g. 401, 403, 404. */
  readonly status: number;
  /** The contract's error code, e.g. `forbidden`, `not_found`. */
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'RoomAdminError';
    this.status = status;
    this.code = code;
  }
}

/**
 * A room's moderation over REST (the admin routes of `/openapi.json`): list, mute, re-grant and
 * remove participants, end the room. The verbs are the server SDK's (`@truegather/server`), bound
 * to one room and one credential.
 */
export class RoomAdmin {
  readonly #options: RoomAdminOptions;

  constructor(options: RoomAdminOptions) {
    this.#options = options;
  }

  /** Everyone in the room (hidden participants too), with grants and published streams. */
  async listParticipants(): Promise<ParticipantDetails[]> {
    return (await this.#call(ParticipantListSchema, 'GET', '/participants')).participants;
  }

  /** Mutes a participant's tracks of `kind` under an admin lock; `muted: false` only lifts the lock. */
  muteParticipant(participantId: string, kind: StreamKind, muted = true): Promise<ParticipantDetails> {
    const body: MuteRequest = { kind, muted };
    return this.#call(
      ParticipantDetailsSchema,
      'POST',
      `/participants/${encodeURIComponent(participantId)}/mute`,
      body,
    );
  }

  /** Changes grants at once: revoking `publish` unpublishes, revoking `subscribe` ends the subscription. */
  updateParticipant(participantId: string, grants: UpdateParticipantRequest['grants']): Promise<ParticipantDetails> {
    const body: UpdateParticipantRequest = { grants };
    return this.#call(ParticipantDetailsSchema, 'PATCH', `/participants/${encodeURIComponent(participantId)}`, body);
  }

  /** Removes a participant for good (its socket closes with 4001, its tokens stop working). */
  async removeParticipant(participantId: string): Promise<void> {
    await this.#call(
      RemoveParticipantResponseSchema,
      'POST',
      `/participants/${encodeURIComponent(participantId)}/remove`,
    );
  }

  /** Ends the room for everyone. */
  async deleteRoom(): Promise<void> {
    await this.#call(DeleteRoomResponseSchema, 'DELETE', '');
  }

  /** One admin call; the answer is checked against the contract, as the server SDK's are. */
  async #call<S extends z.ZodType>(schema: S, method: string, path: string, body?: unknown): Promise<z.output<S>> {
    const { baseUrl, roomId, credential } = this.#options;
    const fetchImpl = this.#options.fetch ?? fetch;
    const response = await fetchImpl(`${baseUrl}/api/v1/rooms/${encodeURIComponent(roomId)}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${credential()}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = (await response.json().catch(() => undefined)) as { error?: { code?: string; message?: string } };
    if (!response.ok) {
      throw new RoomAdminError(response.status, json?.error?.code ?? 'internal_error', json?.error?.message ?? '');
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success)
      throw new RoomAdminError(response.status, 'internal_error', 'the edge answered outside the contract');
    return parsed.data;
  }
}
