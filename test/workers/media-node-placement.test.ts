import { env, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import type { MediaNodeRegistration } from '../../shared/src/media-control.ts';
import { edgeConfig } from '../../workers/src/config.ts';
import { MediaCallError } from '../../workers/src/media/media-node-client.ts';
import { chooseNode, MediaNodePlacement } from '../../workers/src/media/media-node-placement.ts';
import type { RoomRepository } from '../../workers/src/store/room-repository.ts';

const node = (url: string, load: number, capacity: number, draining = false): MediaNodeRegistration => ({
  id: url,
  url,
  load,
  capacity,
  draining,
  updated_at: new Date().toISOString(),
});

describe('chooseNode', () => {
  it('takes the live node with the lowest load relative to capacity', () => {
    expect(chooseNode([node('http://a', 50, 100), node('http://b', 30, 200), node('http://c', 10, 20)])).toBe(
      'http://b',
    );
  });

  it('skips draining and full nodes, and answers undefined when none is left', () => {
    expect(chooseNode([node('http://a', 0, 100, true), node('http://b', 100, 100), node('http://c', 99, 100)])).toBe(
      'http://c',
    );
    expect(chooseNode([node('http://a', 0, 100, true), node('http://b', 5, 0)])).toBeUndefined();
    expect(chooseNode([])).toBeUndefined();
  });
});

describe('MediaNodePlacement', () => {
  /** Runs `body` with a placement on a fresh room object's storage and a registry the test controls. */
  async function withPlacement(
    options: { staticUrl?: string; registry: () => Promise<MediaNodeRegistration[]> },
    body: (placement: MediaNodePlacement) => Promise<void>,
  ) {
    const config = {
      ...edgeConfig(env),
      upstash: { url: 'http://registry.test', token: 'x' },
      mediaNode: { url: options.staticUrl, secret: new Uint8Array(32) },
    };
    const repository = { listMediaNodes: options.registry } as unknown as RoomRepository;
    const stub = env.ROOMS.get(env.ROOMS.newUniqueId());
    await runInDurableObject(stub, (_instance, state) =>
      body(new MediaNodePlacement(state.storage, () => repository, config)),
    );
  }

  it('pins a room to the least-loaded node and keeps it there when a registry read misses that node', async () => {
    let nodes = [node('http://a', 10, 100), node('http://b', 50, 100)];
    await withPlacement({ registry: async () => nodes }, async (placement) => {
      expect(await placement.baseUrl()).toBe('http://a');
      nodes = [node('http://b', 0, 100)];
      expect(await placement.baseUrl()).toBe('http://a');
    });
  });

  it('places the room again once its node is released as unreachable', async () => {
    let nodes = [node('http://a', 10, 100)];
    await withPlacement({ registry: async () => nodes }, async (placement) => {
      expect(await placement.baseUrl()).toBe('http://a');
      nodes = [node('http://a', 10, 100, true), node('http://b', 20, 100)];
      await placement.release('http://other');
      expect(await placement.baseUrl()).toBe('http://a');
      await placement.release('http://a');
      expect(await placement.baseUrl()).toBe('http://b');
    });
  });

  it('keeps away from a released node while the registry still lists it (its entry outlives it)', async () => {
    const nodes = [node('http://a', 0, 100), node('http://b', 50, 100)];
    await withPlacement({ registry: async () => nodes }, async (placement) => {
      expect(await placement.baseUrl()).toBe('http://a');
      await placement.release('http://a');
      expect(await placement.baseUrl()).toBe('http://b');
    });
  });

  it('falls back to MEDIA_NODE_URL when the registry is unreachable or empty, else media_unavailable', async () => {
    const down = async (): Promise<MediaNodeRegistration[]> => {
      throw new Error('registry down');
    };
    await withPlacement({ staticUrl: 'http://static', registry: down }, async (placement) => {
      expect(await placement.baseUrl()).toBe('http://static');
    });
    await withPlacement({ registry: async () => [] }, async (placement) => {
      await expect(placement.baseUrl()).rejects.toBeInstanceOf(MediaCallError);
    });
  });
});
