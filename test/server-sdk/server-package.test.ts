import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PackedPackage, packWorkspacePackage } from '../support/packed-package.ts';

/**
 * `@truegather/server` as an app server installs it: packed, unpacked beside its declared
 * dependencies only (openapi-fetch, standardwebhooks, zod) and the app's Node types. Its generated
 * types must resolve there and its ESM must load in Node.
 */

let packed: PackedPackage;

beforeAll(async () => {
  packed = await packWorkspacePackage('@truegather/server');
}, 120_000);

afterAll(async () => {
  await packed?.remove();
});

describe('the @truegather/server package', () => {
  it('ships only its build', () => {
    expect(packed.files).toContain('dist/index.js');
    expect(packed.files).toContain('dist/types/server-sdk/src/index.d.ts');
    expect(packed.files.filter((file) => !file.startsWith('dist/') && file !== 'package.json')).toEqual([]);
  });

  it('types resolve: the routes, their bodies and the webhook events', async () => {
    const source = [
      "import { RoomService, WebhookReceiver, type WebhookEvent } from '@truegather/server';",
      "const service = new RoomService({ baseUrl: 'http://localhost:8080', apiKey: 'k' });",
      'export async function host(roomId: string): Promise<string> {',
      "  const room = await service.createRoom({ name: 'Standup' });",
      "  await service.muteParticipant(room.id, 'p', { kind: 'audio', muted: true });",
      "  // @ts-expect-error 'screen' is not a stream kind: an unresolved (any) type would make this an unused directive",
      "  await service.muteParticipant(roomId, 'p', { kind: 'screen', muted: true });",
      '  return room.admin_token;',
      '}',
      "export function hook(body: string, headers: Headers): WebhookEvent['type'] {",
      "  return new WebhookReceiver('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw').receive(body, headers).type;",
      '}',
    ].join('\n');
    expect(await packed.typecheck(source, { lib: ['ES2023'], types: ['node'] })).toEqual({ code: 0, output: '' });
  }, 60_000);

  it('loads in Node from dist', async () => {
    const stdout = await packed.runInNode(
      [
        "import { RoomService, TrueGatherApiError, WebhookReceiver, WebhookVerificationError } from '@truegather/server';",
        "const receiver = new WebhookReceiver('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');",
        'let refused;',
        "try { receiver.receive('{}', {}); } catch (error) { refused = error instanceof WebhookVerificationError; }",
        "const service = new RoomService({ baseUrl: 'http://127.0.0.1:1' });",
        'console.log(JSON.stringify({ refused, service: typeof service.createRoom, error: TrueGatherApiError.name }));',
      ].join('\n'),
    );
    expect(JSON.parse(stdout)).toEqual({ refused: true, service: 'function', error: 'TrueGatherApiError' });
  });
});
