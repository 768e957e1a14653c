import { env, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../shared/src/log.ts';
import type { MediaNodeRegistration } from '../../shared/src/media-control.ts';
import { signRegistration } from '../../shared/src/media-node-trust.ts';
import { edgeConfig } from '../../workers/src/config.ts';
import { MediaCallError } from '../../workers/src/media/media-node-client.ts';
import { MediaNodePlacement, SUSPECT_NODE_TTL_MS } from '../../workers/src/media/media-node-placement.ts';
import type { RoomRepository } from '../../workers/src/store/room-repository.ts';

const node = (url: string, load: number, capacity: number, draining = false): MediaNodeRegistration => ({
  id: url,
  url,
  load,
  capacity,
  draining,
  updated_at: new Date().toISOString(),
});

/** A new participant placed as RoomMedia places it when its first node takes it: the best candidate. */
async function place(placement: MediaNodePlacement): Promise<string> {
  const [url] = await placement.candidates();
  placement.assign(crypto.randomUUID(), url!);
  return url!;
}

describe('MediaNodePlacement', () => {
  const secret = crypto.getRandomValues(new Uint8Array(32));
  /** Entries as the nodes write them: signed with MEDIA_NODE_SECRET. */
  const signed = (nodes: MediaNodeRegistration[]) => Promise.all(nodes.map((entry) => signRegistration(entry, secret)));

  /** Suspicions as the store keeps them, shared by every placement of a test (as by every room). */
  class SuspectNodes {
    readonly marks = new Map<string, number>();
    readonly repository = {
      markMediaNodeSuspect: async (url: string, ttlMs: number) => void this.marks.set(url, ttlMs),
      listSuspectMediaNodes: async (urls: string[]) => urls.filter((url) => this.marks.has(url)),
      clearMediaNodeSuspect: async (url: string) => void this.marks.delete(url),
    };
  }

  /** Runs `body` with a placement on a fresh room object's storage and a registry the test controls. */
  async function withPlacement(
    options: {
      staticUrls?: string[];
      allowHttp?: boolean;
      registry: () => Promise<MediaNodeRegistration[]>;
      suspects?: SuspectNodes;
    },
    body: (placement: MediaNodePlacement, logs: string[]) => Promise<void>,
  ) {
    const config = {
      ...edgeConfig(env),
      upstash: { url: 'http://registry.test', token: 'x' },
      mediaNode: { urls: options.staticUrls ?? [], secret, allowHttp: options.allowHttp ?? false },
    };
    const repository = {
      listMediaNodes: options.registry,
      ...(options.suspects ?? new SuspectNodes()).repository,
    } as unknown as RoomRepository;
    const logs: string[] = [];
    const logger = createLogger('warn', {});
    const capture = {
      ...logger,
      warn: (message: string, fields?: object) => logs.push(`${message} ${JSON.stringify(fields)}`),
    };
    const stub = env.ROOMS.get(env.ROOMS.newUniqueId());
    await runInDurableObject(stub, (_instance, state) =>
      body(
        new MediaNodePlacement(
          state.storage.kv,
          () => repository,
          config,
          () => capture,
        ),
        logs,
      ),
    );
  }

  it('gives no room to a forged entry (load 0, unsigned or signed with another secret), and logs each', async () => {
    const real = (await signed([node('https://real.example', 50, 100)]))[0]!;
    const forgedUnsigned = node('https://attacker.example', 0, 100);
    const forgedWrongKey = await signRegistration(node('https://attacker2.example', 0, 100), new Uint8Array(32));
    const tampered = { ...real, url: 'https://attacker3.example', load: 0 };
    await withPlacement(
      { registry: async () => [forgedUnsigned, forgedWrongKey, tampered, real] },
      async (placement, logs) => {
        expect(await place(placement)).toBe('https://real.example');
        expect(logs).toHaveLength(3);
        expect(logs.join('\n')).toMatch(/"verdict":"unsigned"/);
        expect(logs.join('\n')).toMatch(/"verdict":"bad_signature"/);
        expect(logs.join('\n')).toMatch(/"node_id":"https:\/\/attacker2.example"/);
      },
    );
  });

  it('gives no room to a replayed old entry', async () => {
    const old = node('https://old.example', 0, 100);
    old.updated_at = new Date(Date.now() - 60_000).toISOString();
    const entries = await signed([old, node('https://live.example', 50, 100)]);
    await withPlacement({ registry: async () => entries }, async (placement) => {
      expect(await place(placement)).toBe('https://live.example');
    });
  });

  it('refuses plain http to a public address unless MEDIA_NODE_ALLOW_HTTP; loopback and private networks may', async () => {
    const publicHttp = await signed([node('http://203.0.113.7:8081', 0, 100), node('https://tls.example', 90, 100)]);
    await withPlacement({ registry: async () => publicHttp }, async (placement, logs) => {
      expect(await place(placement)).toBe('https://tls.example');
      expect(logs.join('\n')).toMatch(/"verdict":"insecure_url"/);
    });
    await withPlacement({ allowHttp: true, registry: async () => publicHttp }, async (placement) => {
      expect(await place(placement)).toBe('http://203.0.113.7:8081');
    });
    for (const local of ['http://127.0.0.1:8081', 'http://10.1.2.3:8081', 'http://192.168.0.9', 'http://[::1]:8081']) {
      const entries = await signed([node(local, 0, 100), node('https://tls.example', 90, 100)]);
      await withPlacement({ registry: async () => entries }, async (placement) => {
        expect(await place(placement)).toBe(local);
      });
    }
  });

  it('offers the live nodes least loaded first, draining and full ones not at all', async () => {
    const nodes = [
      node('https://a', 50, 100),
      node('https://b', 30, 200),
      node('https://c', 5, 20),
      node('https://d', 0, 100, true),
      node('https://e', 100, 100),
    ];
    await withPlacement({ registry: () => signed(nodes) }, async (placement) => {
      expect(await placement.candidates()).toEqual(['https://b', 'https://c', 'https://a']);
    });
  });

  it('offers the nodes the room uses first, in the order it started using them, while the registry has room on them', async () => {
    let nodes = [node('https://a', 10, 100), node('https://b', 50, 100), node('https://c', 0, 100)];
    await withPlacement({ registry: () => signed(nodes) }, async (placement) => {
      placement.assign('p1', 'https://b');
      placement.assign('p2', 'https://a');
      expect(await placement.candidates()).toEqual(['https://b', 'https://a', 'https://c']);
      nodes = [node('https://a', 10, 100), node('https://b', 100, 100), node('https://c', 0, 100)];
      expect(await placement.candidates()).toEqual(['https://a', 'https://c']);
      expect(placement.nodesInUse()).toEqual(['https://b', 'https://a']);
      expect(placement.participantsOn('https://b')).toEqual(['p1']);
    });
  });

  it("offers the MEDIA_NODE_URL nodes in their order without a registry, the room's own first", async () => {
    const down = async (): Promise<MediaNodeRegistration[]> => {
      throw new Error('registry down');
    };
    await withPlacement({ staticUrls: ['http://a', 'http://b'], registry: down }, async (placement) => {
      expect(await placement.candidates()).toEqual(['http://a', 'http://b']);
      placement.assign('p1', 'http://b');
      expect(await placement.candidates()).toEqual(['http://b', 'http://a']);
      await placement.release('http://b');
      expect(await placement.candidates()).toEqual(['http://a']);
      await placement.release('http://a');
      // Every node lost lately: a restarted one may be back on its URL, better than none.
      expect(await placement.candidates()).toEqual(['http://b', 'http://a']);
    });
  });

  it('pins a room to the least-loaded node and keeps it there when a registry read misses that node', async () => {
    let nodes = [node('https://a', 10, 100), node('https://b', 50, 100)];
    await withPlacement({ registry: () => signed(nodes) }, async (placement) => {
      expect(await place(placement)).toBe('https://a');
      nodes = [node('https://b', 0, 100)];
      expect(await place(placement)).toBe('https://a');
    });
  });

  it('places the room again once its node is released as unreachable', async () => {
    let nodes = [node('https://a', 10, 100)];
    await withPlacement({ registry: () => signed(nodes) }, async (placement) => {
      expect(await place(placement)).toBe('https://a');
      nodes = [node('https://a', 10, 100), node('https://b', 20, 100)];
      await placement.release('https://other');
      expect(await place(placement)).toBe('https://a');
      await placement.release('https://a');
      expect(await place(placement)).toBe('https://b');
    });
  });

  it('keeps away from a released node while the registry still lists it (its entry outlives it)', async () => {
    const nodes = [node('https://a', 0, 100), node('https://b', 50, 100)];
    await withPlacement({ registry: () => signed(nodes) }, async (placement) => {
      expect(await place(placement)).toBe('https://a');
      await placement.release('https://a');
      expect(await place(placement)).toBe('https://b');
    });
  });

  it('leaves a node after two calls in a row time out, and marks it suspect for every room; an answer resets the count', async () => {
    const suspects = new SuspectNodes();
    const nodes = [node('https://a', 0, 100), node('https://b', 50, 100)];
    await withPlacement({ registry: () => signed(nodes), suspects }, async (placement, logs) => {
      expect(await place(placement)).toBe('https://a');
      await placement.timedOut('https://a');
      await placement.answered('https://a');
      await placement.timedOut('https://a');
      expect(await place(placement)).toBe('https://a');
      expect(suspects.marks.size).toBe(0);

      await placement.timedOut('https://a');
      expect(suspects.marks).toEqual(new Map([['https://a', SUSPECT_NODE_TTL_MS]]));
      expect(logs.join('\n')).toMatch(/media node stopped answering/);
      expect(await place(placement)).toBe('https://b');
    });
    // Another room, which never called node a, passes it over too.
    await withPlacement({ registry: () => signed(nodes), suspects }, async (placement) => {
      expect(await place(placement)).toBe('https://b');
    });
  });

  it("counts each node's timeouts alone: another node answering does not reset them", async () => {
    const suspects = new SuspectNodes();
    const nodes = [node('https://a', 0, 100), node('https://b', 50, 100)];
    await withPlacement({ registry: () => signed(nodes), suspects }, async (placement) => {
      expect(await place(placement)).toBe('https://a');
      await placement.timedOut('https://a');
      await placement.answered('https://b');
      await placement.timedOut('https://a');
      expect(suspects.marks.has('https://a')).toBe(true);
    });
  });

  it('places a room on a suspect node only when no other is left, and its first answer clears the suspicion', async () => {
    const suspects = new SuspectNodes();
    await suspects.repository.markMediaNodeSuspect('https://a', SUSPECT_NODE_TTL_MS);
    await withPlacement(
      { registry: () => signed([node('https://a', 0, 100), node('https://b', 100, 100)]), suspects },
      async (placement) => {
        expect(await place(placement)).toBe('https://a');
        expect(suspects.marks.has('https://a')).toBe(true);
        await placement.answered('https://a');
        expect(suspects.marks.has('https://a')).toBe(false);
      },
    );
    // A room on a node that was not suspect when it was placed clears nobody's suspicion.
    await withPlacement({ registry: () => signed([node('https://c', 0, 100)]), suspects }, async (placement) => {
      expect(await place(placement)).toBe('https://c');
      await suspects.repository.markMediaNodeSuspect('https://c', SUSPECT_NODE_TTL_MS);
      await placement.answered('https://c');
      expect(suspects.marks.has('https://c')).toBe(true);
    });
  });

  it('places rooms as before when the store cannot say which nodes are suspect', async () => {
    const suspects = new SuspectNodes();
    suspects.repository.listSuspectMediaNodes = async () => {
      throw new Error('store down');
    };
    await withPlacement(
      { registry: () => signed([node('https://a', 0, 100), node('https://b', 50, 100)]), suspects },
      async (placement) => {
        expect(await place(placement)).toBe('https://a');
      },
    );
  });

  it('falls back to MEDIA_NODE_URL when the registry is unreachable or empty, else media_unavailable', async () => {
    const down = async (): Promise<MediaNodeRegistration[]> => {
      throw new Error('registry down');
    };
    await withPlacement({ staticUrls: ['http://static'], registry: down }, async (placement) => {
      expect(await place(placement)).toBe('http://static');
    });
    await withPlacement({ registry: async () => [] }, async (placement) => {
      await expect(place(placement)).rejects.toBeInstanceOf(MediaCallError);
    });
  });
});
