import { readFileSync, realpathSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildMediaNode, MEDIA_NODE_ENTRY, MEDIA_NODE_LAUNCHER } from '../../scripts/build-media-node.ts';
import { MediaNodeProcess } from './harness.ts';

/**
 * The media node runs as one bundle everywhere (scripts/build-media-node.ts), started by one launcher
 * (media-node/launch.sh) that sets its process options: `npm start`, the tests and benchmarks start it
 * through scripts/stack.ts; the Dockerfile and `npm run media-node` must start the same launcher.
 */
const root = new URL('../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

/** What the launcher sets: its exported variables and the options on its `exec` line before the entry. */
function launcherSettings(): { environment: Record<string, string>; options: string[] } {
  const script = read(MEDIA_NODE_LAUNCHER);
  const environment = Object.fromEntries(
    [...script.matchAll(/^export (\w+)=(\S+)$/gm)].map(([, name, value]) => [name!, value!]),
  );
  const exec = /^exec "\$\{NODE_BINARY:-node\}" (.*) "\$\(dirname "\$0"\)\/dist\/main\.mjs"$/m.exec(script);
  if (!exec) throw new Error(`${MEDIA_NODE_LAUNCHER} has no exec line of the expected form`);
  return { environment, options: exec[1]!.split(' ').filter(Boolean) };
}

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
  it('is what the Dockerfile and `npm run media-node` start, through the one launcher', () => {
    const dockerfile = read('media-node/Dockerfile');
    const cmd = dockerfile.split('\n').find((line) => line.startsWith('CMD '));
    expect(JSON.parse(cmd!.slice('CMD '.length))).toEqual([MEDIA_NODE_LAUNCHER]);
    expect(dockerfile).toContain(`COPY ${MEDIA_NODE_LAUNCHER} ./media-node/`);
    // The launcher owns the process settings: the image sets none of its own.
    for (const name of Object.keys(launcherSettings().environment)) expect(dockerfile).not.toContain(name);
    const scripts = JSON.parse(read('package.json')).scripts as Record<string, string>;
    expect(scripts['media-node']).toBe(`node scripts/build-media-node.ts && ${MEDIA_NODE_LAUNCHER}`);
    // The image's build context lets in what its stages copy.
    const context = read('media-node/Dockerfile.dockerignore').split('\n');
    expect(context).toContain('!scripts/build-media-node.ts');
    expect(context).toContain(`!${MEDIA_NODE_LAUNCHER}`);
  });

  it("runs as Node itself with the launcher's settings: no shell left in between", async () => {
    const { environment, options } = launcherSettings();
    expect(Object.keys(environment).length + options.length).toBeGreaterThan(0);
    const node = await MediaNodeProcess.start();
    try {
      const argv = readFileSync(`/proc/${node.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      const env = readFileSync(`/proc/${node.pid}/environ`, 'utf8').split('\0');
      // The launcher exec'd Node: the process the stack started and signals is the node, not a shell.
      expect(realpathSync(`/proc/${node.pid}/exe`)).toBe(realpathSync(process.execPath));
      expect(argv.slice(1, -1)).toEqual(options);
      expect(argv.at(-1)).toMatch(new RegExp(`${MEDIA_NODE_ENTRY.replaceAll('.', '\\.')}$`));
      for (const [name, value] of Object.entries(environment)) expect(env).toContain(`${name}=${value}`);
    } finally {
      await node.stop();
    }
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
