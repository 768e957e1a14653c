import { z } from 'zod';

/** Raised when environment variables do not satisfy a runtime's config schema; names each bad variable. */
export class ConfigError extends Error {
  readonly variables: string[];

  constructor(issues: z.core.$ZodIssue[]) {
    const lines = issues.map((issue) => `${issue.path.join('.') || '(config)'}: ${issue.message}`);
    super(`Invalid configuration: ${lines.join('; ')}`);
    this.name = 'ConfigError';
    this.variables = [...new Set(issues.map((issue) => String(issue.path[0] ?? '')))];
  }
}

/** Parses a flat string-valued environment with a zod schema, or throws ConfigError. */
export function parseEnvironment<S extends z.ZodType>(schema: S, source: Record<string, unknown>): z.output<S> {
  // Empty strings mean "unset" for every variable: `FOO=` in a .env file must not count as a value.
  const cleaned = Object.fromEntries(Object.entries(source).filter(([, value]) => value !== ''));
  const result = schema.safeParse(cleaned);
  if (!result.success) throw new ConfigError(result.error.issues);
  return result.data;
}

const encoder = new TextEncoder();

/** A shared secret for HMAC signing: at least 32 bytes, so it cannot be brute-forced offline. */
export const SecretSchema = z
  .string({ error: 'is required' })
  .refine((value) => encoder.encode(value).byteLength >= 32, { message: 'must be at least 32 bytes long' });

export const PositiveIntSchema = (defaultValue: number, max: number) =>
  z.coerce.number().int().min(1).max(max).default(defaultValue);

export const LogLevelSchema = z.enum(['debug', 'info', 'warn', 'error']).default('info');
export type LogLevel = z.infer<typeof LogLevelSchema>;

/** `STUN_SERVER` / `TURN_SERVER` take one ICE URL, e.g. `stun:stun.example.org:3478`. */
export const IceUrlEnvSchema = z.string().regex(/^(stun|stuns|turn|turns):[^\s]+$/, 'must be a stun:/turn: URL');
