/** Thrown for a cursor this code did not make; the API answers 400 VALIDATION_FAILED. */
export class InvalidCursorError extends Error {
  readonly code = 'VALIDATION_FAILED';
  readonly statusCode = 400;
  constructor(message = 'The cursor is not valid') {
    super(message);
    this.name = 'InvalidCursorError';
  }
}

const PREFIX = 'j1.';

/** Opaque, URL-safe ([A-Za-z0-9_-]) cursor: the position (jobs.seq) of the last item shown. */
export function encodeCursor(seq: number): string {
  return Buffer.from(`${PREFIX}${seq.toString(36)}`).toString('base64url');
}

export function decodeCursor(cursor: string): number {
  if (!/^[A-Za-z0-9_-]{1,100}$/.test(cursor)) throw new InvalidCursorError();
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!text.startsWith(PREFIX)) throw new InvalidCursorError();
  const body = text.slice(PREFIX.length);
  if (!/^[0-9a-z]{1,12}$/.test(body)) throw new InvalidCursorError();
  const seq = Number.parseInt(body, 36);
  if (!Number.isSafeInteger(seq) || seq < 1 || seq >= 2 ** 50) throw new InvalidCursorError();
  return seq;
}
