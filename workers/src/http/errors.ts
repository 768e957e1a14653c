import type { ErrorCode } from '../../../shared/src/errors.ts';
import { HttpError } from '../../../shared/src/http-error.ts';

export { HttpError };

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
