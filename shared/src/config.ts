import { z } from 'zod';
import { ConfigError } from './config-error.ts';

export { ConfigError } from './config-error.ts';

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
