import { afterEach, describe, expect, it, vi } from 'vitest';
import { newId } from '../../shared/src/ids.ts';
import { HealthResponseSchema, JoinRoomResponseSchema, RoomSchema } from '../../shared/src/rest.ts';
import { createRoom, expectError, fetchWithEnv } from './rest-support.ts';

/** Behaviour that depends on configuration: each test runs the Worker's fetch with other bindings. */

const post = (body: unknown, headers: Record<string, string> = {}) => ({
  method: 'POST',
  headers: { 'Content-Type': 'application/json', ...headers },
  body: JSON.stringify(body),
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe('a misconfigured edge', () => {
  it.each([
    ['missing', undefined],
    ['shorter than 32 bytes', 'x'.repeat(31)],
  ])('refuses every request when JWT_SECRET is %s, and says why in the logs', async (_label, secret) => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => {});
    for (const [path, init] of [
      ['/health', undefined],
      ['/api/v1/rooms', post({ name: 'r' })],
    ] as const) {
      const response = await fetchWithEnv({ JWT_SECRET: secret }, path, init);
      const error = await expectError(response, 500, 'internal_error');
      expect(error.message).toMatch(/misconfigured/);
      expect(JSON.stringify(error)).not.toContain('JWT_SECRET');
    }
    const lines = logged.mock.calls.map(([line]) => JSON.parse(String(line)));
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 'error',
        message: 'refusing to serve: invalid configuration',
        variables: 'JWT_SECRET',
        detail: expect.stringMatching(/JWT_SECRET/),
      }),
    );
    if (secret) expect(JSON.stringify(lines)).not.toContain(secret);
  });
});

describe('webhook settings', () => {
  it.each([
    ['a URL without a secret', { WEBHOOK_URL: 'https://app.example/hooks' }],
    ['a secret without a URL', { WEBHOOK_SECRET: `whsec_${'A'.repeat(44)}` }],
    ['a secret that is not whsec_ base64', { WEBHOOK_URL: 'https://app.example/hooks', WEBHOOK_SECRET: 'plain' }],
  ])('refuses to serve with %s', async (_label, overrides) => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => {});
    await expectError(await fetchWithEnv(overrides, '/health'), 500, 'internal_error');
    const lines = logged.mock.calls.map(([line]) => JSON.parse(String(line)));
    expect(lines).toContainEqual(expect.objectContaining({ variables: expect.stringMatching(/WEBHOOK_SECRET/) }));
  });
});

describe('API_KEY', () => {
  const apiKey = 'server-to-server-key-0123456789';

  it('makes room creation require the key as a bearer token', async () => {
    const withKey = { API_KEY: apiKey };
    const missing = await fetchWithEnv(withKey, '/api/v1/rooms', post({ name: 'r' }));
    await expectError(missing, 401, 'unauthorized');
    expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer/);
    for (const wrong of [`${apiKey}x`, apiKey.slice(1), 'x']) {
      const response = await fetchWithEnv(
        withKey,
        '/api/v1/rooms',
        post({ name: 'r' }, { Authorization: `Bearer ${wrong}` }),
      );
      await expectError(response, 401, 'unauthorized');
    }
    const created = await fetchWithEnv(
      withKey,
      '/api/v1/rooms',
      post({ name: 'r' }, { Authorization: `Bearer ${apiKey}` }),
    );
    expect(created.status).toBe(201);
    const room = RoomSchema.parse(await created.json());

    // Joining stays open: participants hold no API key.
    const joined = await fetchWithEnv(withKey, `/api/v1/rooms/${room.id}/join`, post({ display: 'Alice' }));
    expect(joined.status).toBe(200);
  });
});

