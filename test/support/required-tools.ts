import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { describe } from 'vitest';

/** The first of `names` found executable on PATH (or as an absolute path), else undefined. */
export function findExecutable(...names: string[]): string | undefined {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  for (const name of names) {
    const candidates = name.includes('/') ? [name] : dirs.map((dir) => join(dir, name));
    for (const candidate of candidates) {
      try {
        accessSync(candidate, constants.X_OK);
        return candidate;
      } catch {
        // keep looking
      }
    }
  }
  return undefined;
}

/**
 * A describe() for a suite that needs an external tool. Without the tool it is skipped, unless the
 * REQUIRE_* flag is set (CI sets them): then the suite runs and fails loudly on `requireTool()`.
 */
export function describeWithTool(tool: string | undefined, requireFlag: string) {
  return tool || process.env[requireFlag] === '1' ? describe : describe.skip;
}

export function requireTool(tool: string | undefined, what: string, requireFlag: string): string {
  if (!tool) throw new Error(`${requireFlag}=1 but ${what} is not installed`);
  return tool;
}
