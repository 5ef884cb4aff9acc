import { ERROR_CODES, type ErrorCode } from '@dubgate/contracts/errors';

export { ERROR_CODES, type ErrorCode };

/** Codes whose HTTP status is one of `S` (so each subclass only accepts codes of its kind). */
export type CodeWithStatus<S extends number> = {
  [K in ErrorCode]: (typeof ERROR_CODES)[K]['status'] extends S ? K : never;
}[ErrorCode];

export type ValidationCode = CodeWithStatus<400 | 413 | 415 | 422>;
export type UnauthorizedCode = CodeWithStatus<401>;
export type ForbiddenCode = CodeWithStatus<403>;
export type NotFoundCode = CodeWithStatus<404>;
export type ConflictCode = CodeWithStatus<409>;
export type RateLimitedCode = CodeWithStatus<429>;
export type UnavailableCode = CodeWithStatus<503>;

export interface AppErrorOptions {
  /** Extra, client-safe data (e.g. which fields failed). Only sent for statuses below 500. */
  details?: unknown;
  cause?: unknown;
}

// A brand that survives two copies of this module (src and dist in one test run, say),
// where `instanceof` alone would say no.
const APP_ERROR = Symbol.for('dubgate.runtime.AppError');

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Whether the message and details may be shown to the client. */
  readonly expose: boolean;
  readonly details?: unknown;

  constructor(code: ErrorCode, message?: string, options: AppErrorOptions = {}) {
    super(message ?? ERROR_CODES[code].message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.expose = this.status < 500;
    if (options.details !== undefined) this.details = options.details;
    Object.defineProperty(this, APP_ERROR, { value: true });
  }
}

export class ValidationError extends AppError {
  constructor(code: ValidationCode = 'VALIDATION_FAILED', message?: string, options?: AppErrorOptions) {
    super(code, message, options);
  }
}

export class UnauthorizedError extends AppError {
  constructor(code: UnauthorizedCode = 'UNAUTHENTICATED', message?: string, options?: AppErrorOptions) {
    super(code, message, options);
  }
}

export class ForbiddenError extends AppError {
  constructor(code: ForbiddenCode = 'FORBIDDEN', message?: string, options?: AppErrorOptions) {
    super(code, message, options);
  }
}

export class NotFoundError extends AppError {
  constructor(code: NotFoundCode = 'NOT_FOUND', message?: string, options?: AppErrorOptions) {
    super(code, message, options);
  }
}

export class ConflictError extends AppError {
  constructor(code: ConflictCode = 'STATE_CONFLICT', message?: string, options?: AppErrorOptions) {
    super(code, message, options);
  }
}

export interface RetryAfterOptions extends AppErrorOptions {
  /** Seconds the client should wait; the API turns this into a Retry-After header. */
  retryAfterSeconds?: number;
}

export class RateLimitedError extends AppError {
  readonly retryAfterSeconds?: number;
  constructor(code: RateLimitedCode = 'RATE_LIMITED', message?: string, options: RetryAfterOptions = {}) {
    super(code, message, options);
    if (options.retryAfterSeconds !== undefined) this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

export class UnavailableError extends AppError {
  readonly retryAfterSeconds?: number;
  constructor(code: UnavailableCode = 'SERVICE_UNAVAILABLE', message?: string, options: RetryAfterOptions = {}) {
    super(code, message, options);
    if (options.retryAfterSeconds !== undefined) this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

export function isAppError(value: unknown): value is AppError {
  return (
    value instanceof AppError ||
    (typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[APP_ERROR] === true)
  );
}

/** HTTP status for any thrown value: the AppError's own, otherwise 500. */
export function errorStatus(err: unknown): number {
  return isAppError(err) ? err.status : 500;
}

export interface ErrorBody {
  error: {
    code: ErrorCode;
    message: string;
    details?: unknown;
    requestId?: string;
  };
}

/**
 * The JSON body for an error answer. 4xx AppErrors pass their message and details through;
 * a 5xx AppError keeps its stable code but only the catalog's generic message; anything
 * else becomes INTERNAL_ERROR, so stack traces, SQL and file paths never reach a client.
 */
export function toErrorBody(err: unknown, requestId?: string): ErrorBody {
  let body: ErrorBody['error'];
  if (isAppError(err)) {
    body = err.expose
      ? { code: err.code, message: err.message }
      : { code: err.code, message: ERROR_CODES[err.code].message };
    if (err.expose && err.details !== undefined) body.details = err.details;
  } else {
    body = { code: 'INTERNAL_ERROR', message: ERROR_CODES.INTERNAL_ERROR.message };
  }
  if (requestId !== undefined) body.requestId = requestId;
  return { error: body };
}
