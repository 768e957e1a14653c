import { createExecutionContext, env, SELF, waitOnExecutionContext } from 'cloudflare:test';
import { expect } from 'vitest';
import { type ErrorCode, ErrorEnvelopeSchema } from '../../shared/src/errors.ts';
import { type JoinRoomResponse, JoinRoomResponseSchema, type Room, RoomSchema } from '../../shared/src/rest.ts';
import { app } from '../../workers/src/app.ts';
import type { Env } from '../../workers/src/env.ts';

/** Helpers shared by the REST suites (rest*.test.ts); they run against whichever store the project binds. */

export const BASE = 'http://example.com';
export const edgeEnv = env as unknown as Env;
export const expectedStore = edgeEnv.UPSTASH_REDIS_REST_URL ? 'upstash' : 'embedded';

export const api = (path: string, init?: RequestInit) => SELF.fetch(`${BASE}${path}`, init);

export const postJson = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  api(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

/** The same Worker code with other bindings (config variants), as a fresh isolate would see them. */
export async function fetchWithEnv(overrides: Partial<Env>, path: string, init?: RequestInit): Promise<Response> {
  const ctx = createExecutionContext();
  const response = await app.fetch(new Request(`${BASE}${path}`, init), { ...edgeEnv, ...overrides }, ctx);
  await waitOnExecutionContext(ctx);
  return response;
}

export async function createRoom(body: unknown = { name: 'Test room' }): Promise<Room> {
  const response = await postJson('/api/v1/rooms', body);
  expect(response.status).toBe(201);
  return RoomSchema.parse(await response.json());
}

export async function joinRoom(roomId: string, display = 'Alice'): Promise<JoinRoomResponse> {
  const response = await postJson(`/api/v1/rooms/${roomId}/join`, { display });
  expect(response.status).toBe(200);
  return JoinRoomResponseSchema.parse(await response.json());
}

/** Asserts the contract's error answer: status, JSON envelope with the code, and a request id. */
export async function expectError(response: Response, status: number, code: ErrorCode) {
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  expect(response.headers.get('x-request-id')).toBeTruthy();
  const body = ErrorEnvelopeSchema.parse(await response.json());
  expect(body.error.code).toBe(code);
  return body.error;
}
