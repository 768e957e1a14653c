import type { MediaNodeRegistration } from '../../../shared/src/media-control.ts';
import type { CreateRoomRequest, Publisher, Room } from '../../../shared/src/rest.ts';
import type { Participant } from '../../../shared/src/signaling.ts';

/**
 * A copy of a room's live state, written by its Durable Object (the one authority) for readers
 * outside it. Always complete: each write replaces the previous copy.
 */
export interface RoomMirror {
  participants: Participant[];
  publishers: Publisher[];
}

/**
 * The state port of the edge: what must live outside one Durable Object. Two adapters implement it
 * and pass one contract suite: Upstash Redis (production) and the embedded Durable Object store
 * (default when Upstash is not configured).
 *
 * Writes refresh the room's TTL (ROOM_TTL_SECONDS): a room lives while it is used. Methods on an
 * unknown or expired room return null/false rather than throwing.
 */
export interface RoomRepository {
  createRoom(input: CreateRoomRequest): Promise<Room>;
  getRoom(roomId: string): Promise<Room | null>;
  /** Extends the room's expiry by ROOM_TTL_SECONDS from now; false when the room is gone. */
  touchRoom(roomId: string): Promise<boolean>;
  /** Deletes the room and its mirror: the room's Durable Object ends a room the store has dropped. */
  deleteRoom(roomId: string): Promise<void>;

  /**
   * Replaces the room's mirror. An empty mirror leaves no mirror keys behind; a room that is gone
   * keeps none either, and the answer is false.
   */
  writeMirror(roomId: string, mirror: RoomMirror): Promise<boolean>;

  /** Live media nodes from the registry (Upstash only; the embedded store returns []). */
  listMediaNodes(): Promise<MediaNodeRegistration[]>;

  /** A cheap round trip to the backing store, for /health. Throws when it is unreachable. */
  ping(): Promise<void>;
}
