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

/** The message of an error, for a log field; stacks stay out of the logs. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
