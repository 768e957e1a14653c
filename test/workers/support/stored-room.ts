import { env, runInDurableObject } from 'cloudflare:test';
import { Redis } from '@upstash/redis/cloudflare';
import type { Publisher } from '../../../shared/src/rest.ts';
import type { Participant } from '../../../shared/src/signaling.ts';
import type { Env } from '../../../workers/src/env.ts';
import type { EmbeddedStore } from '../../../workers/src/store/embedded-store.ts';
import { roomKeys } from '../../../workers/src/store/upstash-room-repository.ts';

const edgeEnv = env as unknown as Env;

/** What the store holds for a room, read raw (as an outside reader of the mirror would), sorted by id. */
export interface StoredRoom {
  /** Whether the room record exists. */
  room: boolean;
  participants: Participant[];
  publishers: Publisher[];
  /** Store keys (Upstash) or tables with rows (embedded) that hold the room's mirror. */
  mirrorKeys: number;
}

const byId = <T extends { id: string }>(list: T[]) => [...list].sort((a, b) => a.id.localeCompare(b.id));

export async function storedRoom(roomId: string): Promise<StoredRoom> {
  return edgeEnv.UPSTASH_REDIS_REST_URL ? fromUpstash(roomId) : fromEmbedded(roomId);
}

async function fromUpstash(roomId: string): Promise<StoredRoom> {
  const redis = new Redis({
    url: edgeEnv.UPSTASH_REDIS_REST_URL!,
    token: edgeEnv.UPSTASH_REDIS_REST_TOKEN!,
    automaticDeserialization: false,
    enableTelemetry: false,
  });
  const [roomKey, participantsKey, publishersKey] = roomKeys(roomId);
  const values = async (key: string) => ((await redis.hvals(key)) as string[]).map((text) => JSON.parse(text));
  return {
    room: (await redis.exists(roomKey)) === 1,
    participants: byId(await values(participantsKey)),
    publishers: byId(await values(publishersKey)),
    mirrorKeys: await redis.exists(participantsKey, publishersKey),
  };
}

async function fromEmbedded(roomId: string): Promise<StoredRoom> {
  const namespace = edgeEnv.STORE as DurableObjectNamespace<EmbeddedStore>;
  return runInDurableObject(namespace.get(namespace.idFromName(roomId)), (_store, state) => {
    const sql = state.storage.sql;
    const tables = sql
      .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")
      .toArray()
      .map((row) => row.name);
    if (!tables.includes('room')) return { room: false, participants: [], publishers: [], mirrorKeys: 0 };
    const participants = sql.exec<Participant>('SELECT id, display FROM participants').toArray();
    const publishers = sql
      .exec<{ id: string; display: string; streams: string }>('SELECT id, display, streams FROM publishers')
      .toArray()
      .map((row) => ({ id: row.id, display: row.display, streams: JSON.parse(row.streams) }));
    return {
      room: sql.exec('SELECT 1 FROM room').toArray().length > 0,
      participants: byId(participants),
      publishers: byId(publishers),
      mirrorKeys: Number(participants.length > 0) + Number(publishers.length > 0),
    };
  });
}
