/**
 * Structured JSON logs (pino) with one shape in every process: `service` and `pid` on each
 * line, ISO timestamps, secrets redacted. Fastify takes the same options via `loggerOptions`.
 */
import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';

export type { Logger, DestinationStream };

/** The logging surface the runtime helpers need; pino and Fastify's logger both fit. */
export type LoggerLike = Pick<pino.BaseLogger, 'fatal' | 'error' | 'warn' | 'info' | 'debug'>;

// Keys that hold secrets wherever they appear, up to four levels of keys
// (`{ password }`, `{ body: { password } }`, `{ req: { body: { token } } }`).
const SECRET_KEYS: ReadonlySet<string> = new Set([
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
]);

// Header names (lower case) censored inside any `headers` object.
const SECRET_HEADERS: ReadonlySet<string> = new Set(['authorization', 'cookie', 'set-cookie', 'x-csrf-token', 'x-api-key']);

export const REDACT_CENSOR = '[Redacted]';
const MAX_DEPTH = 3;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * Returns `obj` with secrets censored: the same object when it holds none (the usual case, and
 * no allocation), else a copy along the paths that needed it; the caller's object is never
 * changed. Only plain objects are searched: class instances (a raw request, an Error) reach
 * their pino serializer, which keeps none of these fields.
 *
 * This replaces pino's `redact` with `*.` wildcard paths, which ran a redactor over every
 * object value of every line and was the api's single largest logging cost under load.
 */
export function redactSecrets<T>(obj: T, depth = 0, inHeaders = false): T {
  if (!isPlainObject(obj)) return obj;
  let copy: Record<string, unknown> | null = null;
  for (const key in obj) {
    const value = obj[key];
    let next: unknown = value;
    if (SECRET_KEYS.has(key) || (inHeaders && SECRET_HEADERS.has(key.toLowerCase()))) {
      if (value !== undefined) next = REDACT_CENSOR;
    } else if (depth < MAX_DEPTH && isPlainObject(value)) {
      next = redactSecrets(value, depth + 1, key === 'headers');
    }
    if (next !== value) {
      copy ??= { ...obj };
      copy[key] = next;
    }
  }
  return (copy ?? obj) as T;
}

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
    formatters: { log: (obj) => redactSecrets(obj) },
  };
}

export interface CreateLoggerOptions extends LoggerSettings {
  /** Where lines go; defaults to stdout through a small buffer (see below). */
  destination?: DestinationStream;
}

/** Lines are written once this many bytes are buffered, or every FLUSH_INTERVAL_MS. */
const BUFFER_BYTES = 4096;
const FLUSH_INTERVAL_MS = 100;

/**
 * stdout with a small write buffer: a busy process (the api logs two lines per request) makes
 * one write per 4 KiB instead of one per line. Writes are synchronous, so what is buffered is
 * written, in order, by a flush every 100 ms and on exit (normal exit, process.exit, a fatal
 * error). Only a SIGKILL can cost the last 100 ms of lines.
 */
function bufferedStdout(): DestinationStream & { flushSync(): void } {
  const dest = pino.destination({ dest: 1, sync: true, minLength: BUFFER_BYTES });
  const flush = () => {
    try {
      dest.flushSync();
    } catch {
      // stdout closed (EPIPE): nothing left to write to.
    }
  };
  setInterval(flush, FLUSH_INTERVAL_MS).unref();
  process.on('exit', flush);
  return dest;
}

let sharedStdout: (DestinationStream & { flushSync(): void }) | undefined;

/**
 * Writes out what the stdout buffer holds now. A process calls it before it tells its supervisor
 * it is ready, so whoever reacts to "ready" finds the start-up lines already written.
 */
export function flushLogs(): void {
  try {
    sharedStdout?.flushSync();
  } catch {
    // stdout closed: nothing to write to.
  }
}

export function createLogger({ destination, ...settings }: CreateLoggerOptions): Logger {
  const options = loggerOptions(settings);
  if (destination) return pino(options, destination);
  // One buffer per process, however many loggers write to stdout.
  sharedStdout ??= bufferedStdout();
  return pino(options, sharedStdout);
}
