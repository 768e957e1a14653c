import { newId } from '../../../shared/src/ids.ts';
import type { CreateRoomRequest, Room } from '../../../shared/src/rest.ts';

/** When a room written now expires: both adapters store the same absolute instant. */
export interface Expiry {
  /** Unix epoch milliseconds, as PEXPIREAT and alarms take it. */
  ms: number;
  iso: string;
}

export function expiryAfter(ttlSeconds: number, now = Date.now()): Expiry {
  const ms = now + ttlSeconds * 1000;
  return { ms, iso: new Date(ms).toISOString() };
}

/** A new room record with a fresh unguessable id, expiring ttlSeconds from now. */
export function newRoom(input: CreateRoomRequest, ttlSeconds: number, now = Date.now()): Room {
  return {
    id: newId(),
    name: input.name,
    max_publishers: input.max_publishers,
    created_at: new Date(now).toISOString(),
    expires_at: expiryAfter(ttlSeconds, now).iso,
  };
}