describe('ALLOWED_ORIGINS', () => {
  const origins = { ALLOWED_ORIGINS: 'https://app.example, https://admin.example' };

  it('answers CORS only for the listed origins', async () => {
    const allowed = await fetchWithEnv(origins, '/health', { headers: { Origin: 'https://admin.example' } });
    expect(allowed.headers.get('access-control-allow-origin')).toBe('https://admin.example');
    expect(allowed.headers.get('vary')).toContain('Origin');
    const other = await fetchWithEnv(origins, '/health', { headers: { Origin: 'https://evil.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    const preflight = await fetchWithEnv(origins, '/api/v1/rooms', {
      method: 'OPTIONS',
      headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' },
    });
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('STUN_SERVER and TURN_SERVER', () => {
  it('hands out STUN, and TURN with credentials minted for the participant', async () => {
    const room = await createRoom();
    const ice = {
      STUN_SERVER: 'stun:stun.example.org:3478',
      TURN_SERVER: 'turn:turn.example.org:3478?transport=udp',
      TURN_SECRET: 'turn-shared-secret-for-tests-0123456789',
      TURN_TTL_SECONDS: '600',
    };
    const before = Math.floor(Date.now() / 1000);
    const response = await fetchWithEnv(ice, `/api/v1/rooms/${room.id}/join`, post({ display: 'Alice' }));
    const joined = JoinRoomResponseSchema.parse(await response.json());
    const [stun, turn] = joined.ice_servers;
    expect(stun).toEqual({ urls: 'stun:stun.example.org:3478' });
    expect(turn?.urls).toBe('turn:turn.example.org:3478?transport=udp');
    const [expiry, participantId] = turn!.username!.split(':');
    expect(participantId).toBe(joined.participant_id);
    expect(Number(expiry)).toBeGreaterThanOrEqual(before + 600);
    expect(Number(expiry)).toBeLessThanOrEqual(Math.floor(Date.now() / 1000) + 600);
    const key = await crypto.subtle.importKey(
      'raw',
      new TextEncoder().encode(ice.TURN_SECRET),
      { name: 'HMAC', hash: 'SHA-1' },
      false,
      ['verify'],
    );
    const mac = Uint8Array.from(atob(turn!.credential!), (char) => char.charCodeAt(0));
    expect(await crypto.subtle.verify('HMAC', key, mac, new TextEncoder().encode(turn!.username!))).toBe(true);
  });
});

describe('an unreachable Upstash', () => {
  // Nothing listens on the discard port of the loopback interface.
  const down = { UPSTASH_REDIS_REST_URL: 'http://127.0.0.1:9', UPSTASH_REDIS_REST_TOKEN: 'x'.repeat(32) };

  it('makes /health answer 503 with the store down', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => {});
    const response = await fetchWithEnv(down, '/health');
    expect(response.status).toBe(503);
    expect(HealthResponseSchema.parse(await response.json())).toMatchObject({
      status: 'degraded',
      checks: { store: { status: 'down', detail: 'upstash: unreachable' } },
    });
  });

  it('makes API calls answer 503 service_unavailable with Retry-After', async () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => {});
    const response = await fetchWithEnv(down, '/api/v1/rooms', post({ name: 'Secret Name' }));
    await expectError(response, 503, 'service_unavailable');
    expect(response.headers.get('retry-after')).toBe('5');
    await expectError(await fetchWithEnv(down, `/api/v1/rooms/${newId()}`), 503, 'service_unavailable');
    // The store error quotes the command (with the room name): it must not reach the logs.
    expect(JSON.stringify(logged.mock.calls)).not.toContain('Secret Name');
  });
});

describe('API_RATE_LIMITER', () => {
  it('lets requests through when the limiter itself fails', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => {});
    const broken: RateLimit = { limit: () => Promise.reject(new Error('storage busy')) };
    const response = await fetchWithEnv({ API_RATE_LIMITER: broken }, '/api/v1/rooms', {
      ...post({ name: 'r' }),
      headers: { 'Content-Type': 'application/json', 'CF-Connecting-IP': '192.0.2.1' },
    });
    expect(response.status).toBe(201);
  });
});
