import { env } from 'cloudflare:test';
import { Redis } from '@upstash/redis/cloudflare';
import { describe, expect, it } from 'vitest';
import { newId } from '../../shared/src/ids.ts';
import {
  MEDIA_NODE_REGISTRY_KEY_PREFIX,
  MEDIA_NODE_REGISTRY_SET,
  type MediaNodeRegistration,
} from '../../shared/src/media-control.ts';
import { edgeConfig } from '../../workers/src/config.ts';
import type { Env } from '../../workers/src/env.ts';
import { roomRepository } from '../../workers/src/store/index.ts';
import { roomKeys, suspectNodeKey } from '../../workers/src/store/upstash-room-repository.ts';

/** What only the Upstash store has: key layout and expiry in Redis, and the media node registry. */

const edgeEnv = env as unknown as Env;
const config = edgeConfig(edgeEnv);
const repo = () => roomRepository(edgeEnv, config);
const redis = new Redis({
  url: edgeEnv.UPSTASH_REDIS_REST_URL!,
  token: edgeEnv.UPSTASH_REDIS_REST_TOKEN!,
  automaticDeserialization: false,
  enableTelemetry: false,
});

describe('Upstash store', () => {
  it('keeps a room in three keys that all expire at the room expiry', async () => {
    const room = await repo().createRoom({ name: 'keys', max_publishers: 2 });
    const alice = { id: newId(), display: 'Alice' };
    await repo().writeMirror(room.id, { participants: [alice], publishers: [{ ...alice, streams: [] }] });
    const expiresAt = Date.parse((await repo().getRoom(room.id))!.expires_at);

    const keys = roomKeys(room.id);
    expect(keys).toEqual([`room:{${room.id}}`, `room:{${room.id}}:participants`, `room:{${room.id}}:publishers`]);
    for (const key of keys) {
      // PEXPIRETIME is the absolute expiry in ms: exactly the room's expires_at.
      expect(await redis.eval('return redis.call("PEXPIRETIME", KEYS[1])', [key], [])).toBe(expiresAt);
    }
  });

  it('lists only live, well-formed media node registrations', async () => {
    const live: MediaNodeRegistration = {
      id: `node-${newId()}`,
      url: 'http://127.0.0.1:8081',
      load: 0.25,
      capacity: 200,
      draining: false,
      updated_at: new Date().toISOString(),
    };
    const malformed = `node-${newId()}`;
    const expired = `node-${newId()}`;
    await redis.sadd(MEDIA_NODE_REGISTRY_SET, live.id, malformed, expired);
    await redis.set(`${MEDIA_NODE_REGISTRY_KEY_PREFIX}${live.id}`, JSON.stringify(live), { ex: 30 });
    await redis.set(`${MEDIA_NODE_REGISTRY_KEY_PREFIX}${malformed}`, '{"id":"x","url":"not a url"}', { ex: 30 });

    const nodes = await repo().listMediaNodes();
    expect(nodes).toContainEqual(live);
    expect(nodes.map((node) => node.id)).not.toContain('x');
    expect(nodes.map((node) => node.id)).not.toContain(expired);
  });

  it('keeps a suspect media node for the TTL given, shared by every repository, until cleared', async () => {
    const [hung, healthy] = [`http://10.0.0.1:${8000 + Math.floor(Math.random() * 1000)}`, 'http://10.0.0.2:8081'];
    await repo().markMediaNodeSuspect(hung, 30_000);
    expect(await repo().listSuspectMediaNodes([healthy, hung])).toEqual([hung]);
    const ttl = Number(await redis.pttl(suspectNodeKey(hung)));
    expect(ttl).toBeGreaterThan(25_000);
    expect(ttl).toBeLessThanOrEqual(30_000);
    await repo().clearMediaNodeSuspect(hung);
    expect(await repo().listSuspectMediaNodes([healthy, hung])).toEqual([]);
    expect(await repo().listSuspectMediaNodes([])).toEqual([]);
  });

  it('forgets a suspicion when its TTL ends', async () => {
    const url = `http://10.0.0.3:${8000 + Math.floor(Math.random() * 1000)}`;
    await repo().markMediaNodeSuspect(url, 50);
    await expect.poll(() => repo().listSuspectMediaNodes([url]), { timeout: 5_000 }).toEqual([]);
  });

  it('answers an empty registry with no nodes', async () => {
    await redis.del(MEDIA_NODE_REGISTRY_SET);
    expect(await repo().listMediaNodes()).toEqual([]);
  });
});
