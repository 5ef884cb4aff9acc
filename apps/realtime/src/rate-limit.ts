/**
 * Per-socket limits on what a client sends: a token bucket (a burst, then a steady rate), and an
 * abuse counter that tells when a client keeps sending after being told to slow down.
 */
export interface TokenBucket {
  /** Takes one token; false when the bucket is empty (the event must be refused). */
  take(): boolean;
}

export function createTokenBucket(opts: { ratePerSecond: number; burst: number; now?: () => number }): TokenBucket {
  const now = opts.now ?? (() => performance.now());
  const capacity = Math.max(1, opts.burst);
  const perMs = opts.ratePerSecond / 1000;
  let tokens = capacity;
  let last = now();
  return {
    take() {
      const t = now();
      tokens = Math.min(capacity, tokens + (t - last) * perMs);
      last = t;
      if (tokens < 1) return false;
      tokens -= 1;
      return true;
    },
  };
}

export interface AbuseTracker {
  /** Records one refused event; true once `max` were refused within the window (sustained abuse). */
  strike(): boolean;
  /** Whether a "slow down" notice may be sent now (at most one per `noticeIntervalMs`). */
  mayNotify(): boolean;
}

export function createAbuseTracker(opts: { max: number; windowMs?: number; noticeIntervalMs?: number; now?: () => number }): AbuseTracker {
  const now = opts.now ?? (() => performance.now());
  const windowMs = opts.windowMs ?? 10_000;
  const noticeIntervalMs = opts.noticeIntervalMs ?? 1_000;
  let windowStart = now();
  let count = 0;
  let lastNotice = Number.NEGATIVE_INFINITY;
  return {
    strike() {
      const t = now();
      if (t - windowStart >= windowMs) {
        windowStart = t;
        count = 0;
      }
      count += 1;
      return count >= opts.max;
    },
    mayNotify() {
      const t = now();
      if (t - lastNotice < noticeIntervalMs) return false;
      lastNotice = t;
      return true;
    },
  };
}
