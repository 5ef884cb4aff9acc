import { PERMANENT_ERROR_PREFIX } from '@dubgate/contracts/stages';

export { PERMANENT_ERROR_PREFIX };

/** Code published on events:error when a PermanentError gives none. */
export const DEFAULT_PERMANENT_CODE = 'STAGE_FAILED_PERMANENTLY';
/** Code published on events:error for an error that BullMQ will retry. */
export const TRANSIENT_CODE = 'STAGE_FAILED';

// Brands that survive two copies of this module (src and dist in one test run, say).
const PERMANENT = Symbol.for('dubgate.worker-sdk.PermanentError');
const ABORT = Symbol.for('dubgate.worker-sdk.AbortError');

export interface PermanentErrorOptions {
  /** Stable code published on events:error, e.g. `NO_SUBTITLES`, `URL_NOT_ALLOWED`. At most 64 characters. */
  code?: string;
  cause?: unknown;
}

/**
 * An error that retrying cannot fix (bad input, unsupported URL, media without subtitles). The SDK
 * fails the job with BullMQ's UnrecoverableError and the message `PERMANENT: <message>`, so BullMQ
 * does not retry it, and publishes it on events:error with `permanent: true` and `code`.
 *
 * `new PermanentError('no subtitles')`, `new PermanentError('no subtitles', 'NO_SUBTITLES')` and
 * `new PermanentError('no subtitles', { code: 'NO_SUBTITLES', cause })` all work.
 */
export class PermanentError extends Error {
  readonly code: string;
  constructor(message: string, codeOrOptions?: string | PermanentErrorOptions) {
    const options: PermanentErrorOptions = typeof codeOrOptions === 'string' ? { code: codeOrOptions } : (codeOrOptions ?? {});
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PermanentError';
    this.code = (options.code ?? DEFAULT_PERMANENT_CODE).slice(0, 64);
    Object.defineProperty(this, PERMANENT, { value: true });
  }
}

export function isPermanentError(err: unknown): err is PermanentError {
  return err instanceof PermanentError || (typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[PERMANENT] === true);
}

/**
 * What `runChild` (and the SDK's helpers) reject with when their AbortSignal fires: the same name
 * and code as Node's own abort errors, so `err.name === 'AbortError'` works for both.
 */
export class AbortError extends Error {
  readonly code = 'ABORT_ERR';
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AbortError';
    Object.defineProperty(this, ABORT, { value: true });
  }
}

/** True for our AbortError, Node's (fetch, stream.pipeline, timers/promises) and DOMException's. */
export function isAbortError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  if ((err as Record<symbol, unknown>)[ABORT] === true) return true;
  const e = err as { name?: unknown; code?: unknown };
  return e.name === 'AbortError' || e.code === 'ABORT_ERR';
}

/** Throws an AbortError when `signal` has fired (use between steps of a stage). */
export function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw new AbortError(abortMessage(signal));
}

export function abortMessage(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  if (typeof r === 'string' && r) return `aborted: ${r}`;
  if (r instanceof Error && r.message) return `aborted: ${r.message}`;
  return 'The operation was aborted';
}

/** The message BullMQ stores for a permanent failure: always starts with `PERMANENT:`. */
export function permanentReason(message: string): string {
  const text = message.trim() || 'failed';
  return text.startsWith(PERMANENT_ERROR_PREFIX) ? text : `${PERMANENT_ERROR_PREFIX} ${text}`;
}

/** `signal.reason` of a stage aborted because its worker shuts down (the job is handed back, not canceled). */
export const SHUTDOWN_ABORT_REASON = 'shutdown';

/**
 * True when `signal` fired because the job was canceled (not because the worker shuts down): the
 * stage should then remove partial files. After a shutdown abort it may keep them for whoever
 * takes the job next (a download's `.part`, say).
 */
export function isCanceled(signal: AbortSignal): boolean {
  return signal.aborted && signal.reason !== SHUTDOWN_ABORT_REASON;
}
