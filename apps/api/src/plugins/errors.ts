import fp from 'fastify-plugin';
import type { FastifyError, FastifyInstance } from 'fastify';
import { AppError, isAppError, toErrorBody } from '@dubgate/runtime/errors';
import type { ErrorCode } from '@dubgate/contracts/errors';

/**
 * One error shape for every failure: `{ error: { code, message, details?, requestId } }`.
 * 4xx messages pass through; 5xx are logged and hidden (invariant 6).
 */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'VALIDATION_FAILED',
  FST_ERR_BAD_URL: 'VALIDATION_FAILED',
  FST_ERR_ASYNC_CONSTRAINT: 'VALIDATION_FAILED',
  FST_JWT_NO_AUTHORIZATION_IN_HEADER: 'UNAUTHENTICATED',
  FST_JWT_AUTHORIZATION_TOKEN_EXPIRED: 'TOKEN_EXPIRED',
  FST_JWT_AUTHORIZATION_TOKEN_INVALID: 'TOKEN_INVALID',
  FST_JWT_AUTHORIZATION_TOKEN_UNTRUSTED: 'TOKEN_INVALID',
  FST_JWT_BAD_REQUEST: 'TOKEN_INVALID',
};

const STATUS_CODES: Record<number, ErrorCode> = {
  400: 'VALIDATION_FAILED',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'ROUTE_NOT_FOUND',
  406: 'UNSUPPORTED_MEDIA_TYPE',
  413: 'BODY_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'RATE_LIMITED',
  503: 'SERVICE_UNAVAILABLE',
};

/** Turns whatever was thrown into an AppError (or leaves it as an unknown 5xx). */
export function normalizeError(err: FastifyError | Error): AppError | Error {
  if (isAppError(err)) return err;
  const fe = err as FastifyError;
  if (fe.validation) {
    const details = fe.validation.map((v) => ({
      path: `${fe.validationContext ?? 'body'}${v.instancePath ? v.instancePath.replaceAll('/', '.') : ''}`,
      message:
        v.keyword === 'additionalProperties'
          ? `unknown property "${(v.params as { additionalProperty?: string }).additionalProperty}"`
          : (v.message ?? 'is not valid'),
    }));
    return new AppError('VALIDATION_FAILED', `Invalid ${fe.validationContext ?? 'request'}: ${details[0]?.path} ${details[0]?.message}`, {
      details,
    });
  }
  const mapped = fe.code ? FASTIFY_CODES[fe.code] : undefined;
  if (mapped) return new AppError(mapped, fe.statusCode && fe.statusCode < 500 ? cleanMessage(fe.message) : undefined);
  if (err instanceof SyntaxError && fe.statusCode === 400) return new AppError('INVALID_JSON');
  const status = fe.statusCode ?? 500;
  if (status >= 400 && status < 500) return new AppError(STATUS_CODES[status] ?? 'VALIDATION_FAILED', cleanMessage(fe.message));
  return err;
}

function cleanMessage(message: string): string {
  return message.replace(/^FST_[A-Z_]+:\s*/, '').slice(0, 500);
}

export default fp(
  async function errorsPlugin(app: FastifyInstance) {
    app.setErrorHandler((err: FastifyError, request, reply) => {
      const normalized = normalizeError(err);
      const body = toErrorBody(normalized, request.id);
      const status = isAppError(normalized) ? normalized.status : 500;
      const retryAfter = isAppError(normalized) ? (normalized as { retryAfterSeconds?: number }).retryAfterSeconds : undefined;
      // A 503 with Retry-After is a deliberate refusal (overload), not a failure.
      if (status >= 500 && retryAfter === undefined) request.log.error({ err }, 'request failed');
      else request.log.info({ code: body.error.code }, 'request refused');
      if (retryAfter !== undefined) void reply.header('retry-after', String(retryAfter));
      else if (status === 429) void reply.header('retry-after', '60');
      return reply.status(status).send(body);
    });

    app.setNotFoundHandler((request, reply) => {
      return reply.status(404).send(toErrorBody(new AppError('ROUTE_NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}`), request.id));
    });
  },
  { name: 'errors' },
);
