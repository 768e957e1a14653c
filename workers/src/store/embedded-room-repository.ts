import type { EmbeddedStore } from './embedded-store.ts';
import { expiryAfter, newRoom } from './room-records.ts';
import type { RoomRepository } from './room-repository.ts';

/** The instance that answers /health pings; it never holds a room (room ids are 22 characters). */
const HEALTH_INSTANCE = 'health';

/**
 * RoomRepository on the embedded Durable Object store: each room lives in its own EmbeddedStore
 * instance, addressed by name, so the store needs no configuration and scales with the rooms.
 */
export function embeddedRoomRepository(
  namespace: DurableObjectNamespace<EmbeddedStore>,
  roomTtlSeconds: number,
): RoomRepository {
  const instance = (name: string) => namespace.get(namespace.idFromName(name));
  const expiry = () => expiryAfter(roomTtlSeconds);

  return {
    async createRoom(input) {
      const room = newRoom(input, roomTtlSeconds);
      await instance(room.id).createRoom(room, expiryAfter(roomTtlSeconds, Date.parse(room.created_at)));
      return room;
    },
    getRoom: (roomId) => instance(roomId).getRoom(),
    touchRoom: (roomId) => instance(roomId).touchRoom(expiry()),
    deleteRoom: (roomId) => instance(roomId).deleteRoom(),
    writeMirror: (roomId, mirror) => instance(roomId).writeMirror(mirror, expiry()),
    // Media nodes register in Redis; without Upstash there is no registry to read, and so no choice
    // of node for a suspicion to steer (MEDIA_NODE_URL serves every room).
    listMediaNodes: async () => [],
    markMediaNodeSuspect: async () => {},
    listSuspectMediaNodes: async () => [],
    clearMediaNodeSuspect: async () => {},
    async ping() {
      await instance(HEALTH_INSTANCE).ping();
    },
  };
}
