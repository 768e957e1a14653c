import type { z } from 'zod';

/**
 * Raised when environment variables do not satisfy a runtime's config schema; names each bad variable.
 * Apart from config.ts's schemas so that code that only recognizes it (the media worker's error
 * mapping) does not load zod.
 */
export class ConfigError extends Error {
  readonly variables: string[];

  constructor(issues: z.core.$ZodIssue[]) {
    const lines = issues.map((issue) => `${issue.path.join('.') || '(config)'}: ${issue.message}`);
    super(`Invalid configuration: ${lines.join('; ')}`);
    this.name = 'ConfigError';
    this.variables = [...new Set(issues.map((issue) => String(issue.path[0] ?? '')))];
  }
}
