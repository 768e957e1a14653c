import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * `@truegather/client` as an app installs it: `npm pack` (which builds it through `prepack`), the
 * tarball unpacked into a consumer's node_modules beside its declared dependencies only (linked from
 * this repo's node_modules), and nothing else of the repo in reach. Its types must resolve there
 * (tsc on a consumer file, without skipLibCheck) and its ESM must load in Node.
 */

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '../..');
const tsc = path.join(repoRoot, 'node_modules/.bin/tsc');

let consumerDir: string;
let packageDir: string;
let packedFiles: string[];

beforeAll(async () => {
  consumerDir = await mkdtemp(path.join(tmpdir(), 'truegather-client-consumer-'));
  const { stdout } = await run(
    'npm',
    ['pack', '--workspace', '@truegather/client', '--pack-destination', consumerDir, '--json', '--silent'],
    { cwd: repoRoot },
  );
  const [packed] = JSON.parse(stdout) as [{ filename: string; files: { path: string }[] }];
  packedFiles = packed.files.map((file) => file.path);
  packageDir = path.join(consumerDir, 'node_modules/@truegather/client');
  await mkdir(packageDir, { recursive: true });
  await run('tar', ['-xzf', path.join(consumerDir, packed.filename), '-C', packageDir, '--strip-components=1']);
  const manifest = JSON.parse(await readFile(path.join(packageDir, 'package.json'), 'utf8')) as {
    dependencies?: Record<string, string>;
  };
  for (const dependency of Object.keys(manifest.dependencies ?? {})) {
    const target = path.join(consumerDir, 'node_modules', dependency);
    await mkdir(path.dirname(target), { recursive: true });
    await symlink(path.join(repoRoot, 'node_modules', dependency), target, 'dir');
  }
}, 120_000);

afterAll(async () => {
  if (consumerDir) await rm(consumerDir, { recursive: true, force: true });
});

describe('the @truegather/client package', () => {
  it('ships only its build: ESM, source map and declarations', () => {
    expect(packedFiles).toContain('dist/index.js');
    expect(packedFiles).toContain('dist/types/client/src/index.d.ts');
    expect(packedFiles.filter((file) => !file.startsWith('dist/') && file !== 'package.json')).toEqual([]);
  });

  it("types resolve from the built declarations, the wire contract's included", async () => {
    await writeFile(
      path.join(consumerDir, 'consumer.ts'),
      [
        "import { TrueGatherClient, type ClientEvents, type Publisher, type StreamKind } from '@truegather/client';",
        "const client = new TrueGatherClient({ baseUrl: 'http://localhost:8080', roomId: 'r', display: 'Alice' });",
        'client.on("track_muted", ({ kind }) => {',
        '  const known: StreamKind = kind;',
        "  // @ts-expect-error kind is 'audio' | 'video': an unresolved (any) type would make this line an unused directive",
        '  const wrong: number = kind;',
        '  void known, wrong;',
        '});',
        "const data: ClientEvents['data'] = { from: 'p', data: 'hi', topic: 'chat' };",
        "const publisher: Publisher = { id: 'p', display: 'Bob', streams: [{ kind: 'audio', muted: false }] };",
        'void data, publisher;',
        '',
      ].join('\n'),
    );
    await writeFile(
      path.join(consumerDir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          lib: ['ES2023', 'DOM'],
          types: [],
        },
        files: ['consumer.ts'],
      }),
    );
    const result = await run(tsc, ['-p', consumerDir], { cwd: consumerDir }).catch((error) => error);
    expect(`${result.stdout ?? ''}${result.stderr ?? ''}`).toBe('');
    expect(result.code ?? 0).toBe(0);
  }, 60_000);

  it('loads in Node from dist and constructs a client', async () => {
    const script = [
      "import { TrueGatherClient, CLOSE_CODES, SIGNALING_SUBPROTOCOL } from '@truegather/client';",
      "const client = new TrueGatherClient({ baseUrl: 'http://localhost:8080', roomId: 'r', display: 'Alice' });",
      'let notJoined;',
      'try { client.participantId; } catch (error) { notJoined = error.message; }',
      'console.log(JSON.stringify({ roomId: client.roomId, state: client.state, notJoined, removed: CLOSE_CODES.removed, SIGNALING_SUBPROTOCOL }));',
    ].join('\n');
    await writeFile(path.join(consumerDir, 'runtime.mjs'), script);
    const { stdout } = await run(process.execPath, ['runtime.mjs'], { cwd: consumerDir });
    expect(JSON.parse(stdout)).toEqual({
      roomId: 'r',
      state: 'connecting',
      notJoined: 'not joined yet',
      removed: 4001,
      SIGNALING_SUBPROTOCOL: 'truegather.v1',
    });
  });
});
