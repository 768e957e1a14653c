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
    // The pool starts its workers from the scripts beside the entry (workers/pool.ts).
    const scripts = ['main', 'media-worker', 'dtls-certificate-worker'].map((name) =>
      MEDIA_NODE_ENTRY.replace(/main\.mjs$/, `${name}.mjs`),
    );
    for (const file of scripts) {
      const code = read(file);
      const imports = [...code.matchAll(/ from "([^"]+)";$/gm)].map((match) => match[1]!);
      expect(imports.length).toBeGreaterThan(0);
      expect(imports.filter((specifier) => specifier.startsWith('.') || specifier.endsWith('.ts'))).toEqual([]);
    }
  });

  it('starts the main thread without werift or the registry client: memory for what it never uses', () => {
    buildMediaNode();
    // The main thread serves the control API and links workers; it never reads a packet (werift: ~6 MB
    // of heap), and a node without Upstash never loads @upstash/redis (~1 MB): it is imported when configured.
    const main = read(MEDIA_NODE_ENTRY);
    const imports = [...main.matchAll(/^import .* from "([^"]+)";$/gm)].map((match) => match[1]!);
    expect(imports).toContain('hono');
    expect(imports).not.toContain('werift');
    expect(imports).not.toContain('@upstash/redis');
  });
});
