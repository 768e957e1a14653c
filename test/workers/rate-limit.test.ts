import { env } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ErrorEnvelopeSchema } from '../../shared/src/errors.ts';
import { newId } from '../../shared/src/ids.ts';
import type { Env } from '../../workers/src/env.ts';
import { STORE_CHECK_CACHE_MS } from '../../workers/src/routes/health.ts';
import { createRoom, expectError, fetchWithEnv, joinRoom } from './rest-support.ts';

/**
 * The per-client limit on every public route, run against a real limiter binding of 100 per minute
 * (STRICT_RATE_LIMITER, wrangler.toml's REST limit; upgrades get 600 in production), in place of
 * both bindings: the other suites run with a limit they never reach. Each test uses client addresses of its own: counts last the whole minute.
 */
const LIMIT = 100;
const strictLimiter = (env as unknown as { STRICT_RATE_LIMITER: RateLimit }).STRICT_RATE_LIMITER;
const strict: Partial<Env> = { API_RATE_LIMITER: strictLimiter, WS_RATE_LIMITER: strictLimiter };

/** A documentation-range address no other test uses. */
const freshAddress = () =>
  `2001:db8::${newId()
    .slice(0, 4)
    .toLowerCase()
    .replace(/[^0-9a-f]/g, 'a')}:${Math.floor(Math.random() * 0xffff).toString(16)}`;

type Send = (headers: Record<string, string>, overrides?: Partial<Env>) => Promise<Response>;

/**
 * The limiter counts in windows aligned to the wall clock (miniflare's as Cloudflare's: here one a
 * minute), so a burst that straddles a window's end starts counting again and its last request
 * passes. A burst starts with at least {@link BURST_ROOM_MS} of its window left (waiting for the next
 * window otherwise), and says so if it still straddled one.
 */
const WINDOW_MS = 60_000;
const BURST_ROOM_MS = 10_000;
async function inOneWindow(burst: () => Promise<void>): Promise<void> {
  const left = WINDOW_MS - (Date.now() % WINDOW_MS);
  if (left < BURST_ROOM_MS) await new Promise((resolve) => setTimeout(resolve, left + 100));
  const startedIn = Math.floor(Date.now() / WINDOW_MS);
  await burst();
  expect(Math.floor(Date.now() / WINDOW_MS), `the burst took over ${BURST_ROOM_MS} ms`).toBe(startedIn);
}

/** `send` is allowed LIMIT times for one client, then answered 429 with Retry-After; another client is not affected. */
async function expectLimited(
  send: Send,
  client: Record<string, string>,
  other: Record<string, string>,
  overrides: Partial<Env> = {},
) {
  await inOneWindow(async () => {
    const statuses = new Set<number>();
    for (let i = 0; i < LIMIT; i += 1) statuses.add((await send(client, { ...strict, ...overrides })).status);
    expect(statuses.has(429)).toBe(false);
    const refused = await send(client, { ...strict, ...overrides });
    await expectError(refused, 429, 'rate_limited');
    expect(refused.headers.get('retry-after')).toBe('60');
  });
  expect((await send(other, { ...strict, ...overrides })).status).not.toBe(429);
}

const cf = (address: string) => ({ 'CF-Connecting-IP': address });

