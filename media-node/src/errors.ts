import { ConfigError } from '../../shared/src/config-error.ts';
import type { ErrorCode } from '../../shared/src/errors.ts';
import { HttpError } from '../../shared/src/http-error.ts';

/**
 * A failure the control API reports to the edge: one HTTP status, one envelope code. Thrown inside
 * worker threads too, and carried across as {@link SerializedMediaError}.
 */
export class MediaNodeError extends HttpError {
  constructor(status: number, code: ErrorCode, message: string, details?: unknown) {
    super(status, code, message, details);
    this.name = 'MediaNodeError';
  }

  serialize(): SerializedMediaError {
    return { status: this.status, code: this.code, message: this.message, details: this.details };
  }

  static deserialize(error: SerializedMediaError): MediaNodeError {
    return new MediaNodeError(error.status, error.code, error.message, error.details);
  }
}

export interface SerializedMediaError {
  status: number;
  code: ErrorCode;
  message: string;
  details?: unknown;
}

export const badSdp = (reason: string) =>
  new MediaNodeError(400, 'bad_sdp', `the SDP could not be used: ${reason.slice(0, 300)}`);
export const notFound = (what: string) => new MediaNodeError(404, 'not_found', `${what} not found`);
export const conflict = (message: string) => new MediaNodeError(409, 'conflict', message);
export const unavailable = (message: string, details?: unknown) =>
  new MediaNodeError(503, 'service_unavailable', message, details);

/** Any thrown value as a MediaNodeError; unknown failures become a 500 without internals. */
export function asMediaNodeError(error: unknown): MediaNodeError {
  if (error instanceof MediaNodeError) return error;
  return new MediaNodeError(500, 'internal_error', 'internal error');
}

/** Class names and codes are identifiers; anything else in those fields is not logged. */
const IDENTIFIER = /^[A-Za-z_][\w.-]{0,63}$/;

/**
 * An error for a log field: its class name and code (`Error`, `TypeError ERR_INVALID_ARG_TYPE`,
 * `MediaNodeError bad_sdp`), never its message or stack. werift's parse errors quote the SDP or
 * candidate lines they choke on, and our own bad_sdp messages carry werift's: no rule that trims a
 * message can promise to cut all of that, so messages stay out of the logs. The one exception is a
 * ConfigError, whose message is built from the names of environment variables and zod's wording
 * (never their values) and is what an operator needs to fix a failed start.
 */
export function loggableError(error: unknown): string {
  if (error instanceof ConfigError) return error.message;
  if (!(error instanceof Error)) return typeof error;
  const name = IDENTIFIER.test(error.name) ? error.name : 'Error';
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && IDENTIFIER.test(code) ? `${name} ${code}` : name;
}
