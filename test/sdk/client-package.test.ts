import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PackedPackage, packWorkspacePackage } from '../support/packed-package.ts';

/**
 * `@truegather/client` as an app installs it: packed, unpacked beside its declared dependencies only.
 * Its types must resolve there (the wire contract's included) and its ESM must load in Node.
 */

let packed: PackedPackage;

beforeAll(async () => {
  packed = await packWorkspacePackage('@truegather/client');
}, 120_000);

afterAll(async () => {
  await packed?.remove();
});

describe('the @truegather/client package', () => {
  it('ships only its build: ESM, source map and declarations', () => {
    expect(packed.files).toContain('dist/index.js');
    expect(packed.files).toContain('dist/types/client/src/index.d.ts');
    expect(packed.files.filter((file) => !file.startsWith('dist/') && file !== 'package.json')).toEqual([]);
  });

  it("types resolve from the built declarations, the wire contract's included", async () => {
    const source = [
      "import { TrueGatherClient, type ClientEvents, type Publisher, type StreamKind } from '@truegather/client';",
      "const client = new TrueGatherClient({ baseUrl: 'http://localhost:8080', roomId: 'r', display: 'Alice' });",
      "client.on('track_muted', ({ kind }) => {",
      '  const known: StreamKind = kind;',
      "  // @ts-expect-error kind is 'audio' | 'video': an unresolved (any) type would make this an unused directive",
      '  const wrong: number = kind;',
      '  void known, wrong;',
      '});',
      "const data: ClientEvents['data'] = { from: 'p', data: 'hi', topic: 'chat' };",
      "const publisher: Publisher = { id: 'p', display: 'Bob', streams: [{ kind: 'audio', muted: false }] };",
      'void data, publisher;',
    ].join('\n');
    expect(await packed.typecheck(source, { lib: ['ES2023', 'DOM'] })).toEqual({ code: 0, output: '' });
  }, 60_000);

  it('loads in Node from dist and constructs a client', async () => {
    const stdout = await packed.runInNode(
      [
        "import { TrueGatherClient, CLOSE_CODES, SIGNALING_SUBPROTOCOL } from '@truegather/client';",
        "const client = new TrueGatherClient({ baseUrl: 'http://localhost:8080', roomId: 'r', display: 'Alice' });",
        'let notJoined;',
        'try { client.participantId; } catch (error) { notJoined = error.message; }',
        'const removed = CLOSE_CODES.removed;',
        'console.log(JSON.stringify({ roomId: client.roomId, state: client.state, notJoined, removed, SIGNALING_SUBPROTOCOL }));',
      ].join('\n'),
    );
    expect(JSON.parse(stdout)).toEqual({
      roomId: 'r',
      state: 'connecting',
      notJoined: 'not joined yet',
      removed: 4001,
      SIGNALING_SUBPROTOCOL: 'truegather.v1',
    });
  });
});
