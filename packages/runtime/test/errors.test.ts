import { ERROR_CODES, type ErrorCode } from '@dubgate/contracts/errors';
import { describe, expect, it } from 'vitest';
import {
  AppError,
  ConflictError,
  ForbiddenError,
  NotFoundError,
  RateLimitedError,
  UnauthorizedError,
  UnavailableError,
  ValidationError,
  errorStatus,
  isAppError,
  toErrorBody,
} from '../src/errors.js';

describe('AppError', () => {
  it('takes status and default message from the catalog', () => {
    const err = new AppError('JOB_NOT_FOUND');
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ name: 'AppError', code: 'JOB_NOT_FOUND', status: 404, expose: true, message: 'No such job' });
    expect(new AppError('INTERNAL_ERROR').expose).toBe(false);
  });

  it('works for every code in the catalog', () => {
    for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
      const err = new AppError(code);
      expect(err.status).toBe(ERROR_CODES[code].status);
      expect(err.expose).toBe(ERROR_CODES[code].status < 500);
    }
  });

  it('has one subclass per kind with a sensible default code', () => {
    const cases: Array<[AppError, string, number, string]> = [
      [new ValidationError(), 'VALIDATION_FAILED', 400, 'ValidationError'],
      [new UnauthorizedError(), 'UNAUTHENTICATED', 401, 'UnauthorizedError'],
      [new ForbiddenError(), 'FORBIDDEN', 403, 'ForbiddenError'],
      [new NotFoundError(), 'NOT_FOUND', 404, 'NotFoundError'],
      [new ConflictError(), 'STATE_CONFLICT', 409, 'ConflictError'],
      [new RateLimitedError(), 'RATE_LIMITED', 429, 'RateLimitedError'],
      [new UnavailableError(), 'SERVICE_UNAVAILABLE', 503, 'UnavailableError'],
    ];
    for (const [err, code, status, name] of cases) {
      expect(err).toBeInstanceOf(AppError);
      expect(err).toMatchObject({ code, status, name });
    }
    expect(new ConflictError('JOB_NOT_CANCELABLE').status).toBe(409);
    expect(new ValidationError('BODY_TOO_LARGE').status).toBe(413);
    expect(new RateLimitedError('RATE_LIMITED', undefined, { retryAfterSeconds: 5 }).retryAfterSeconds).toBe(5);
    expect(new UnavailableError('DISK_SPACE_LOW').status).toBe(503);
    // @ts-expect-error a 404 kind only takes 404 codes
    void new NotFoundError('STATE_CONFLICT');
  });

  it('keeps details and cause', () => {
    const cause = new Error('sqlite busy');
    const err = new ValidationError('VALIDATION_FAILED', 'url is required', { details: [{ path: '/url' }], cause });
    expect(err.message).toBe('url is required');
    expect(err.details).toEqual([{ path: '/url' }]);
    expect(err.cause).toBe(cause);
  });
});

describe('isAppError / errorStatus', () => {
  it('recognises AppErrors, also from another copy of the module', () => {
    expect(isAppError(new NotFoundError())).toBe(true);
    expect(isAppError(new Error('x'))).toBe(false);
    expect(isAppError(null)).toBe(false);
    expect(isAppError({ code: 'NOT_FOUND', status: 404 })).toBe(false);
    const foreign = Object.defineProperty(new Error('x'), Symbol.for('dubgate.runtime.AppError'), { value: true });
    expect(isAppError(foreign)).toBe(true);
    expect(errorStatus(new ForbiddenError())).toBe(403);
    expect(errorStatus(new TypeError('x'))).toBe(500);
  });
});

describe('toErrorBody', () => {
  it('passes 4xx messages and details through', () => {
    const err = new ValidationError('VALIDATION_FAILED', 'url is required', { details: [{ path: '/url' }] });
    expect(toErrorBody(err, 'req-1')).toEqual({
      error: { code: 'VALIDATION_FAILED', message: 'url is required', details: [{ path: '/url' }], requestId: 'req-1' },
    });
    expect(toErrorBody(new NotFoundError('JOB_NOT_FOUND'))).toEqual({ error: { code: 'JOB_NOT_FOUND', message: 'No such job' } });
  });

  it('hides the message and details of 5xx errors but keeps their stable code', () => {
    const err = new UnavailableError('DISK_SPACE_LOW', 'only 12 bytes free on /srv/secret/path', { details: { free: 12 } });
    expect(toErrorBody(err)).toEqual({ error: { code: 'DISK_SPACE_LOW', message: ERROR_CODES.DISK_SPACE_LOW.message } });
    expect(toErrorBody(new AppError('STAGE_FAILED', 'ffmpeg exited 1 at /tmp/x'))).toEqual({
      error: { code: 'STAGE_FAILED', message: 'A pipeline stage failed' },
    });
  });

  it('turns anything else into INTERNAL_ERROR', () => {
    const body = toErrorBody(new Error('SQLITE_CONSTRAINT: UNIQUE failed: users.username'), 'r2');
    expect(body).toEqual({ error: { code: 'INTERNAL_ERROR', message: 'Internal error', requestId: 'r2' } });
    expect(toErrorBody('a string')).toEqual({ error: { code: 'INTERNAL_ERROR', message: 'Internal error' } });
    expect(toErrorBody({ message: 'fake', code: 'NOT_FOUND', status: 404, expose: true })).toEqual({
      error: { code: 'INTERNAL_ERROR', message: 'Internal error' },
    });
  });
});
