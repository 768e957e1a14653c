import { build } from 'esbuild';

/**
 * Bundles the demo page (client SDK + page script) into workers/public/assets/demo.js, which the
 * Worker serves as a static asset. wrangler runs this before `wrangler dev` and `wrangler deploy`.
 */
await build({
  entryPoints: ['client/demo/demo.ts'],
  outfile: 'workers/public/assets/demo.js',
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  logLevel: 'warning',
});
