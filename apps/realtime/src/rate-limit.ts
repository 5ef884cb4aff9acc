/**
 * Per-socket limits on what a client sends: a token bucket (a burst, then a steady rate), and an
 * abuse counter that tells when a client keeps sending after being told to slow down.
 *
 * The state is a plain record of numbers kept on the socket's own state, and the functions are
 * shared: ten thousand sockets then cost ten thousand small records, not two closures each.
 */
export interface RateLimits {
  ratePerSecond: number;
  burst: number;
  /** Refusals within `windowMs` after which the client is disconnected. */
  maxStrikes: number;
  windowMs?: number;
  noticeIntervalMs?: number;
}

export interface RateState {
  tokens: number;
  last: number;
  windowStart: number;
  strikes: number;
  lastNotice: number;
}

export function newRateState(limits: Pick<RateLimits, 'burst'>, now: number): RateState {
  return { tokens: Math.max(1, limits.burst), last: now, windowStart: now, strikes: 0, lastNotice: Number.NEGATIVE_INFINITY };
}

/** Takes one token; false when the bucket is empty (the event must be refused). */
export function takeToken(s: RateState, limits: RateLimits, now: number): boolean {
  s.tokens = Math.min(Math.max(1, limits.burst), s.tokens + ((now - s.last) * limits.ratePerSecond) / 1000);
  s.last = now;
  if (s.tokens < 1) return false;
  s.tokens -= 1;
  return true;
}

/** Records one refused event; true once `maxStrikes` were refused within the window (sustained abuse). */
export function strike(s: RateState, limits: RateLimits, now: number): boolean {
  if (now - s.windowStart >= (limits.windowMs ?? 10_000)) {
    s.windowStart = now;
    s.strikes = 0;
  }
  s.strikes += 1;
  return s.strikes >= limits.maxStrikes;
}

/** Whether a "slow down" notice may be sent now (at most one per `noticeIntervalMs`). */
export function mayNotify(s: RateState, limits: RateLimits, now: number): boolean {
  if (now - s.lastNotice < (limits.noticeIntervalMs ?? 1_000)) return false;
  s.lastNotice = now;
  return true;
}

// The same, as objects: for callers that keep one limiter on its own (and the unit tests).

export interface TokenBucket {
  take(): boolean;
}

export function createTokenBucket(opts: { ratePerSecond: number; burst: number; now?: () => number }): TokenBucket {
  const now = opts.now ?? (() => performance.now());
  const limits: RateLimits = { ratePerSecond: opts.ratePerSecond, burst: opts.burst, maxStrikes: Infinity };
  const s = newRateState(limits, now());
  return { take: () => takeToken(s, limits, now()) };
}

export interface AbuseTracker {
  strike(): boolean;
  mayNotify(): boolean;
}

export function createAbuseTracker(opts: { max: number; windowMs?: number; noticeIntervalMs?: number; now?: () => number }): AbuseTracker {
  const now = opts.now ?? (() => performance.now());
  const limits: RateLimits = {
    ratePerSecond: 0,
    burst: 1,
    maxStrikes: opts.max,
    ...(opts.windowMs !== undefined ? { windowMs: opts.windowMs } : {}),
    ...(opts.noticeIntervalMs !== undefined ? { noticeIntervalMs: opts.noticeIntervalMs } : {}),
  };
  const s = newRateState(limits, now());
  return { strike: () => strike(s, limits, now()), mayNotify: () => mayNotify(s, limits, now()) };
}
