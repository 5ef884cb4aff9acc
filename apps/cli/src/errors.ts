/** Exit codes of the dubgate CLI (documented in README.md). */
export const EXIT = {
  OK: 0,
  /** The request failed (4xx other than auth/not found, 5xx) or, for `follow`, the job FAILED. */
  FAILURE: 1,
  /** `follow`: the job was CANCELED. */
  CANCELED: 2,
  USAGE: 3,
  AUTH: 4,
  NOT_FOUND: 5,
  CONNECTION: 6,
} as const;

/** An error the CLI reports as one line `error: <CODE>: <message>` and exits with `exitCode`. */
export class CliError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode: number = EXIT.FAILURE,
    readonly status?: number,
  ) {
    super(message);
  }
}

export class UsageError extends CliError {
  constructor(message: string) {
    super('USAGE', message, EXIT.USAGE);
  }
}

/** Maps an HTTP status of an API error to an exit code. */
export function exitCodeForStatus(status: number): number {
  if (status === 401 || status === 403) return EXIT.AUTH;
  if (status === 404) return EXIT.NOT_FOUND;
  return EXIT.FAILURE;
}
