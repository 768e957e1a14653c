import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

/**
 * The server SDK's types are generated from the Worker's OpenAPI document: the committed file must be
 * what `npm run generate:server-sdk` writes today, or a route change went unnoticed by the SDK.
 */

const run = promisify(execFile);
const generator = path.resolve(import.meta.dirname, '../../server-sdk/scripts/generate-types.ts');

describe('the server SDK generated types', () => {
  it('match the OpenAPI document the Worker serves (the generator exits 1 on a stale file)', async () => {
    const result = await run(process.execPath, [generator, '--check']).catch((error) => error);
    expect(result.stderr).toBe('');
    expect(result.code ?? 0).toBe(0);
  }, 60_000);
});
