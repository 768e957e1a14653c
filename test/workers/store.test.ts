import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { newId } from '../../shared/src/ids.ts';
import type { Publisher } from '../../shared/src/rest.ts';
import { type EdgeConfig, edgeConfig } from '../../workers/src/config.ts';
import type { Env } from '../../workers/src/env.ts';
import { type RoomRepository, roomRepository, storeKind } from '../../workers/src/store/index.ts';

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
    await repo().addParticipant(room.id, odd);
    expect(await repo().listParticipants(room.id)).toEqual([odd]);
  });

  it('moves the expiry forward on touch and on every write', async () => {
    const room = await repo(60).createRoom({ name: 'r', max_publishers: 2 });
    const expiresAt = async () => Date.parse((await repo().getRoom(room.id))!.expires_at);
    const createdExpiry = await expiresAt();

    expect(await repo(3600).touchRoom(room.id)).toBe(true);
    expect(await expiresAt()).toBeGreaterThan(createdExpiry + 3000 * 1000);

    await repo(7200).addParticipant(room.id, participant());
    expect(await expiresAt()).toBeGreaterThan(createdExpiry + 7000 * 1000);

    await repo(9000).claimPublisher(room.id, publisher());
    expect(await expiresAt()).toBeGreaterThan(createdExpiry + 8900 * 1000);

    expect(await repo().touchRoom(newId())).toBe(false);
  });

  it('expires rooms after their TTL, with everything in them', async () => {
    const shortLived = repo(1);
    const room = await shortLived.createRoom({ name: 'ephemeral', max_publishers: 1 });
    const alice = participant();
    await shortLived.addParticipant(room.id, alice);
    await shortLived.claimPublisher(room.id, { ...alice, streams: [] });

    await expect.poll(() => shortLived.getRoom(room.id), { timeout: 5000, interval: 100 }).toBeNull();
    expect(await shortLived.listParticipants(room.id)).toEqual([]);
    expect(await shortLived.listPublishers(room.id)).toEqual([]);
    // An expired room stays gone: writes do not bring it back.
    expect(await shortLived.touchRoom(room.id)).toBe(false);
    expect(await shortLived.addParticipant(room.id, participant())).toBe(false);
    expect(await shortLived.claimPublisher(room.id, publisher())).toEqual({ ok: false, reason: 'not_found' });
    expect(await shortLived.getRoom(room.id)).toBeNull();
  });

  it('deletes rooms with their participants and publishers', async () => {
    const room = await repo().createRoom({ name: 'r', max_publishers: 2 });
    const alice = participant();
    await repo().addParticipant(room.id, alice);
    await repo().claimPublisher(room.id, { ...alice, streams: [] });
    await repo().deleteRoom(room.id);
    expect(await repo().getRoom(room.id)).toBeNull();
    expect(await repo().listParticipants(room.id)).toEqual([]);
    expect(await repo().listPublishers(room.id)).toEqual([]);
    await repo().deleteRoom(newId());
  });

  it('adds, replaces and removes participants', async () => {
    const room = await repo().createRoom({ name: 'r', max_publishers: 2 });
    const [alice, bob] = [participant('Alice'), participant('Bob')];
    expect(await repo().addParticipant(room.id, alice)).toBe(true);
    expect(await repo().addParticipant(room.id, bob)).toBe(true);
    expect(await repo().addParticipant(room.id, { ...alice, display: 'Alice (phone)' })).toBe(true);
    const byId = (list: { id: string }[]) => [...list].sort((a, b) => a.id.localeCompare(b.id));
    expect(byId(await repo().listParticipants(room.id))).toEqual(byId([{ ...alice, display: 'Alice (phone)' }, bob]));

    await repo().removeParticipant(room.id, alice.id);
    expect(await repo().listParticipants(room.id)).toEqual([bob]);
    await repo().removeParticipant(room.id, newId());
    await repo().removeParticipant(newId(), bob.id);
    expect(await repo().addParticipant(newId(), participant())).toBe(false);
  });

  it('removing a participant releases its publisher slot', async () => {
    const room = await repo().createRoom({ name: 'r', max_publishers: 1 });
    const alice = participant();
    await repo().addParticipant(room.id, alice);
    expect(await repo().claimPublisher(room.id, { ...alice, streams: [{ kind: 'audio' }] })).toEqual({ ok: true });
    await repo().removeParticipant(room.id, alice.id);
    expect(await repo().listPublishers(room.id)).toEqual([]);
    expect(await repo().claimPublisher(room.id, publisher())).toEqual({ ok: true });
  });

  it('claims publisher slots up to max_publishers, updates in place, and releases them', async () => {
    const room = await repo().createRoom({ name: 'r', max_publishers: 2 });
    const [a, b, c] = [publisher('A'), publisher('B'), publisher('C')];
    expect(await repo().claimPublisher(room.id, a)).toEqual({ ok: true });
    expect(await repo().claimPublisher(room.id, b)).toEqual({ ok: true });
    expect(await repo().claimPublisher(room.id, c)).toEqual({ ok: false, reason: 'room_full' });
    // A publisher already counted may update its streams even when the room is full.
    const aWithAudio = { ...a, streams: [...a.streams, { kind: 'audio' as const, mid: '1', codec: 'opus' }] };
    expect(await repo().claimPublisher(room.id, aWithAudio)).toEqual({ ok: true });
    const byId = (list: Publisher[]) => [...list].sort((x, y) => x.id.localeCompare(y.id));
    expect(byId(await repo().listPublishers(room.id))).toEqual(byId([aWithAudio, b]));

    await repo().releasePublisher(room.id, b.id);
    expect(await repo().claimPublisher(room.id, c)).toEqual({ ok: true });
    await repo().releasePublisher(room.id, newId());
    expect(await repo().claimPublisher(newId(), a)).toEqual({ ok: false, reason: 'not_found' });
  });

  it('never grants more than max_publishers when edges race for the last slots', async () => {
    const room = await repo().createRoom({ name: 'race', max_publishers: 3 });
    const contenders = Array.from({ length: 12 }, (_, i) => publisher(`P${i}`));
    const outcomes = await Promise.all(contenders.map((p) => repo().claimPublisher(room.id, p)));
    expect(outcomes.filter((outcome) => outcome.ok)).toHaveLength(3);
    expect(outcomes.filter((outcome) => !outcome.ok && outcome.reason === 'room_full')).toHaveLength(9);
    expect(await repo().listPublishers(room.id)).toHaveLength(3);
  });

  it('answers ping', async () => {
    await expect(repo().ping()).resolves.toBeUndefined();
  });
});
