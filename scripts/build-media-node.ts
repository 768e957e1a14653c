import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';

/**
 * The media node as it runs everywhere (`npm start`, the tests and benchmarks through
 * scripts/stack.ts, the Dockerfile): media-node/src/main.ts and its worker thread
 * (src/workers/media-worker.ts) bundled into media-node/dist/ as plain JavaScript. Node strips
 * TypeScript with a WebAssembly compiler that stays loaded in every thread that ran a .ts file
 * (~17 MB each, the main thread and every media worker); the bundle never loads it, which saves
 * ~39 MB of the idle node's ~160 MB (bench:media). Packages stay external: node_modules is loaded at
 * run time, with the reviewed werift patch applied on install. {@link MEDIA_NODE_LAUNCHER} starts it.
 *
 *   node scripts/build-media-node.ts
 */

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The bundled entry, relative to the repository root; its workers' scripts are beside it. */
export const MEDIA_NODE_ENTRY = 'media-node/dist/main.mjs';

/**
 * How the media node is started everywhere (`npm start`, the tests and benchmarks through
 * scripts/stack.ts, `npm run media-node`, the Dockerfile): a launcher that sets the process's
 * options (malloc arenas, V8's flags; what each is for is said there) and replaces itself with Node
 * running {@link MEDIA_NODE_ENTRY}. Relative to the repository root.
 */
export const MEDIA_NODE_LAUNCHER = 'media-node/launch.sh';

/**
 * Bundles the media node. Each file is written next to its place and renamed into it, so that a
 * node starting while another process rebuilds (tests run side by side) reads a whole file.
 */
export function buildMediaNode(): void {
  const result = buildSync({
    absWorkingDir: root,
    entryPoints: [
      'media-node/src/main.ts',
      'media-node/src/workers/media-worker.ts',
      'media-node/src/workers/dtls-certificate-process.ts',
    ],
    outdir: dirname(MEDIA_NODE_ENTRY),
    outExtension: { '.js': '.mjs' },
    entryNames: '[name]',
    // What a dynamic import loads (a relay's pulling end, sfu/room.ts) goes into a chunk of its own,
    // beside the entries, and is loaded only when used; code the entries share goes into chunks too.
    splitting: true,
    chunkNames: 'chunk-[hash]',
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node22',
    write: false,
    logLevel: 'warning',
  });
  for (const file of result.outputFiles) {
    mkdirSync(dirname(file.path), { recursive: true });
    const temporary = `${file.path}.${process.pid}.tmp`;
    writeFileSync(temporary, file.contents);
    renameSync(temporary, file.path);
  }
}

if (import.meta.main) buildMediaNode();
