import { randomBytes } from 'node:crypto';
import { Redis } from '@upstash/redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RegistryClient, RegistryHeartbeat } from '../../media-node/src/registry.ts';
import { startUpstashCompatServer, type UpstashCompatServer } from '../../scripts/upstash-compat-server.ts';
import { newId } from '../../shared/src/ids.ts';
import { createLogger, type Logger } from '../../shared/src/log.ts';
import {
  MEDIA_NODE_REGISTRY_KEY_PREFIX,
  MEDIA_NODE_REGISTRY_SET,
  MediaNodeRegistrationSchema,
  mediaControlPath,
} from '../../shared/src/media-control.ts';
import {
  checkRegistration,
  MEDIA_NODE_REGISTRATION_TTL_SECONDS as REGISTRATION_TTL_SECONDS,
} from '../../shared/src/media-node-trust.ts';
import { type RedisServer, redisServerInstalled, startRedisServer } from '../support/redis-server.ts';
import { describeWithTool } from '../support/required-tools.ts';
import { TestPublisher, waitFor } from '../support/werift-peers.ts';
import { MediaNodeProcess, publishThrough } from './harness.ts';

/** Records what the heartbeat writes: the unit seam in front of @upstash/redis. */
class RecordingClient implements RegistryClient {
  readonly values = new Map<string, { value: string; ex: number }>();
  readonly members = new Set<string>();
  failing = false;

  async set(key: string, value: string, options: { ex: number }) {
    if (this.failing) throw new Error('upstash down');
    this.values.set(key, { value, ex: options.ex });
  }
  async sadd(_: string, member: string) {
    this.members.add(member);
  }
  async srem(_: string, member: string) {
    this.members.delete(member);
  }
  async del(key: string) {
    this.values.delete(key);
  }
}

const secret = randomBytes(32);

describe('registry heartbeat (unit, injected client)', () => {
  it('writes a valid registration with a short TTL, reflects draining, survives failures and deregisters', async () => {
    const client = new RecordingClient();
    let status = { load: 3, capacity: 500, draining: false };
    const heartbeat = new RegistryHeartbeat({
      client,
      nodeId: 'node-a',
      url: 'http://10.0.0.5:8081',
      secret,
      status: () => status,
      logger: createLogger('error'),
      intervalMs: 60_000,
    });
    await heartbeat.start();
    const key = `${MEDIA_NODE_REGISTRY_KEY_PREFIX}node-a`;
    const written = client.values.get(key)!;
    expect(written.ex).toBe(REGISTRATION_TTL_SECONDS);
    expect(MediaNodeRegistrationSchema.parse(JSON.parse(written.value))).toMatchObject({
      id: 'node-a',
      url: 'http://10.0.0.5:8081',
      load: 3,
      capacity: 500,
      draining: false,
    });
    expect([...client.members]).toEqual(['node-a']);
    // Signed with MEDIA_NODE_SECRET: the edge trusts it as written, and not once a field is changed.
    const entry = MediaNodeRegistrationSchema.parse(JSON.parse(written.value));
    expect(await checkRegistration(entry, secret, { allowHttp: false })).toBe('trusted');
    expect(await checkRegistration({ ...entry, load: 0 }, secret, { allowHttp: false })).toBe('bad_signature');
    expect(await checkRegistration(entry, new Uint8Array(32), { allowHttp: false })).toBe('bad_signature');

    status = { ...status, draining: true };
    await heartbeat.beat();
    expect(JSON.parse(client.values.get(key)!.value).draining).toBe(true);

    client.failing = true;
    await expect(heartbeat.beat()).resolves.toBeUndefined();

    await heartbeat.stop();
    expect(client.values.has(key)).toBe(false);
    expect(client.members.size).toBe(0);
  });
});

/**
 * An Upstash that never answers: every call hangs. It notes when each heartbeat began: `sadd` is
 * called as a beat starts (`set` only once the entry is signed, which takes a varying while), and
 * `beforeBeat` says how things stood then.
 */
