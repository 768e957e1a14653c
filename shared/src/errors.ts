import { z } from 'zod';

/**
 * Every error code either side may put in an error envelope or an `error` frame. Clients switch on
 * `code`; `message` is for humans and may change.
 */
export const ERROR_CODES = [
  // REST and shared
  'bad_request',
  'validation_failed',
  'unauthorized',
  'forbidden',
  'not_found',
  'method_not_allowed',
  'conflict',
  'payload_too_large',
  'rate_limited',
  'room_full',
  'service_unavailable',
  'internal_error',
  // signaling
  'invalid_json',
  'unknown_type',
  'invalid_payload',
  'message_too_large',
  'not_joined',
  'already_joined',
  'room_mismatch',
  'not_publishing',
  'unknown_feed',
  'media_unavailable',
  'bad_sdp',
] as const;

export const ErrorCodeSchema = z.enum(ERROR_CODES);
export type ErrorCode = z.infer<typeof ErrorCodeSchema>;

export const ErrorBodySchema = z.object({
  code: ErrorCodeSchema,
  message: z.string().max(1024),
  details: z.unknown().optional(),
});
export type ErrorBody = z.infer<typeof ErrorBodySchema>;

/** The one error envelope of every REST answer that is not 2xx: `{error: {code, message, details?}}`. */
export const ErrorEnvelopeSchema = z.object({ error: ErrorBodySchema });
export type ErrorEnvelope = z.infer<typeof ErrorEnvelopeSchema>;

/** A failure that reaches a client as an `error` frame with this code (the socket stays open). */
export class CodedError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}
