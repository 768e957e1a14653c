import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorEnvelopeSchema } from '../../shared/src/errors.ts';
import { api, createRoom, joinRoom } from './rest-support.ts';

/**
 * Property-based fuzzing of every REST route: random methods, ids, headers and bodies (JSON that
 * almost fits, JSON that does not, and text that is not JSON). Every answer is a documented status
 * with a JSON body (the error envelope for every refusal), never a 500; and a room that nobody
 * changed legitimately is unchanged afterwards. Runs on both stores; seeded.
 */

const DOCUMENTED = new Set([200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 429]);

const text = (maxLength: number) => fc.string({ maxLength, unit: 'binary' });

describe('fuzzing the REST routes', () => {
  it('answers every request with a documented status and JSON, and changes nothing by mistake', async () => {
    const room = await createRoom({ name: 'Fuzzed room', max_publishers: 3 });
    const member = await joinRoom(room.id, 'Member');
    const roomBefore = (await (await api(`/api/v1/rooms/${room.id}`)).json()) as Record<string, unknown>;

    const roomId = fc.oneof(
      fc.constant(room.id),
      fc.stringMatching(/^[A-Za-z0-9_-]{22}$/),
      text(40).map((value) => encodeURIComponent(value)),
    );
    const path = fc.oneof(
      fc.constant('/api/v1/rooms'),
      roomId.map((id) => `/api/v1/rooms/${id}`),
      fc
        .tuple(roomId, fc.constantFrom('join', 'leave', 'token'))
        .map(([id, action]) => `/api/v1/rooms/${id}/${action}`),
      fc.constant('/health'),
    );
    const body = fc
      .oneof(
        fc.record(
          { name: text(120), max_publishers: fc.oneof(fc.integer(), fc.double(), text(5)) },
          { requiredKeys: [] },
        ),
        fc.record({ display: text(80) }, { requiredKeys: [] }),
        fc.jsonValue({ maxDepth: 4 }),
      )
      .map((value) => JSON.stringify(value));
    const rawBody = fc.oneof(body, text(300), fc.constant(undefined));
    const authorization = fc.oneof(
      fc.constant(undefined),
      fc.constant(`Bearer ${member.token}`),
      text(60).map((value) => `Bearer ${value.replace(/[\r\n]/g, '')}`),
      fc.constant(`Bearer ${member.token.slice(0, -2)}xx`),
    );

    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH'),
        path,
        rawBody,
        authorization,
        fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded'),
        async (method, target, payload, auth, contentType) => {
          const headers: Record<string, string> = { 'content-type': contentType };
          if (auth) headers.authorization = auth.replace(/[^\t\x20-\x7e]/g, '');
          // A leave with the member's real token is a legitimate change: keep the member in the room.
          if (target.endsWith('/leave') && auth === `Bearer ${member.token}`) delete headers.authorization;
          const response = await api(target, {
            method,
            headers,
            body: method === 'GET' ? undefined : payload,
          });
          expect(DOCUMENTED.has(response.status), `${method} ${target} → ${response.status}`).toBe(true);
          expect(response.headers.get('content-type') ?? '').toMatch(/^application\/json/);
          const json: unknown = await response.json();
          if (response.status >= 400) ErrorEnvelopeSchema.parse(json);
        },
      ),
      { numRuns: 150, seed: 12_009 },
    );

    // Random creates and joins make new rooms and tokens; none of it touched this room.
    const roomAfter = (await (await api(`/api/v1/rooms/${room.id}`)).json()) as Record<string, unknown>;
    expect({ ...roomAfter, expires_at: undefined }).toEqual({ ...roomBefore, expires_at: undefined });
  }, 30_000);
});
