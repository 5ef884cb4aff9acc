import type { ProgressMessage } from '@dubgate/contracts/events';

/** A progress message that ends a stage: never coalesced away, sent at once. */
export function isFinalProgress(msg: ProgressMessage): boolean {
  return msg.payload.final === true || msg.payload.percent === 100;
}

export interface ProgressCoalescerOptions {
  /** Updates per second per job that get through (at least one gap of 1000/perSecond ms between two). */
  perSecond: number;
  /** Called with each update that gets through, in order per job. */
  emit: (msg: ProgressMessage) => void;
  /** Called once per update replaced by a newer one. */
  onCoalesced?: () => void;
  now?: () => number;
}

export interface ProgressCoalescer {
  /** Takes one update: sends it now, holds it (replacing the one held), or, if final, sends it now. */
  push(msg: ProgressMessage): void;
  /** Sends the update held for this job, if any (before a terminal state change). */
  flushJob(jobId: string): void;
  /** Sends every held update (shutdown). */
  flushAll(): void;
  /** Forgets a job (deleted): its held update is discarded. */
  forget(jobId: string): void;
  /** Clears every timer; held updates are discarded (call flushAll first). Safe twice. */
  close(): void;
  /** Jobs with state (recently sent, or an update held). */
  readonly size: number;
}

interface Entry {
  lastSentAt: number;
  held: ProgressMessage | undefined;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Per-job rate limit with "latest wins": the first update of a quiet job goes at once; later ones
 * within the gap are held, each replacing the previous, and the held one goes when the gap ends.
 * A timer exists only for a job holding an update (an update that goes straight through arms
 * none: at tens of thousands a second those timers were most of the relay's garbage); one sweep
 * per gap forgets the jobs that were quiet for a whole gap.
 */
export function createProgressCoalescer(opts: ProgressCoalescerOptions): ProgressCoalescer {
  if (!(opts.perSecond > 0)) throw new RangeError('perSecond must be > 0');
  const gapMs = 1000 / opts.perSecond;
  const now = opts.now ?? (() => performance.now());
  const entries = new Map<string, Entry>();
  let closed = false;

  function arm(jobId: string, e: Entry, delay: number) {
    if (e.timer) clearTimeout(e.timer);
    e.timer = setTimeout(() => onTimer(jobId), Math.max(0, delay));
    e.timer.unref?.();
  }

  function send(e: Entry, msg: ProgressMessage) {
    e.lastSentAt = now();
    opts.emit(msg);
  }

  function onTimer(jobId: string) {
    const e = entries.get(jobId);
    if (!e) return;
    e.timer = undefined;
    if (!e.held) return;
    const msg = e.held;
    e.held = undefined;
    send(e, msg);
  }

  const sweep = setInterval(() => {
    const t = now();
    for (const [jobId, e] of entries) if (!e.held && !e.timer && t - e.lastSentAt >= gapMs) entries.delete(jobId);
  }, Math.max(gapMs, 100));
  sweep.unref?.();

  return {
    push(msg) {
      if (closed) return;
      const jobId = msg.jobId;
      let e = entries.get(jobId);
      if (!e) {
        e = { lastSentAt: Number.NEGATIVE_INFINITY, held: undefined, timer: undefined };
        entries.set(jobId, e);
      }
      if (isFinalProgress(msg)) {
        if (e.held) {
          e.held = undefined;
          opts.onCoalesced?.();
        }
        if (e.timer) clearTimeout(e.timer);
        e.timer = undefined;
        send(e, msg);
        return;
      }
      if (e.held) {
        e.held = msg;
        opts.onCoalesced?.();
        return;
      }
      const since = now() - e.lastSentAt;
      if (since >= gapMs) send(e, msg);
      else {
        // Held until the gap since the last send ends.
        e.held = msg;
        arm(jobId, e, gapMs - since);
      }
    },
    flushJob(jobId) {
      const e = entries.get(jobId);
      if (!e?.held) return;
      const msg = e.held;
      e.held = undefined;
      if (e.timer) clearTimeout(e.timer);
      e.timer = undefined;
      send(e, msg);
    },
    flushAll() {
      for (const jobId of [...entries.keys()]) this.flushJob(jobId);
    },
    forget(jobId) {
      const e = entries.get(jobId);
      if (!e) return;
      if (e.timer) clearTimeout(e.timer);
      entries.delete(jobId);
    },
    close() {
      closed = true;
      clearInterval(sweep);
      for (const e of entries.values()) if (e.timer) clearTimeout(e.timer);
      entries.clear();
    },
    get size() {
      return entries.size;
    },
  };
}