// A burst may wait up to BURST_ROOM_MS for a window of its own.
describe('per-client rate limit', { timeout: 30_000 }, () => {
  it('limits REST creates per CF-Connecting-IP (invalid bodies count too: they cost work)', async () => {
    const send: Send = (headers, overrides) =>
      fetchWithEnv(overrides ?? {}, '/api/v1/rooms', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', ...headers },
        body: JSON.stringify({ name: '' }),
      });
    await expectLimited(send, cf(freshAddress()), cf(freshAddress()));
  });

  it('limits clients without any address header together, instead of not at all', async () => {
    const room = await createRoom();
    const send: Send = (headers, overrides) => fetchWithEnv(overrides ?? {}, `/api/v1/rooms/${room.id}`, { headers });
    await expectLimited(send, {}, cf(freshAddress()));
  });

  it('limits WebSocket upgrades, before the token is checked', async () => {
    const room = await createRoom();
    const join = await joinRoom(room.id);
    const upgrade =
      (token: string): Send =>
      (headers, overrides) =>
        fetchWithEnv(overrides ?? {}, `/ws?room_id=${room.id}&token=${token}`, {
          headers: { Upgrade: 'websocket', ...headers },
        });
    const client = cf(freshAddress());
    // Refused upgrades (a bad token) count: they are what a flood of reconnects looks like.
    await expectLimited(upgrade('not-a-token'), client, cf(freshAddress()));
    // A good token from the same client is refused too, without reaching the room.
    await expectError(await upgrade(join.token)(client, strict), 429, 'rate_limited');
  });

  it('limits GET room and /health', async () => {
    const room = await createRoom();
    await expectLimited(
      (headers, overrides) => fetchWithEnv(overrides ?? {}, `/api/v1/rooms/${room.id}`, { headers }),
      cf(freshAddress()),
      cf(freshAddress()),
    );
    await expectLimited(
      (headers, overrides) => fetchWithEnv(overrides ?? {}, '/health', { headers }),
      cf(freshAddress()),
      cf(freshAddress()),
    );
  });

  it('with CLIENT_IP_HEADER, keys on the address the trusted proxy appended, whatever else the client sends', async () => {
    const proxied = { CLIENT_IP_HEADER: 'X-Forwarded-For' } as Partial<Env>;
    const address = freshAddress();
    let n = 0;
    // The client varies CF-Connecting-IP and the start of X-Forwarded-For: it is still one client.
    const client = () => ({ 'CF-Connecting-IP': freshAddress(), 'X-Forwarded-For': `10.0.0.${n++ % 250}, ${address}` });
    const send = (headers: Record<string, string>) => fetchWithEnv({ ...strict, ...proxied }, '/health', { headers });
    await inOneWindow(async () => {
      const statuses = new Set<number>();
      for (let i = 0; i < LIMIT; i += 1) statuses.add((await send(client())).status);
      expect(statuses.has(429)).toBe(false);
      await expectError(await send(client()), 429, 'rate_limited');
    });
    // The address the client put first is not the one that counts.
    expect((await send({ 'X-Forwarded-For': `${address}, ${freshAddress()}` })).status).not.toBe(429);
  });

  it('refuses a CLIENT_IP_HEADER that is not a header name, naming the variable', async () => {
    vi.spyOn(console, 'error').mockImplementation(() => {});
    const response = await fetchWithEnv({ CLIENT_IP_HEADER: 'X-Real-IP: 1.2.3.4' } as Partial<Env>, '/health');
    expect(response.status).toBe(500);
    expect(ErrorEnvelopeSchema.parse(await response.json()).error.code).toBe('internal_error');
  });
});

describe('/health store check', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it(`is done at most once per ${STORE_CHECK_CACHE_MS / 1000} s per store, however often /health is asked`, async () => {
    const upstashUrl = `https://health-${newId().toLowerCase()}.upstash.test`;
    const realFetch = globalThis.fetch;
    const calls: string[] = [];
    vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      if (url.origin !== upstashUrl) return realFetch(input, init);
      calls.push(url.pathname);
      // PONG, as Upstash answers a single command and a pipeline (base64-encoded).
      const body = url.pathname === '/pipeline' ? [{ result: btoa('PONG') }] : { result: btoa('PONG') };
      return new Response(JSON.stringify(body), { headers: { 'content-type': 'application/json' } });
    });
    const upstash = { UPSTASH_REDIS_REST_URL: upstashUrl, UPSTASH_REDIS_REST_TOKEN: 't'.repeat(40) } as Partial<Env>;
    for (let i = 0; i < 20; i += 1) {
      const response = await fetchWithEnv(upstash, '/health');
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ status: 'ok', checks: { store: { detail: 'upstash' } } });
    }
    expect(calls).toHaveLength(1);

    // Once the cached check is older than the window, the next hit checks again.
    const now = Date.now();
    vi.spyOn(Date, 'now').mockReturnValue(now + STORE_CHECK_CACHE_MS + 1);
    expect((await fetchWithEnv(upstash, '/health')).status).toBe(200);
    expect(calls).toHaveLength(2);
  });
});
