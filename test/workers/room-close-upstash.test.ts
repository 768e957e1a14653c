import { env, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { Redis } from '@upstash/redis/cloudflare';
import { expect, it } from 'vitest';
import { newId } from '../../shared/src/ids.ts';
import { MEDIA_NODE_REGISTRY_KEY_PREFIX, MEDIA_NODE_REGISTRY_SET } from '../../shared/src/media-control.ts';
import { signRegistration } from '../../shared/src/media-node-trust.ts';
import { edgeConfig } from '../../workers/src/config.ts';
import type { Env } from '../../workers/src/env.ts';
import { MEDIA_NODES_KEY } from '../../workers/src/media/media-node-placement.ts';
import type { RoomCoordinator } from '../../workers/src/room/room-coordinator.ts';
import { eventually } from './support/barrier.ts';
import { fakeSdp } from './support/fake-media-node.ts';
import { createRoom, joinMember, roomStub } from './support/rooms.ts';

const edgeEnv = env as unknown as Env;

it('closes a room on the node it is pinned to, and leaves no pin behind', async () => {
  // A registered "node" that answers HTTP but refuses every control call: the room gets pinned to it
  // (only an unreachable node releases a pin), and nothing else of the room depends on it.
  const redis = new Redis({ url: edgeEnv.UPSTASH_REDIS_REST_URL!, token: edgeEnv.UPSTASH_REDIS_REST_TOKEN! });
  const node = await signRegistration(
    {
      id: `refusing-${newId()}`,
      url: edgeEnv.UPSTASH_REDIS_REST_URL!,
      load: 0,
      capacity: 1_000,
      draining: false,
      updated_at: new Date().toISOString(),
    },
    edgeConfig(edgeEnv).mediaNode!.secret,
  );
  await redis.sadd(MEDIA_NODE_REGISTRY_SET, node.id);
  await redis.set(`${MEDIA_NODE_REGISTRY_KEY_PREFIX}${node.id}`, JSON.stringify(node), { ex: 60 });

  const room = await createRoom();
  const ann = await joinMember(room.id, 'Ann');
  const stub = roomStub(room.id);
  const storageKeys = () =>
    runInDurableObject(stub, (_instance: RoomCoordinator, state) => [...state.storage.kv.list()].map(([key]) => key));
  const refused = await ann.socket.request('publish_offer', { sdp: fakeSdp('offer') });
  expect(refused).toMatchObject({ type: 'error', payload: { code: 'media_unavailable' } });
  expect(await storageKeys()).toContain(MEDIA_NODES_KEY);

  await ann.socket.expectReply('leave', {}, 'ack');
  await ann.socket.closed;
  await eventually(() =>
    runInDurableObject(stub, (_instance: RoomCoordinator, state) =>
      state.getWebSockets().length === 0 ? true : undefined,
    ),
  );
  expect(await runDurableObjectAlarm(stub)).toBe(true);
  // Told on its pinned node (not placed anew after the wipe), the room leaves only Ann's leave marker.
  expect(await storageKeys()).toEqual([`left:${ann.participantId}`]);
  await redis.srem(MEDIA_NODE_REGISTRY_SET, node.id);
});
