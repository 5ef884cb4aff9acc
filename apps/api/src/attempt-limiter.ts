/**
 * Fixed-window counter per key (client address, username) for login attempts.
 * In memory: each api instance limits on its own; nginx limits in front of all of them.
 */
export interface AttemptLimiter {
  /** Counts an attempt; returns seconds to wait when over the limit, else 0. */
  hit(key: string, now?: number): number;
  reset(key: string): void;
}

export function createAttemptLimiter(opts: { max: number; windowMs: number; maxKeys?: number }): AttemptLimiter {
  const windows = new Map<string, { start: number; count: number }>();
  const maxKeys = opts.maxKeys ?? 100_000;

  function prune(now: number) {
    for (const [key, w] of windows) if (now - w.start >= opts.windowMs) windows.delete(key);
  }

  return {
    hit(key, now = Date.now()) {
      let w = windows.get(key);
      if (!w || now - w.start >= opts.windowMs) {
        if (windows.size >= maxKeys) prune(now);
        w = { start: now, count: 0 };
        windows.set(key, w);
      }
      w.count += 1;
      return w.count > opts.max ? Math.ceil((w.start + opts.windowMs - now) / 1000) : 0;
    },
    reset(key) {
      windows.delete(key);
    },
  };
}
