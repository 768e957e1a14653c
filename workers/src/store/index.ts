import type { EdgeConfig } from '../config.ts';
import type { Env } from '../env.ts';
import { embeddedRoomRepository } from './embedded-room-repository.ts';
import type { EmbeddedStore } from './embedded-store.ts';
import type { RoomRepository } from './room-repository.ts';
import { withStoreErrors } from './store-errors.ts';
import { upstashRoomRepository } from './upstash-room-repository.ts';

export type { RoomMirror, RoomRepository } from './room-repository.ts';
export { StoreUnavailableError } from './store-errors.ts';

/** Which adapter a config selects: Upstash when UPSTASH_REDIS_REST_URL is set, else the embedded store. */
export function storeKind(config: EdgeConfig): 'upstash' | 'embedded' {
  return config.upstash ? 'upstash' : 'embedded';
}

/**
 * The room store for this config. Failures of the backing store surface as StoreUnavailableError
 * (503). Cheap to build: call it per request (see upstashRoomRepository on why not to share one).
 */
export function roomRepository(env: Env, config: EdgeConfig): RoomRepository {
  const repository = config.upstash
    ? upstashRoomRepository(config.upstash, config.roomTtlSeconds)
    : embeddedRoomRepository(env.STORE as DurableObjectNamespace<EmbeddedStore>, config.roomTtlSeconds);
  return withStoreErrors(repository);
}
