/**
 * Graceful shutdown (ARCHITECTURE.md, invariant 5): on SIGTERM/SIGINT run every cleanup step,
 * last registered first (stop intake, drain, close queues, close Redis, close SQLite),
 * all within SHUTDOWN_TIMEOUT_MS, then exit.
 */
import type { LoggerLike } from './logger.js';

/** The part of `process` shutdown listens on; tests pass an EventEmitter. */
export interface SignalSource {
  on(event: string, listener: (...args: any[]) => void): unknown;
  removeListener(event: string, listener: (...args: any[]) => void): unknown;
}

export interface ShutdownOptions {
  logger: LoggerLike;
  /** Budget for all steps together (SHUTDOWN_TIMEOUT_MS). */
  timeoutMs: number;
  /** Called once with 0 or 1 when shutdown ends. */
  exit?: (code: number) => void;
  signals?: SignalSource;
  /** Clock in milliseconds; injectable for tests. */
  now?: () => number;
}

export type StepStatus = 'ok' | 'failed' | 'timeout';

export interface StepReport {
  name: string;
  status: StepStatus;
  durationMs: number;
  error?: unknown;
}

export interface ShutdownReport {
  reason: string;
  code: 0 | 1;
  /** Some step did not finish within the budget. */
  timedOut: boolean;
  durationMs: number;
  steps: StepReport[];
}

export interface RunOptions {
  /** Exit with 1 even if every step succeeds (a crash caused this shutdown). */
  failed?: boolean;
}

export interface Shutdown {
  /** Registers a cleanup step; returns a function that unregisters it. */
  add(name: string, fn: () => unknown): () => void;
  /** Runs the steps once; later calls return the same promise. */
  run(reason: string, options?: RunOptions): Promise<ShutdownReport>;
  /** Installs signal and crash handlers; returns a function that removes them. */
  listen(): () => void;
  /** Whether run() has been called. */
  readonly started: boolean;
}

interface Step {
  name: string;
  fn: () => unknown;
}

type Outcome = { status: 'ok' } | { status: 'failed'; error: unknown } | { status: 'timeout' };

/**
 * Runs fn, giving up after ms. fn is always invoked, even with no time left: its synchronous
 * part (better-sqlite3's close, say) still runs; we just do not wait for the rest.
 */
function runBounded(fn: () => unknown, ms: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ status: 'timeout' }), Math.max(0, ms));
    Promise.resolve()
      .then(fn)
      .then(
        () => {
          clearTimeout(timer);
          resolve({ status: 'ok' });
        },
        (error: unknown) => {
          clearTimeout(timer);
          resolve({ status: 'failed', error });
        },
      );
  });
}

export const SHUTDOWN_SIGNALS = ['SIGTERM', 'SIGINT'] as const;

export function createShutdown({
  logger,
  timeoutMs,
  exit = (code) => process.exit(code),
  signals = process,
  now = () => performance.now(),
}: ShutdownOptions): Shutdown {
  const steps: Step[] = [];
  let running: Promise<ShutdownReport> | undefined;
  let forceFailure = false;
  let unlisten: (() => void) | undefined;

  async function execute(reason: string): Promise<ShutdownReport> {
    const started = now();
    const deadline = started + timeoutMs;
    const order = [...steps].reverse();
    logger.info({ reason, timeoutMs, steps: order.map((s) => s.name) }, 'shutting down');

    const reports: StepReport[] = [];
    for (const step of order) {
      const t0 = now();
      const outcome = await runBounded(step.fn, deadline - t0);
      const durationMs = Math.round(now() - t0);
      const report: StepReport = { name: step.name, status: outcome.status, durationMs };
      if (outcome.status === 'ok') {
        logger.info({ step: step.name, durationMs }, `closed ${step.name}`);
      } else if (outcome.status === 'failed') {
        report.error = outcome.error;
        logger.error({ step: step.name, durationMs, err: outcome.error }, `closing ${step.name} failed`);
      } else {
        logger.error({ step: step.name, durationMs, timeoutMs }, `closing ${step.name} timed out`);
      }
      reports.push(report);
    }

    const timedOut = reports.some((r) => r.status === 'timeout');
    const code = forceFailure || reports.some((r) => r.status !== 'ok') ? 1 : 0;
    const durationMs = Math.round(now() - started);
    if (code === 0) logger.info({ reason, durationMs }, 'shutdown complete');
    else logger.error({ reason, durationMs, timedOut }, 'shutdown finished with errors');
    const report: ShutdownReport = { reason, code, timedOut, durationMs, steps: reports };
    exit(code);
    return report;
  }

  function run(reason: string, options: RunOptions = {}): Promise<ShutdownReport> {
    if (options.failed) forceFailure = true;
    running ??= execute(reason);
    return running;
  }

  function add(name: string, fn: () => unknown): () => void {
    if (running) {
      // The order is fixed once shutdown began; a late resource dies with the process.
      logger.warn({ step: name }, 'cleanup step added after shutdown began; ignored');
      return () => {};
    }
    const step: Step = { name, fn };
    steps.push(step);
    return () => {
      const i = steps.indexOf(step);
      if (i !== -1) steps.splice(i, 1);
    };
  }

  function listen(): () => void {
    if (unlisten) return unlisten;
    const handlers: Array<[string, (...args: any[]) => void]> = [];
    for (const signal of SHUTDOWN_SIGNALS) {
      handlers.push([
        signal,
        () => {
          if (running) {
            // An impatient operator (or PM2 escalating): stop waiting.
            logger.warn({ signal }, 'second signal during shutdown; exiting now');
            exit(1);
            return;
          }
          logger.info({ signal }, `received ${signal}`);
          void run(signal);
        },
      ]);
    }
    for (const event of ['uncaughtException', 'unhandledRejection'] as const) {
      handlers.push([
        event,
        (err: unknown) => {
          logger.fatal({ err }, event === 'uncaughtException' ? 'uncaught exception' : 'unhandled promise rejection');
          void run(event, { failed: true });
        },
      ]);
    }
    for (const [event, handler] of handlers) signals.on(event, handler);
    const remove = () => {
      for (const [event, handler] of handlers) signals.removeListener(event, handler);
      if (unlisten === remove) unlisten = undefined;
    };
    unlisten = remove;
    return remove;
  }

  return {
    add,
    run,
    listen,
    get started() {
      return running !== undefined;
    },
  };
}

export type CloseStep = (() => unknown) | null | undefined | false;

/**
 * Runs every cleanup function in order, even when earlier ones throw, then rethrows: the
 * single error as is, several as an AggregateError. Falsy entries are skipped, so
 * `closeAll([worker && (() => worker.close()), () => redis.quit()])` reads naturally.
 */
export async function closeAll(steps: Iterable<CloseStep>): Promise<void> {
  const errors: unknown[] = [];
  for (const step of steps) {
    if (!step) continue;
    try {
      await step();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} cleanup steps failed`);
}

/** Wraps a close function so that every call after the first returns the first call's promise. */
export function callOnce<T>(fn: () => T | Promise<T>): () => Promise<T> {
  let result: Promise<T> | undefined;
  return () => (result ??= Promise.resolve().then(fn));
}
