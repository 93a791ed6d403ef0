// The one error type of Letterbox. `code` is stable: the API returns it, the CLI prints it, tests match on it.
export type ErrorCode =
  | 'validation_error'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'method_not_allowed'
  | 'conflict'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'message_rejected' // refused as spam by the outbound check (issue #14)
  | 'rate_limited'
  | 'smtp_error'
  | 'imap_error'
  | 'unavailable'
  | 'internal_error'
  | 'not_implemented'
  | 'config_error';

export const HTTP_STATUS: Record<ErrorCode, number> = {
  validation_error: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  message_rejected: 422,
  rate_limited: 429,
  smtp_error: 502,
  imap_error: 502,
  unavailable: 503,
  internal_error: 500,
  not_implemented: 501,
  config_error: 500,
};

export class LetterboxError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LetterboxError';
    this.code = code;
    this.details = details;
  }
  get status(): number {
    return HTTP_STATUS[this.code];
  }
}

export function isLetterboxError(err: unknown): err is LetterboxError {
  return err instanceof LetterboxError;
}
