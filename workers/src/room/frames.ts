import type { z } from 'zod';
import type { ErrorCode } from '../../../shared/src/errors.ts';
import { LIMITS, utf8Length } from '../../../shared/src/limits.ts';
import {
  type ClientFrame,
  ClientFrameSchema,
  ClientPayloadSchemas,
  FrameEnvelopeSchema,
  RequestIdSchema,
  type ServerFrameType,
  type ServerPayload,
  serverFrameOf,
} from '../../../shared/src/signaling.ts';

/**
 * Frames above this are not worth an answer: the socket is closed with 1009. Between
 * LIMITS.frameMaxBytes and this cap the client gets `message_too_large` and the socket stays up.
 */
export const FRAME_HARD_CAP_BYTES = 1024 * 1024;

export type DecodedFrame =
  | { ok: true; frame: ClientFrame }
  | { ok: false; tooLarge: true }
  | { ok: false; tooLarge: false; code: ErrorCode; message: string; requestId?: string };

const isClientFrameType = (type: string): type is keyof typeof ClientPayloadSchemas =>
  Object.hasOwn(ClientPayloadSchemas, type);

/** The request_id of whatever the client sent, when it has a valid one: every reply must echo it. */
function requestIdOf(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const parsed = RequestIdSchema.safeParse((value as { request_id?: unknown }).request_id);
  return parsed.success ? parsed.data : undefined;
}

/** Paths and messages only: zod messages never contain the rejected value (no SDP or names in replies). */
function describeIssues(error: z.ZodError): string {
  const text = error.issues
    .slice(0, 5)
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(frame)'}: ${issue.message}`)
    .join('; ');
  return text.length > 1000 ? `${text.slice(0, 1000)}…` : text;
}

function byteLength(message: string | ArrayBuffer): number {
  if (typeof message !== 'string') return message.byteLength;
  // Every UTF-16 code unit is at most 3 UTF-8 bytes: short frames skip the encoding pass.
  return message.length * 3 <= LIMITS.frameMaxBytes ? message.length : utf8Length(message);
}

/** Validates one incoming WebSocket message against the shared frame schemas. */
export function decodeClientFrame(message: string | ArrayBuffer): DecodedFrame {
  const size = byteLength(message);
  if (size > FRAME_HARD_CAP_BYTES) return { ok: false, tooLarge: true };
  if (typeof message !== 'string') {
    return { ok: false, tooLarge: false, code: 'invalid_json', message: 'frames must be JSON text, not binary' };
  }
  let json: unknown;
  let parsed = true;
  try {
    json = JSON.parse(message);
  } catch {
    parsed = false;
  }
  // Parsed even when too large (up to the hard cap), so that the error reply can echo the request_id.
  const requestId = requestIdOf(json);
  if (size > LIMITS.frameMaxBytes) {
    const message = `frame is larger than ${LIMITS.frameMaxBytes} bytes`;
    return { ok: false, tooLarge: false, code: 'message_too_large', message, requestId };
  }
  if (!parsed) return { ok: false, tooLarge: false, code: 'invalid_json', message: 'frame is not valid JSON' };
  const envelope = FrameEnvelopeSchema.safeParse(json);
  if (!envelope.success) {
    const message = `not a signaling frame: ${describeIssues(envelope.error)}`;
    return { ok: false, tooLarge: false, code: 'invalid_json', message, requestId };
  }
  if (!isClientFrameType(envelope.data.type)) {
    return { ok: false, tooLarge: false, code: 'unknown_type', message: 'unknown frame type', requestId };
  }
  const frame = ClientFrameSchema.safeParse(json);
  if (!frame.success) {
    const message = `invalid ${envelope.data.type}: ${describeIssues(frame.error)}`;
    return { ok: false, tooLarge: false, code: 'invalid_payload', message, requestId };
  }
  return { ok: true, frame: frame.data };
}

/** A server frame as wire text; fan-out serializes once and sends the same string to every socket. */
export function encodeServerFrame<T extends ServerFrameType>(
  type: T,
  payload: ServerPayload<T>,
  requestId?: string,
): string {
  return JSON.stringify(serverFrameOf(type, payload, requestId));
}
