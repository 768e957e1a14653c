import type { RoomRepository } from './room-repository.ts';

/**
 * The backing store failed (unreachable, timed out, answered an error). Routes answer 503
 * `service_unavailable` for it, so a Redis outage is never reported as a bug (500) or a missing room (404).
 */
export class StoreUnavailableError extends Error {
  constructor(cause: unknown) {
    super('the room store is unavailable', { cause });
    this.name = 'StoreUnavailableError';
  }
}

function guard<A extends unknown[], R>(operation: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args) => {
    try {
      return await operation(...args);
    } catch (error) {
      throw error instanceof StoreUnavailableError ? error : new StoreUnavailableError(error);
    }
  };
}

/** The same repository, with every failure of the backing store turned into StoreUnavailableError. */
export function withStoreErrors(repository: RoomRepository): RoomRepository {
  return {
    createRoom: guard(repository.createRoom.bind(repository)),
    getRoom: guard(repository.getRoom.bind(repository)),
    touchRoom: guard(repository.touchRoom.bind(repository)),
    deleteRoom: guard(repository.deleteRoom.bind(repository)),
    writeMirror: guard(repository.writeMirror.bind(repository)),
    listMediaNodes: guard(repository.listMediaNodes.bind(repository)),
    markMediaNodeSuspect: guard(repository.markMediaNodeSuspect.bind(repository)),
    listSuspectMediaNodes: guard(repository.listSuspectMediaNodes.bind(repository)),
    clearMediaNodeSuspect: guard(repository.clearMediaNodeSuspect.bind(repository)),
    ping: guard(repository.ping.bind(repository)),
  };
}
