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

  /**
   * Records that a media node (by its control URL) stopped answering one room's calls: placement
   * keeps new rooms off it for `ttlMs` while it may still heartbeat. Shared by every room of the
   * edge; with the registry, so Upstash only (the embedded store has no choice of node to steer).
   */
  markMediaNodeSuspect(url: string, ttlMs: number): Promise<void>;
  /** Which of these nodes are suspect now. */
  listSuspectMediaNodes(urls: string[]): Promise<string[]>;
  /** A room's call to a suspect node was answered: it is not suspect any more. */
  clearMediaNodeSuspect(url: string): Promise<void>;

  /** A cheap round trip to the backing store, for /health. Throws when it is unreachable. */
  ping(): Promise<void>;
}
