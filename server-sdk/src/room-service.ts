import createClient, { type Client } from 'openapi-fetch';
import type { components, paths } from './generated/openapi.ts';

type Schemas = components['schemas'];
/** `POST /api/v1/rooms`'s body. */
export type CreateRoomRequest = Schemas['CreateRoomRequest'];
/** A created room, with its `admin_token`: the room's admin rights, valid as long as the room lives. */
export type CreatedRoom = Schemas['CreatedRoom'];
/** A room with who is connected and who publishes (streams and their muted state). */
export type RoomDetails = Schemas['RoomDetails'];
/** `POST …/join`'s body: the display name and, with an admin credential, grants. */
export type JoinRoomRequest = Schemas['JoinRoomRequest'];
/** A participant token and where to connect: hand it to the browser (`ws_url`, `ice_servers`). */
export type JoinRoomResponse = Schemas['JoinRoomResponse'];
/** A participant as the admin routes show it: grants, join time, published streams with their muted state. */
export type ParticipantDetails = Schemas['ParticipantDetails'];
/** Grants an admin may change at once (`PATCH …/participants/:pid`). */
export type ParticipantGrantsUpdate = Schemas['UpdateParticipantRequest']['grants'];
/** `audio` or `video`. */
export type StreamKind = Schemas['MuteRequest']['kind'];
/** The error envelope every non-2xx answer carries. */
export type ErrorEnvelope = Schemas['ErrorEnvelope'];

/** Options of a `RoomService`. */
export interface RoomServiceOptions {
  /** The edge's base URL, e.g. `https://meet.example.com` or `http://localhost:8080`. */
  baseUrl: string;
  /**
   * The edge's `API_KEY`, when it has one: it is required to create rooms then, and it administers
   * every room. Without it, admin calls need the room's `admin_token` (`{credential}` per call).
   */
  apiKey?: string;
  /** The `fetch` used for every call (default: the global one). */
  fetch?: typeof fetch;
}

/** Per-call authorization of an admin call. */
export interface AdminAuth {
  /** The room's `admin_token` (or a participant token with the `admin` grant); default: the service's `apiKey`. */
  credential?: string;
}

/** A refused or failed call: the HTTP status and the contract's error `code` (`not_found`, `forbidden`…). */
export class TrueGatherApiError extends Error {
  /** The HTTP status, e.g. 401, 403, 404. */
  readonly status: number;
  /** The contract's error code, e.g. `unauthorized`, `forbidden`, `not_found`, `validation_failed`. */
  readonly code: string;
  /** For `validation_failed`: which fields, and why. */
  readonly details: unknown;

  constructor(status: number, body: unknown) {
    const error = (body as Partial<ErrorEnvelope> | undefined)?.error;
    super(error?.message ?? `HTTP ${status}`);
    this.name = 'TrueGatherApiError';
    this.status = status;
    this.code = error?.code ?? 'internal_error';
    this.details = error?.details;
  }
}

/** The data of a 2xx answer, or the error thrown. */
function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (!result.response.ok || result.data === undefined)
    throw new TrueGatherApiError(result.response.status, result.error);
  return result.data;
}

/**
 * The edge's REST API for an app server, typed from its OpenAPI document (`/openapi.json`, through
 * openapi-typescript and openapi-fetch): create, read and end rooms, mint participant tokens (with
 * grants), and moderate participants. Every method throws `TrueGatherApiError` on a non-2xx answer.
 */
export class RoomService {
  readonly #client: Client<paths>;
  readonly #apiKey: string | undefined;

  constructor(options: RoomServiceOptions) {
    this.#client = createClient<paths>({ baseUrl: options.baseUrl, fetch: options.fetch });
    this.#apiKey = options.apiKey;
  }

  /** Creates a room; the answer carries its `admin_token`, which only its creator gets. */
  async createRoom(request: CreateRoomRequest): Promise<CreatedRoom> {
    return unwrap(await this.#client.POST('/api/v1/rooms', { body: request, headers: this.#bearer(this.#apiKey) }));
  }

  /** The room, who is connected and who publishes. */
  async getRoom(roomId: string): Promise<RoomDetails> {
    return unwrap(await this.#client.GET('/api/v1/rooms/{id}', { params: { path: { id: roomId } } }));
  }

  /** Ends the room: every socket closes (1000 "room closed"), media is torn down, the room is gone. */
  async deleteRoom(roomId: string, auth: AdminAuth = {}): Promise<void> {
    unwrap(
      await this.#client.DELETE('/api/v1/rooms/{id}', {
        params: { path: { id: roomId } },
        headers: this.#admin(auth),
      }),
    );
  }

  /**
   * Mints a participant token for `display`. Asking for `grants` (`admin`, `hidden`, or fewer
   * rights) needs an admin credential; a plain join needs none.
   */
  async joinRoom(roomId: string, request: JoinRoomRequest, auth: AdminAuth = {}): Promise<JoinRoomResponse> {
    return unwrap(
      await this.#client.POST('/api/v1/rooms/{id}/join', {
        params: { path: { id: roomId } },
        body: request,
        headers: request.grants ? this.#admin(auth) : {},
      }),
    );
  }

  /** Everyone in the room, hidden participants included, with grants and published streams. */
  async listParticipants(roomId: string, auth: AdminAuth = {}): Promise<ParticipantDetails[]> {
    const list = unwrap(
      await this.#client.GET('/api/v1/rooms/{id}/participants', {
        params: { path: { id: roomId } },
        headers: this.#admin(auth),
      }),
    );
    return list.participants;
  }

  /** Removes a participant for good: its socket closes with 4001 "removed" and its tokens stop working. */
  async removeParticipant(roomId: string, participantId: string, auth: AdminAuth = {}): Promise<void> {
    unwrap(
      await this.#client.POST('/api/v1/rooms/{id}/participants/{pid}/remove', {
        params: { path: { id: roomId, pid: participantId } },
        headers: this.#admin(auth),
      }),
    );
  }

  /**
   * Mutes a participant's tracks of `kind` under an admin lock (the participant cannot unmute while it
   * holds). `muted: false` only lifts the lock: nobody is unmuted against their will.
   */
  async muteParticipant(
    roomId: string,
    participantId: string,
    mute: { kind: StreamKind; muted: boolean },
    auth: AdminAuth = {},
  ): Promise<ParticipantDetails> {
    return unwrap(
      await this.#client.POST('/api/v1/rooms/{id}/participants/{pid}/mute', {
        params: { path: { id: roomId, pid: participantId } },
        body: mute,
        headers: this.#admin(auth),
      }),
    );
  }

  /** Changes grants at once: revoking `publish` unpublishes, revoking `subscribe` ends the subscription. */
  async updateParticipant(
    roomId: string,
    participantId: string,
    grants: ParticipantGrantsUpdate,
    auth: AdminAuth = {},
  ): Promise<ParticipantDetails> {
    return unwrap(
      await this.#client.PATCH('/api/v1/rooms/{id}/participants/{pid}', {
        params: { path: { id: roomId, pid: participantId } },
        body: { grants },
        headers: this.#admin(auth),
      }),
    );
  }

  #admin(auth: AdminAuth): Record<string, string> {
    const credential = auth.credential ?? this.#apiKey;
    if (!credential) throw new TypeError('an admin call needs the room admin_token ({credential}) or the apiKey');
    return this.#bearer(credential);
  }

  #bearer(credential: string | undefined): Record<string, string> {
    return credential ? { authorization: `Bearer ${credential}` } : {};
  }
}
