import { EVENT_CHANNELS, type ErrorMessage, type LogMessage, type ProgressMessage } from '@dubgate/contracts/events';
import type { Stage } from '@dubgate/contracts/states';
import type { EventPublisher } from '@dubgate/queues/publisher';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface ProgressUpdate {
  /** 0 to 100; clamped. */
  percent: number;
  /** Bytes per second, when the stage moves bytes. */
  speed?: number | null;
  /** Seconds left, when known. */
  eta?: number | null;
  /** What the stage is doing, e.g. `transfer`, `cue 3/40`. At most 200 characters. */
  step?: string;
  /** The last update of the stage: always sent, never throttled. */
  final?: boolean;
}

export interface JobEventsOptions {
  publisher: Pick<EventPublisher, 'publish'>;
  jobId: string;
  stage: Stage;
  /** Least time between two progress messages of one job (the last one waits, it is not lost). Default 500. */
  intervalMs?: number;
  /** Where publishing failures go (Pub/Sub is at most once: they never fail the stage). */
  onPublishError?: (err: unknown, channel: string) => void;
  now?: () => number;
}

export interface JobEvents {
  progress(p: ProgressUpdate): void;
  log(level: LogLevel, message: string): void;
  error(code: string, message: string, permanent: boolean): void;
  /** Whether a `final` progress went out. */
  readonly finalSent: boolean;
  /** Messages handed to Redis so far settle; pending throttled progress is dropped. */
  dispose(): Promise<void>;
}

const LOG_MAX = 4000;
const STEP_MAX = 200;

function cleanNumber(v: number | null | undefined): number | null | undefined {
  if (v === undefined) return undefined;
  if (v === null || !Number.isFinite(v) || v < 0) return null;
  return Math.round(v * 100) / 100;
}

/**
 * Publishes one job's progress (throttled, numbered with `seq` from 0 within this run), logs and
 * errors on the events:* channels, in the contracts' shapes. Never throws: a failed publish is
 * reported to `onPublishError` and forgotten.
 */
export function createJobEvents(opts: JobEventsOptions): JobEvents {
  const { publisher, jobId, stage, intervalMs = 500, now = Date.now } = opts;
  const onPublishError = opts.onPublishError ?? (() => {});
  let seq = 0;
  let lastSentAt = -Infinity;
  let pending: ProgressMessage['payload'] | undefined;
  let timer: NodeJS.Timeout | undefined;
  let finalSent = false;
  let disposed = false;
  const inFlight = new Set<Promise<unknown>>();

  const send = (channel: 'events:progress' | 'events:log' | 'events:error', message: ProgressMessage | LogMessage | ErrorMessage) => {
    let p: Promise<unknown>;
    try {
      p = publisher.publish(channel, message as never);
    } catch (err) {
      onPublishError(err, channel);
      return;
    }
    const tracked = p.catch((err: unknown) => onPublishError(err, channel)).finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };

  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    if (!pending) return;
    const payload = { ...pending, seq: seq++ };
    pending = undefined;
    lastSentAt = now();
    send(EVENT_CHANNELS.progress, { jobId, type: 'progress', timestamp: new Date().toISOString(), payload });
  };

  return {
    progress(p) {
      if (disposed || finalSent) return;
      const percent = Number.isFinite(p.percent) ? Math.min(100, Math.max(0, Math.round(p.percent * 100) / 100)) : 0;
      const payload: ProgressMessage['payload'] = { stage, percent };
      const speed = cleanNumber(p.speed);
      const eta = cleanNumber(p.eta);
      if (speed !== undefined) payload.speed = speed;
      if (eta !== undefined) payload.eta = eta;
      if (p.step !== undefined) payload.step = String(p.step).slice(0, STEP_MAX);
      if (p.final) {
        payload.final = true;
        finalSent = true;
        pending = payload;
        flush();
        return;
      }
      pending = payload;
      const wait = lastSentAt + intervalMs - now();
      if (wait <= 0) flush();
      else if (!timer) {
        timer = setTimeout(flush, wait);
        timer.unref?.();
      }
    },
    log(level, message) {
      if (disposed) return;
      send(EVENT_CHANNELS.log, {
        jobId,
        type: 'log',
        timestamp: new Date().toISOString(),
        payload: { level, message: String(message).slice(0, LOG_MAX), stage },
      });
    },
    error(code, message, permanent) {
      if (disposed) return;
      send(EVENT_CHANNELS.error, {
        jobId,
        type: 'error',
        timestamp: new Date().toISOString(),
        payload: { code: code.slice(0, 64), message: String(message).slice(0, LOG_MAX), stage, permanent },
      });
    },
    get finalSent() {
      return finalSent;
    },
    async dispose() {
      disposed = true;
      clearTimeout(timer);
      timer = undefined;
      pending = undefined;
      await Promise.allSettled([...inFlight]);
    },
  };
}
