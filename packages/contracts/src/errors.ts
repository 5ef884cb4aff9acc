/**
 * Stable error codes. A client branches on `code`, never on the message.
 * `status` is the HTTP status the API answers with.
 */
export const ERROR_CODES = {
  VALIDATION_FAILED: { status: 400, message: 'The request is not valid' },
  INVALID_JSON: { status: 400, message: 'The request body is not valid JSON' },
  URL_NOT_ALLOWED: { status: 400, message: 'The URL is not allowed' },
  UNAUTHENTICATED: { status: 401, message: 'Authentication is required' },
  INVALID_CREDENTIALS: { status: 401, message: 'Wrong username or password' },
  TOKEN_INVALID: { status: 401, message: 'The token is not valid' },
  TOKEN_EXPIRED: { status: 401, message: 'The token has expired' },
  SESSION_REVOKED: { status: 401, message: 'The session has ended' },
  FORBIDDEN: { status: 403, message: 'You may not do this' },
  CSRF_TOKEN_INVALID: { status: 403, message: 'A valid CSRF token is required' },
  USER_DISABLED: { status: 403, message: 'This account is disabled' },
  NOT_FOUND: { status: 404, message: 'Not found' },
  JOB_NOT_FOUND: { status: 404, message: 'No such job' },
  ROUTE_NOT_FOUND: { status: 404, message: 'No such route' },
  INVALID_TRANSITION: { status: 409, message: 'The job is not in a state that allows this' },
  JOB_NOT_CANCELABLE: { status: 409, message: 'The job cannot be canceled in its current state' },
  JOB_NOT_RETRYABLE: { status: 409, message: 'Only failed or canceled jobs can be retried' },
  JOB_NOT_RESUMABLE: { status: 409, message: 'Only a job that failed while dubbing can be resumed' },
  STATE_CONFLICT: { status: 409, message: 'The job changed meanwhile; try again' },
  USER_EXISTS: { status: 409, message: 'A user with this name exists' },
  IDEMPOTENCY_KEY_REUSED: { status: 422, message: 'This Idempotency-Key was used for a different request' },
  BODY_TOO_LARGE: { status: 413, message: 'The request body is too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'The content type is not supported' },
  RATE_LIMITED: { status: 429, message: 'Too many requests; slow down' },
  SERVICE_UNAVAILABLE: { status: 503, message: 'The service is temporarily unavailable' },
  INTERNAL_ERROR: { status: 500, message: 'Internal error' },
  // Worker and WebSocket codes (not HTTP answers, but part of the same vocabulary).
  PAYLOAD_INVALID: { status: 400, message: 'The message does not match its schema' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'The message is too large' },
  TOO_MANY_SUBSCRIPTIONS: { status: 429, message: 'Too many subscriptions on this connection' },
  STAGE_FAILED: { status: 500, message: 'A pipeline stage failed' },
  STAGE_FAILED_PERMANENTLY: { status: 500, message: 'A pipeline stage failed and will not be retried' },
  DISK_SPACE_LOW: { status: 503, message: 'Not enough free disk space under MEDIA_ROOT' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}
