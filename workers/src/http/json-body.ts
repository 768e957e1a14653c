import type { Context } from 'hono';
import type { z } from 'zod';
import { LIMITS } from '../../../shared/src/limits.ts';
import { HttpError } from './errors.ts';

/**
 * Bodies up to this size are read and validated; larger ones are refused unread. It is well above
 * LIMITS.restBodyMaxBytes so that an oversized *field* (a 100 kB name) gets the 400 that names it.
 */
export const BODY_READ_MAX_BYTES = 256 * 1024;

const tooLarge = () =>
  new HttpError(413, 'payload_too_large', `request body is larger than ${LIMITS.restBodyMaxBytes} bytes`);

async function readCapped(request: Request): Promise<{ text: string; bytes: number }> {
  const declared = Number(request.headers.get('content-length') ?? 0);
  if (declared > BODY_READ_MAX_BYTES) throw tooLarge();
  if (!request.body) return { text: '', bytes: 0 };
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
    if (bytes > BODY_READ_MAX_BYTES) {
      await reader.cancel();
      throw tooLarge();
    }
    chunks.push(value);
  }
  const joined = new Uint8Array(bytes);
  let offset = 0;
  for (const chunk of chunks) {
    joined.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return { text: new TextDecoder().decode(joined), bytes };
}

/** Zod issues as `details`: where and what, never the rejected value itself. */
function issueDetails(error: z.ZodError) {
  return error.issues.slice(0, 20).map((issue) => ({ path: issue.path.join('.'), message: issue.message }));
}

/**
 * Reads and validates a JSON request body. The rule, in order:
 *  1. more than 256 KiB (declared or streamed) → 413 `payload_too_large`, unread;
 *  2. empty → 400 `bad_request`; not JSON → 400 `bad_request`;
 *  3. not valid for the schema → 400 `validation_failed` with the issues in `details`;
 *  4. valid but more than `maxBytes` (16 KiB; only whitespace padding can do that) → 413 `payload_too_large`.
 * The Content-Type is not checked: `curl -d` without `-H` sends JSON as a form type.
 */
export async function readJsonBody<S extends z.ZodType>(
  c: Context,
  schema: S,
  maxBytes: number = LIMITS.restBodyMaxBytes,
): Promise<z.output<S>> {
  return (await readJsonBodyText(c, schema, maxBytes)).data;
}

/** {@link readJsonBody}, with the exact text read (to check a digest a signature covers). */
export async function readJsonBodyText<S extends z.ZodType>(
  c: Context,
  schema: S,
  maxBytes: number = LIMITS.restBodyMaxBytes,
): Promise<{ data: z.output<S>; text: string }> {
  const { text, bytes } = await readCapped(c.req.raw);
  if (text.trim() === '') throw new HttpError(400, 'bad_request', 'request body is empty: send a JSON object');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new HttpError(400, 'bad_request', 'request body is not valid JSON');
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new HttpError(400, 'validation_failed', 'request body is invalid', issueDetails(parsed.error));
  }
  if (bytes > maxBytes) throw tooLarge();
  return { data: parsed.data, text };
}
