import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '../..');

/** A workspace package as an app installs it, in a consumer directory of its own. */
export interface PackedPackage {
  /** The consumer's directory: the package and its dependencies are in its node_modules. */
  dir: string;
  /** The files the tarball holds, relative to the package. */
  files: string[];
  /**
   * Type-checks `source` as the consumer's `consumer.ts` (strict, NodeNext, no skipLibCheck) with these
   * libs and `@types` packages (the app's own, e.g. `node` on a server); tsc's output.
   */
  typecheck(source: string, options: { lib: string[]; types?: string[] }): Promise<{ code: number; output: string }>;
  /** Runs `source` as the consumer's `runtime.mjs` in Node; its stdout. */
  runInNode(source: string): Promise<string>;
  remove(): Promise<void>;
}

/**
 * `npm pack` of a workspace package (which builds it through `prepack`), unpacked into a fresh
 * consumer's node_modules beside its declared dependencies only (linked from this repo's
 * node_modules): nothing else of the repo is in reach, so what resolves there resolves for an app.
 */
export async function packWorkspacePackage(name: string): Promise<PackedPackage> {
  const dir = await mkdtemp(path.join(tmpdir(), 'truegather-consumer-'));
  const { stdout } = await run('npm', ['pack', '--workspace', name, '--pack-destination', dir, '--json', '--silent'], {
    cwd: repoRoot,
  });
  const [packed] = JSON.parse(stdout) as [{ filename: string; files: { path: string }[] }];
  const packageDir = path.join(dir, 'node_modules', name);
  await mkdir(packageDir, { recursive: true });
  await run('tar', ['-xzf', path.join(dir, packed.filename), '-C', packageDir, '--strip-components=1']);
  const manifest = JSON.parse(await readFile(path.join(packageDir, 'package.json'), 'utf8')) as {
    dependencies?: Record<string, string>;
  };
  const install = async (dependency: string) => {
    const link = path.join(dir, 'node_modules', dependency);
    await mkdir(path.dirname(link), { recursive: true });
    await symlink(path.join(repoRoot, 'node_modules', dependency), link, 'dir');
  };
  for (const dependency of Object.keys(manifest.dependencies ?? {})) await install(dependency);
  return {
    dir,
    files: packed.files.map((file) => file.path),
    async typecheck(source, { lib, types = [] }) {
      for (const name of types) await install(`@types/${name}`);
      await writeFile(path.join(dir, 'consumer.ts'), source);
      const compilerOptions = {
        strict: true,
        noEmit: true,
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        lib,
        types,
      };
      await writeFile(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['consumer.ts'] }));
      const result = await run(path.join(repoRoot, 'node_modules/.bin/tsc'), ['-p', dir], { cwd: dir }).catch(
        (error: { code: number; stdout: string; stderr: string }) => error,
      );
      return { code: 'code' in result ? result.code : 0, output: `${result.stdout}${result.stderr}` };
    },
    async runInNode(source) {
      await writeFile(path.join(dir, 'runtime.mjs'), source);
      return (await run(process.execPath, ['runtime.mjs'], { cwd: dir })).stdout;
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
