import { env, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { newId } from '../../shared/src/ids.ts';
import { edgeConfig } from '../../workers/src/config.ts';
import type { Env } from '../../workers/src/env.ts';
import type { EmbeddedStore } from '../../workers/src/store/embedded-store.ts';
import { roomRepository } from '../../workers/src/store/index.ts';

/** What only the embedded store has: per-room instances, storage cleanup by alarm, no registry. */

const edgeEnv = env as unknown as Env;
const config = edgeConfig(edgeEnv);
const repo = (roomTtlSeconds: number) => roomRepository(edgeEnv, { ...config, roomTtlSeconds });
const namespace = edgeEnv.STORE as DurableObjectNamespace<EmbeddedStore>;
const instance = (roomId: string) => namespace.get(namespace.idFromName(roomId));
const tables = (roomId: string) =>
  runInDurableObject(instance(roomId), (_store, state) =>
    state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'").toArray(),
  );

describe('embedded store', () => {
  it('stores nothing when an unknown room is looked up', async () => {
    const roomId = newId();
    expect(await repo(60).getRoom(roomId)).toBeNull();
    expect(await repo(60).touchRoom(roomId)).toBe(false);
    expect(await tables(roomId)).toEqual([]);
  });

  it('wipes a room from storage when its expiry alarm fires', async () => {
    const room = await repo(1).createRoom({ name: 'r', max_publishers: 1 });
    await repo(1).writeMirror(room.id, { participants: [{ id: newId(), display: 'Alice' }], publishers: [] });
    expect((await tables(room.id)).length).toBeGreaterThan(0);
    // The runtime fires the alarm at the expiry on its own.
    await expect.poll(() => tables(room.id), { timeout: 5000, interval: 100 }).toEqual([]);
    expect(await runDurableObjectAlarm(instance(room.id))).toBe(false);
    // The instance is reusable after the wipe (no stale "table exists" state).
    expect(await repo(1).getRoom(room.id)).toBeNull();
  });

  it('keeps a room whose expiry moved while the alarm was pending, and re-arms the alarm', async () => {
    const room = await repo(1).createRoom({ name: 'r', max_publishers: 1 });
    await repo(3600).touchRoom(room.id);
    expect(await runDurableObjectAlarm(instance(room.id))).toBe(true);
    const extended = await repo(3600).getRoom(room.id);
    expect(extended).not.toBeNull();
    const alarm = await runInDurableObject(instance(room.id), (_store, state) => state.storage.getAlarm());
    expect(alarm).toBe(Date.parse(extended!.expires_at));
  });

  it('has no media node registry, so no suspect node to steer placement by', async () => {
    expect(await repo(60).listMediaNodes()).toEqual([]);
    await repo(60).markMediaNodeSuspect('http://10.0.0.1:8081', 30_000);
    expect(await repo(60).listSuspectMediaNodes(['http://10.0.0.1:8081'])).toEqual([]);
  });
});
