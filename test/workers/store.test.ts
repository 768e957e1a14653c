import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { newId } from '../../shared/src/ids.ts';
import type { Publisher } from '../../shared/src/rest.ts';
import { type EdgeConfig, edgeConfig } from '../../workers/src/config.ts';
import type { Env } from '../../workers/src/env.ts';
import { type RoomRepository, roomRepository, storeKind } from '../../workers/src/store/index.ts';
import { storedRoom } from './support/stored-room.ts';

/**
 * The RoomRepository contract, one suite for both adapters: the workers project runs it on the
 * embedded Durable Object store, workers-upstash on Upstash (real redis-server behind the local
 * endpoint). The adapter is chosen by the bindings, exactly as in production.
 */

const edgeEnv = env as unknown as Env;
const config = edgeConfig(edgeEnv);
const withTtl = (roomTtlSeconds: number): EdgeConfig => ({ ...config, roomTtlSeconds });
/** A new repository per call, as two requests (or two edges) would each build their own. */
const repo = (ttlSeconds = config.roomTtlSeconds): RoomRepository => roomRepository(edgeEnv, withTtl(ttlSeconds));

const participant = (display = 'Alice') => ({ id: newId(), display });
const publisher = (display = 'Alice'): Publisher => ({ id: newId(), display, streams: [{ kind: 'video', mid: '0' }] });

describe(`RoomRepository contract (${storeKind(config)})`, () => {
  it('uses the adapter the bindings select', () => {
    expect(storeKind(config)).toBe(edgeEnv.UPSTASH_REDIS_REST_URL ? 'upstash' : 'embedded');
  });

  it('creates and reads rooms', async () => {
    const room = await repo().createRoom({ name: 'Ma Réunion', max_publishers: 3 });
    expect(room.id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(room).toMatchObject({ name: 'Ma Réunion', max_publishers: 3 });
    expect(Date.parse(room.expires_at) - Date.parse(room.created_at)).toBe(config.roomTtlSeconds * 1000);
    expect(await repo().getRoom(room.id)).toEqual(room);
    expect(await repo().getRoom(newId())).toBeNull();
  });

  it('keeps text that looks like numbers or JSON as text', async () => {
    const room = await repo().createRoom({ name: '10', max_publishers: 1 });
    expect((await repo().getRoom(room.id))?.name).toBe('10');
    const odd = { id: newId(), display: '{"x":1}' };
    expect(await repo().writeMirror(room.id, { participants: [odd], publishers: [] })).toBe(true);
    expect((await storedRoom(room.id)).participants).toEqual([odd]);
  });

  it('moves the expiry forward on touch and on every write', async () => {
    const room = await repo(60).createRoom({ name: 'r', max_publishers: 2 });
    const expiresAt = async () => Date.parse((await repo().getRoom(room.id))!.expires_at);
    const createdExpiry = await expiresAt();

    expect(await repo(3600).touchRoom(room.id)).toBe(true);
    expect(await expiresAt()).toBeGreaterThan(createdExpiry + 3000 * 1000);

    await repo(7200).writeMirror(room.id, { participants: [participant()], publishers: [] });
    expect(await expiresAt()).toBeGreaterThan(createdExpiry + 7000 * 1000);

    expect(await repo().touchRoom(newId())).toBe(false);
  });

  it('expires rooms after their TTL, with their mirror', async () => {
    const shortLived = repo(1);
    const room = await shortLived.createRoom({ name: 'ephemeral', max_publishers: 1 });
    const alice = participant();
    await shortLived.writeMirror(room.id, { participants: [alice], publishers: [{ ...alice, streams: [] }] });

    await expect.poll(() => shortLived.getRoom(room.id), { timeout: 5000, interval: 100 }).toBeNull();
    // An expired room stays gone: writes do not bring it back, nor leave a mirror behind.
    expect(await shortLived.touchRoom(room.id)).toBe(false);
    expect(await shortLived.writeMirror(room.id, { participants: [participant()], publishers: [] })).toBe(false);
    expect(await shortLived.getRoom(room.id)).toBeNull();
    expect(await storedRoom(room.id)).toMatchObject({ participants: [], publishers: [], mirrorKeys: 0 });
  });

  it('deletes rooms with their mirror', async () => {
    const room = await repo().createRoom({ name: 'r', max_publishers: 2 });
    const alice = participant();
    await repo().writeMirror(room.id, { participants: [alice], publishers: [{ ...alice, streams: [] }] });
    await repo().deleteRoom(room.id);
    expect(await repo().getRoom(room.id)).toBeNull();
    expect(await storedRoom(room.id)).toEqual({ room: false, participants: [], publishers: [], mirrorKeys: 0 });
    await repo().deleteRoom(newId());
  });

  it('replaces the mirror as a whole on every write; an empty one leaves no mirror keys', async () => {
    const room = await repo().createRoom({ name: 'r', max_publishers: 2 });
    const [alice, bob] = [participant('Alice'), participant('Bob')];
    const aliceStreams = publisher('Alice');
    const byId = <T extends { id: string }>(list: T[]) => [...list].sort((x, y) => x.id.localeCompare(y.id));
    await repo().writeMirror(room.id, { participants: [alice, bob], publishers: [{ ...aliceStreams, id: alice.id }] });
    expect(await storedRoom(room.id)).toMatchObject({
      participants: byId([alice, bob]),
      publishers: [{ ...aliceStreams, id: alice.id }],
    });

    await repo().writeMirror(room.id, { participants: [{ ...bob, display: 'Bob (phone)' }], publishers: [] });
    expect(await storedRoom(room.id)).toMatchObject({
      room: true,
      participants: [{ ...bob, display: 'Bob (phone)' }],
      publishers: [],
    });

    await repo().writeMirror(room.id, { participants: [], publishers: [] });
    expect(await storedRoom(room.id)).toEqual({ room: true, participants: [], publishers: [], mirrorKeys: 0 });
  });

  it('answers ping', async () => {
    await expect(repo().ping()).resolves.toBeUndefined();
  });
});