class HangingClient<T> implements RegistryClient {
  readonly beats: { at: number; before: T }[] = [];
  readonly beforeBeat: () => T;
  constructor(beforeBeat: () => T) {
    this.beforeBeat = beforeBeat;
  }
  set() {
    return new Promise<never>(() => {});
  }
  sadd() {
    this.beats.push({ at: performance.now(), before: this.beforeBeat() });
    return new Promise<never>(() => {});
  }
  srem() {
    return new Promise<never>(() => {});
  }
  del() {
    return new Promise<never>(() => {});
  }
}

describe('registry heartbeat against an Upstash that hangs', () => {
  it('gives up on each heartbeat after the call timeout and starts the next one only then', async () => {
    const warnings: string[] = [];
    const client = new HangingClient(
      () => warnings.filter((warning) => warning === 'registry heartbeat failed').length,
    );
    const logger: Logger = { ...createLogger('error'), warn: (message) => void warnings.push(message) };
    const heartbeat = new RegistryHeartbeat({
      client,
      nodeId: 'node-hang',
      url: 'http://10.0.0.5:8081',
      secret: new Uint8Array(32),
      status: () => ({ load: 0, capacity: 10, draining: false }),
      logger,
      intervalMs: 10,
      callTimeoutMs: 60,
    });
    await heartbeat.start();
    expect(warnings).toEqual(['registry heartbeat failed']);
    await waitFor(() => client.beats.length >= 3, { timeoutMs: 5_000, message: 'three heartbeats' });
    await heartbeat.stop();
    // Chained, not stacked: each beat began after the previous one had given up (timed out and
    // warned), and the interval after that (less a millisecond: timers run on the loop's clock).
    expect(client.beats.map((beat) => beat.before)).toEqual(client.beats.map((_, index) => index));
    const gaps = client.beats.slice(1).map((beat, index) => beat.at - client.beats[index]!.at);
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(60 + 10 - 2);
    expect(warnings.at(-1)).toBe('removing the registry entry failed');
  });
});

describeWithTool(redisServerInstalled() ? 'redis-server' : undefined, 'REQUIRE_REDIS')(
  'registry heartbeat against redis-server behind the Upstash-compatible endpoint',
  () => {
    let redis: RedisServer;
    let endpoint: UpstashCompatServer;
    const token = randomBytes(32).toString('base64url');

    beforeAll(async () => {
      redis = await startRedisServer();
      endpoint = await startUpstashCompatServer({ redisUrl: redis.url, token, logLevel: 'error' });
    });

    afterAll(async () => {
      await endpoint?.close();
      await redis?.stop();
    });

    it('registers the node while it runs, shows draining, and removes it on exit', async () => {
      const node = await MediaNodeProcess.start({
        UPSTASH_REDIS_REST_URL: endpoint.url,
        UPSTASH_REDIS_REST_TOKEN: token,
      });
      const publisher = await TestPublisher.create({ video: false });
      try {
        const client = new Redis({ url: endpoint.url, token });
        const key = `${MEDIA_NODE_REGISTRY_KEY_PREFIX}${node.nodeId}`;
        const registration = MediaNodeRegistrationSchema.parse(await client.get(key));
        expect(registration).toMatchObject({ id: node.nodeId, url: node.url, load: 0, draining: false });
        expect(await checkRegistration(registration, node.secret, { allowHttp: false })).toBe('trusted');
        expect(await client.smembers(MEDIA_NODE_REGISTRY_SET)).toContain(node.nodeId);
        const ttl = await client.ttl(key);
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(REGISTRATION_TTL_SECONDS);

        const roomId = newId();
        await publishThrough(node, roomId, newId(), publisher);
        node.signal('SIGTERM');
        await waitFor(async () => MediaNodeRegistrationSchema.parse(await client.get(key)).draining, {
          message: 'the registration to show draining',
        });

        await node.request('DELETE', mediaControlPath('closeRoom', roomId));
        expect(await node.exited).toBe(0);
        expect(await client.get(key)).toBeNull();
        expect(await client.smembers(MEDIA_NODE_REGISTRY_SET)).not.toContain(node.nodeId);
      } finally {
        await publisher.close();
        await node.stop();
      }
    });
  },
);
