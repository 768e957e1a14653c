import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildMediaNode, MEDIA_NODE_ARGS, MEDIA_NODE_ENTRY, MEDIA_NODE_ENV } from '../../scripts/build-media-node.ts';

/**
 * The media node runs as one bundle everywhere (scripts/build-media-node.ts): `npm start`, the tests
 * and benchmarks start it through scripts/stack.ts; the Dockerfile and `npm run media-node` must
 * start the same entry with the same options.
 */
const root = new URL('../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

/** The scripts the node starts: its main thread, its worker threads, the DTLS certificate's child process. */
const ENTRIES = ['main', 'media-worker', 'dtls-certificate-process'];

/**
 * What a bundled script loads when it starts: the bundle's files its static imports reach (chunks
 * included, not what it imports dynamically) and the packages they import.
 */
function staticImports(entry: string): { files: string[]; packages: string[] } {
  const dist = MEDIA_NODE_ENTRY.replace(/main\.mjs$/, '');
  const files = new Set<string>();
  const packages = new Set<string>();
  const pending = [`${entry}.mjs`];
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    if (files.has(file)) continue;
    files.add(file);
    const code = read(dist + file);
    for (const [, from, bare] of code.matchAll(
      /^(?:import|export)\s[^;]*?\sfrom\s*"([^"]+)";|^import\s*"([^"]+)";/gms,
    )) {
      const specifier = (from ?? bare)!;
      if (specifier.startsWith('./')) pending.push(specifier.slice(2));
      else packages.add(specifier);
    }
  }
  return { files: [...files], packages: [...packages] };
}

describe('media node bundle', () => {
  it('is what the Dockerfile and `npm run media-node` start, with the same options and environment', () => {
    const dockerfile = read('media-node/Dockerfile');
    const cmd = dockerfile.split('\n').find((line) => line.startsWith('CMD '));
    expect(JSON.parse(cmd!.slice('CMD '.length))).toEqual(['node', ...MEDIA_NODE_ARGS]);
    const environment = Object.entries(MEDIA_NODE_ENV).map(([name, value]) => `${name}=${value}`);
    for (const variable of environment) expect(dockerfile).toMatch(new RegExp(`^ +${variable}( \\\\)?$`, 'm'));
    const scripts = JSON.parse(read('package.json')).scripts as Record<string, string>;
    expect(scripts['media-node']).toBe(
      `node scripts/build-media-node.ts && ${environment.join(' ')} node ${MEDIA_NODE_ARGS.join(' ')}`,
    );
    // The image's build context lets in what its build stage copies.
    expect(read('media-node/Dockerfile.dockerignore').split('\n')).toContain('!scripts/build-media-node.ts');
  });

  it('bundles every module of the node and its workers: no TypeScript left to strip at run time', () => {
    buildMediaNode();
    for (const entry of ENTRIES) {
      const { files, packages } = staticImports(entry);
      expect(packages.length).toBeGreaterThan(0);
      // Only the bundle's own chunks, beside the entries: nothing to resolve against the sources.
      for (const file of files) expect(file).toMatch(/^[\w-]+\.mjs$/);
    }
  });

  it('loads in each thread only what it uses: memory per thread', () => {
    buildMediaNode();
    // The main thread serves the control API and links workers; it never reads a packet (werift: ~6 MB
    // of heap), and a node without Upstash never loads @upstash/redis (~1 MB): it is imported when configured.
    const main = staticImports('main');
    expect(main.packages).toContain('hono');
    expect(main.packages).not.toContain('werift');
    expect(main.packages).not.toContain('@upstash/redis');
    // A media worker loads zod and jose (~6 MB of heap) with its first relay from another node, not at start.
    const worker = staticImports('media-worker');
    expect(worker.packages).toContain('werift');
    expect(worker.packages).not.toContain('zod');
    expect(worker.packages).not.toContain('jose');
  });
});
