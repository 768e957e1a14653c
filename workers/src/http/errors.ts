import type { ErrorCode, ErrorEnvelope } from '../../../shared/src/errors.ts';

/** An error that maps to one HTTP status and one envelope `{error: {code, message, details?}}`. */
export class HttpError extends Error {
  readonly status: number;
  readonly code: ErrorCode;
  readonly details?: unknown;

  constructor(status: number, code: ErrorCode, message: string, details?: unknown) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.code = code;
    this.details = details;
  }

  toEnvelope(): ErrorEnvelope {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.details === undefined ? {} : { details: this.details }),
      },
    };
  }
}

/** A JSON error response in the contract's envelope. */
export function errorResponse(
  status: number,
  code: ErrorCode,
  message: string,
  details?: unknown,
  headers?: HeadersInit,
): Response {
  const body = new HttpError(status, code, message, details).toEnvelope();
  return Response.json(body, { status, headers });
}
