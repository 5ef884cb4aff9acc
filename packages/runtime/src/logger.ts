/**
 * Structured JSON logs (pino) with one shape in every process: `service` and `pid` on each
 * line, ISO timestamps, secrets redacted. Fastify takes the same options via `loggerOptions`.
 */
import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';

export type { Logger, DestinationStream };

/** The logging surface the runtime helpers need; pino and Fastify's logger both fit. */
export type LoggerLike = Pick<pino.BaseLogger, 'fatal' | 'error' | 'warn' | 'info' | 'debug'>;

// Keys that hold secrets wherever they appear (top level or up to two objects deep:
// `{ body: { password } }`, `{ req: { body: { token } } }`).
const SECRET_KEYS = [
  'password',
  'currentPassword',
  'newPassword',
  'token',
  'csrfToken',
  'apiToken',
  'accessToken',
  'refreshToken',
  'JWT_SECRET',
  'ADMIN_PASSWORD',
] as const;

const SECRET_HEADERS = ['authorization', 'cookie', '"set-cookie"', '"x-csrf-token"', '"x-api-key"'] as const;

function headerPath(prefix: string, header: string): string {
  return header.startsWith('"') ? `${prefix}[${header}]` : `${prefix}.${header}`;
}

/** Paths (pino `redact` syntax) removed from every log line. */
export const REDACT_PATHS: readonly string[] = Object.freeze([
  ...SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]),
  ...SECRET_HEADERS.flatMap((h) => [
    headerPath('headers', h),
    headerPath('*.headers', h),
    headerPath('*.*.headers', h),
  ]),
]);

export const REDACT_CENSOR = '[Redacted]';

export interface LoggerSettings {
  /** The process: api, realtime, scheduler, relay, worker-download, ... */
  name: string;
  /** pino level; defaults to `info`. */
  level?: string;
  /** Process id on each line; defaults to `process.pid` (tests pin it). */
  pid?: number;
}

/** pino options for our log shape; pass to `pino()` or to Fastify's `logger` option. */
export function loggerOptions({ name, level = 'info', pid = process.pid }: LoggerSettings): LoggerOptions {
  return {
    level,
    base: { service: name, pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: [...REDACT_PATHS], censor: REDACT_CENSOR },
  };
}

export interface CreateLoggerOptions extends LoggerSettings {
  /** Where lines go; defaults to stdout (pino's synchronous destination, so nothing is lost at exit). */
  destination?: DestinationStream;
}

export function createLogger({ destination, ...settings }: CreateLoggerOptions): Logger {
  const options = loggerOptions(settings);
  // pino's default stdout stream is asynchronous: a chunk still being written when the process
  // exits lands after (or instead of) the last lines. Shutdown logs must arrive whole and in order.
  return pino(options, destination ?? pino.destination({ dest: 1, sync: true }));
}
