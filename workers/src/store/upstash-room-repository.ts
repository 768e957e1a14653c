import { Redis } from '@upstash/redis/cloudflare';
import { z } from 'zod';
import {
  MEDIA_NODE_REGISTRY_KEY_PREFIX,
  MEDIA_NODE_REGISTRY_SET,
  type MediaNodeRegistration,
  MediaNodeRegistrationSchema,
} from '../../../shared/src/media-control.ts';
import { mediaNodeIdentity } from '../../../shared/src/media-node-trust.ts';
import { type Room, RoomSchema } from '../../../shared/src/rest.ts';
import { type Expiry, expiryAfter, newRoom } from './room-records.ts';
import type { RoomRepository } from './room-repository.ts';

/**
 * Keys of one room. The `{id}` hash tag puts them in one cluster slot, so one Lua script may touch
 * all three. All three expire together at the room's `expires_at` (PEXPIREAT).
 *   room:{id}               hash: id, name, max_publishers, created_at, expires_at
 *   room:{id}:participants  hash: participant id → Participant JSON   } the mirror of the live state,
 *   room:{id}:publishers    hash: participant id → Publisher JSON     } written by the room's Durable Object
 */
export function roomKeys(roomId: string): [room: string, participants: string, publishers: string] {
  const room = `room:{${roomId}}`;
  return [room, `${room}:participants`, `${room}:publishers`];
}

// Every write script takes KEYS = roomKeys(id) and ARGV[1] = expiry (epoch ms), ARGV[2] = expiry (ISO),
// refuses to act on a room that does not exist (so a write never resurrects an expired room), and
// moves the expiry of all three keys forward.
const PRELUDE = `
local function refresh()
  redis.call('HSET', KEYS[1], 'expires_at', ARGV[2])
  for i = 1, #KEYS do redis.call('PEXPIREAT', KEYS[i], ARGV[1]) end
end
`;

const SCRIPTS = {
  create: `${PRELUDE}
redis.call('HSET', KEYS[1], 'id', ARGV[3], 'name', ARGV[4], 'max_publishers', ARGV[5], 'created_at', ARGV[6])
refresh()
return 1`,
  touch: `${PRELUDE}
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
refresh()
return 1`,
  // ARGV[3] = participant count n, then n (id, Participant JSON) pairs, then (id, Publisher JSON) pairs.
  // The old copy goes first, so that a room that is gone keeps no mirror keys either.
  writeMirror: `${PRELUDE}
redis.call('DEL', KEYS[2], KEYS[3])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local participants = tonumber(ARGV[3])
for i = 0, participants - 1 do redis.call('HSET', KEYS[2], ARGV[4 + 2 * i], ARGV[5 + 2 * i]) end
for i = 4 + 2 * participants, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
refresh()
return 1`,
} as const;

/**
 * A media node one room found unresponsive: `media-node-suspect:<control URL>`, a plain key whose TTL
 * is the suspicion's life (any room may renew or clear it; nothing to prune).
 */
export const suspectNodeKey = (url: string) => `media-node-suspect:${mediaNodeIdentity(url)}`;

/** Bounds one repository call, retries included, so a hung endpoint cannot hold a request open. */
const CALL_TIMEOUT_MS = 5000;

/** HGETALL's raw RESP reply: a flat [field, value, …] list (empty when the key does not exist). */
const FlatHashSchema = z.array(z.string());
const StringListSchema = z.array(z.string());
const StoredRoomSchema = RoomSchema.extend({
  max_publishers: z.coerce.number().pipe(RoomSchema.shape.max_publishers),
});

