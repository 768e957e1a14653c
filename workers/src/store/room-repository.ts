import type { MediaNodeRegistration } from '../../../shared/src/media-control.ts';
import type { CreateRoomRequest, Publisher, Room } from '../../../shared/src/rest.ts';
import type { Participant } from '../../../shared/src/signaling.ts';

/** The outcome of claiming a publisher slot: the check against max_publishers and the write are one atomic step. */
export type ClaimPublisherResult = { ok: true } | { ok: false; reason: 'room_full' | 'not_found' };

/**
 * The state port of the edge. Two adapters implement it and pass one contract suite:
 * Upstash Redis (production) and the embedded Durable Object store (default when Upstash is not configured).
 *
 * Every write refreshes the room's TTL (ROOM_TTL_SECONDS): a room lives while it is used.
 * Methods on an unknown or expired room return null/false rather than throwing.
 */
export interface RoomRepository {
  createRoom(input: CreateRoomRequest): Promise<Room>;
  getRoom(roomId: string): Promise<Room | null>;
  /** Extends the room's expiry by ROOM_TTL_SECONDS from now; false when the room is gone. */
  touchRoom(roomId: string): Promise<boolean>;
  deleteRoom(roomId: string): Promise<void>;

  /** Adds or replaces the participant; false when the room is gone. */
  addParticipant(roomId: string, participant: Participant): Promise<boolean>;
  /** Removes the participant and any publisher entry it has. */
  removeParticipant(roomId: string, participantId: string): Promise<void>;
  listParticipants(roomId: string): Promise<Participant[]>;

  /** Records (or updates) a publisher if fewer than max_publishers publish now, atomically. */
  claimPublisher(roomId: string, publisher: Publisher): Promise<ClaimPublisherResult>;
  releasePublisher(roomId: string, participantId: string): Promise<void>;
  listPublishers(roomId: string): Promise<Publisher[]>;

  /** Live media nodes from the registry (Upstash only; the embedded store returns []). */
  listMediaNodes(): Promise<MediaNodeRegistration[]>;

  /** A cheap round trip to the backing store, for /health. Throws when it is unreachable. */
  ping(): Promise<void>;
}