/** Parses one stored JSON value; entries that are not valid JSON of the schema are skipped. */
function parseStored<T>(schema: z.ZodType<T>, text: unknown): T | undefined {
  if (typeof text !== 'string') return undefined;
  try {
    const result = schema.safeParse(JSON.parse(text));
    return result.success ? result.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * RoomRepository on Upstash Redis over its REST API. Replies are read raw (automatic JSON
 * deserialization off: a room called "123" must stay a string) and validated with the contract's schemas.
 *
 * Create one per request: the client batches commands issued in the same tick (auto-pipelining), and a
 * batch shared between two Workers requests would resolve one request's promises from the other's I/O.
 */
export function upstashRoomRepository(options: { url: string; token: string }, roomTtlSeconds: number): RoomRepository {
  const deadline = new CallDeadline(CALL_TIMEOUT_MS);
  const redis = new Redis({
    url: options.url,
    token: options.token,
    automaticDeserialization: false,
    enableTelemetry: false,
    retry: { retries: 3 },
    signal: () => deadline.signal(),
  });
  const scripts = {
    create: redis.createScript<number>(SCRIPTS.create),
    touch: redis.createScript<number>(SCRIPTS.touch),
    writeMirror: redis.createScript<number>(SCRIPTS.writeMirror),
  };
  const expiryArgs = (expiry: Expiry) => [String(expiry.ms), expiry.iso];
  const write = (script: keyof typeof scripts, roomId: string, ...args: string[]) =>
    scripts[script].exec(roomKeys(roomId), [...expiryArgs(expiryAfter(roomTtlSeconds)), ...args]);

  return deadline.wrap({
    async createRoom(input) {
      const room = newRoom(input, roomTtlSeconds);
      const expiry = expiryAfter(roomTtlSeconds, Date.parse(room.created_at));
      await scripts.create.exec(roomKeys(room.id), [
        ...expiryArgs(expiry),
        room.id,
        room.name,
        String(room.max_publishers),
        room.created_at,
      ]);
      return room;
    },
    async getRoom(roomId): Promise<Room | null> {
      const flat = FlatHashSchema.parse(await redis.hgetall(roomKeys(roomId)[0]));
      if (flat.length === 0) return null;
      const fields: Record<string, string> = {};
      for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
      const parsed = StoredRoomSchema.safeParse(fields);
      return parsed.success ? parsed.data : null;
    },
    touchRoom: async (roomId) => (await write('touch', roomId)) === 1,
    async deleteRoom(roomId) {
      await redis.del(...roomKeys(roomId));
    },
    async writeMirror(roomId, mirror) {
      const pairs = (entries: { id: string }[]) => entries.flatMap((entry) => [entry.id, JSON.stringify(entry)]);
      const args = [String(mirror.participants.length), ...pairs(mirror.participants), ...pairs(mirror.publishers)];
      return (await write('writeMirror', roomId, ...args)) === 1;
    },
    async listMediaNodes(): Promise<MediaNodeRegistration[]> {
      const ids = StringListSchema.parse(await redis.smembers(MEDIA_NODE_REGISTRY_SET));
      if (ids.length === 0) return [];
      // A node's entry expires shortly after its last heartbeat; ids whose entry is gone are dead nodes.
      const entries: unknown[] = await redis.mget(...ids.map((id) => `${MEDIA_NODE_REGISTRY_KEY_PREFIX}${id}`));
      return entries.flatMap((entry) => parseStored(MediaNodeRegistrationSchema, entry) ?? []);
    },
    async markMediaNodeSuspect(url, ttlMs) {
      await redis.set(suspectNodeKey(url), new Date().toISOString(), { px: ttlMs });
    },
    async listSuspectMediaNodes(urls) {
      if (urls.length === 0) return [];
      const marks: unknown[] = await redis.mget(...urls.map(suspectNodeKey));
      return urls.filter((_, index) => marks[index] !== null && marks[index] !== undefined);
    },
    async clearMediaNodeSuspect(url) {
      await redis.del(suspectNodeKey(url));
    },
    async ping() {
      await redis.ping();
    },
  });
}

const NEVER_ABORTS = new AbortController().signal;

/**
 * The timeout of the calls in progress on one repository. `AbortSignal.timeout` would leave a timer
 * running after every command, and a pending timer keeps a Durable Object awake (no hibernation) until
 * it fires: this timer starts with the first call in progress and is cleared when the last one ends.
 */
class CallDeadline {
  readonly #ms: number;
  #active = 0;
  #controller: AbortController | undefined;
  #timer: ReturnType<typeof setTimeout> | null = null;

  constructor(ms: number) {
    this.#ms = ms;
  }

  signal(): AbortSignal {
    return this.#controller?.signal ?? NEVER_ABORTS;
  }

  /** The same methods, each running inside the deadline. */
  wrap<T extends object>(target: T): T {
    const wrapped = {} as Record<string, unknown>;
    for (const [name, method] of Object.entries(target)) {
      wrapped[name] = (...args: unknown[]) =>
        this.#run(() => (method as (...a: unknown[]) => Promise<unknown>)(...args));
    }
    return wrapped as T;
  }

  async #run<R>(call: () => Promise<R>): Promise<R> {
    if (this.#active++ === 0) {
      const controller = new AbortController();
      this.#controller = controller;
      this.#timer = setTimeout(() => controller.abort(new Error('the store did not answer in time')), this.#ms);
    }
    try {
      return await call();
    } finally {
      if (--this.#active === 0) {
        if (this.#timer !== null) clearTimeout(this.#timer);
        this.#timer = null;
        this.#controller = undefined;
      }
    }
  }
}
