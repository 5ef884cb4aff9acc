import { Redis, type RedisOptions } from 'ioredis';

/**
 * One Redis connection per role (BullMQ's production guide): each role needs different failure
 * behaviour, and a subscriber connection cannot run ordinary commands at all.
 */
export type RedisRole = 'worker' | 'producer' | 'subscriber' | 'publisher' | 'adapter';
export const REDIS_ROLES: readonly RedisRole[] = ['worker', 'producer', 'subscriber', 'publisher', 'adapter'];

/** The part of a pino logger this package uses; pino.Logger satisfies it. */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Used when no logger is injected: errors still go somewhere visible instead of vanishing. */
export const consoleLogger: Logger = {
  info: () => {},
  warn: (obj, msg) => console.warn(msg ?? '', obj),
  error: (obj, msg) => console.error(msg ?? '', obj),
};

const ROLE_OPTIONS: Record<RedisRole, RedisOptions> = {
  // Blocking commands (BZPOPMIN etc.) must wait out an outage instead of failing: BullMQ requires null.
  worker: { maxRetriesPerRequest: null, enableOfflineQueue: true },
  // API requests must answer quickly when Redis is down (the outbox enqueues later), never hang.
  producer: { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2_000, commandTimeout: 3_000 },
  // Subscriptions are queued until connected and restored after every reconnect.
  subscriber: { maxRetriesPerRequest: null, enableOfflineQueue: true, autoResubscribe: true },
  // Pub/Sub is at most once, but a blip (restart, failover) should not drop events needlessly:
  // the offline queue is kept, and maxRetriesPerRequest 2 flushes it with an error after the third
  // failed reconnect (well under a second at first, at most ~3 × the retry cap), so it stays small.
  // Auto-pipelining: the PUBLISHes of one event-loop turn leave in one write (the relay emits tens
  // of thousands a second). Safe here because this role never carries BullMQ commands, which
  // are reported to misbehave with it.
  publisher: { maxRetriesPerRequest: 2, enableOfflineQueue: true, connectTimeout: 2_000, commandTimeout: 3_000, enableAutoPipelining: true },
  // The Socket.IO adapter's pub/sub pair: its subscriptions must survive reconnects, it has its own
  // request timeouts, and node-to-node traffic is small, so commands wait out an outage.
  adapter: { maxRetriesPerRequest: null, enableOfflineQueue: true, autoResubscribe: true },
};

export interface RedisConnectionOptions {
  logger?: Logger;
  /** Reported by `CLIENT LIST`; default `dubgate:<role>`. */
  connectionName?: string;
  /** First reconnect delay (ms), doubled per attempt. Default 100. */
  retryBaseDelayMs?: number;
  /** Cap on the reconnect delay (ms). Default 5000. */
  retryMaxDelayMs?: number;
  /** Any further ioredis options; they override the role's defaults (use with care). */
  redisOptions?: RedisOptions;
}

/** Capped exponential backoff with jitter (half to full delay), so many processes do not reconnect in lockstep. */
export function reconnectDelay(attempt: number, baseMs = 100, maxMs = 5_000): number {
  const full = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 20));
  return Math.round(full / 2 + (Math.random() * full) / 2);
}

/** The ioredis options a role uses (exported for tests and for callers building their own client). */
export function redisOptionsFor(role: RedisRole, opts: RedisConnectionOptions = {}): RedisOptions {
  const base = ROLE_OPTIONS[role];
  if (!base) throw new Error(`unknown Redis role "${String(role)}"`);
  const { retryBaseDelayMs = 100, retryMaxDelayMs = 5_000 } = opts;
  return {
    ...base,
    connectionName: opts.connectionName ?? `dubgate:${role}`,
    lazyConnect: false,
    enableReadyCheck: true,
    // Never give up: the process stays up and reports unhealthy until Redis is back.
    retryStrategy: (times) => reconnectDelay(times, retryBaseDelayMs, retryMaxDelayMs),
    // After a failover the old primary answers READONLY: reconnect to reach the new one.
    reconnectOnError: (err) => err.message.startsWith('READONLY'),
    ...opts.redisOptions,
  };
}

/**
 * A Redis connection for one role. Errors are logged through `logger` (a listener is always
 * attached, so an 'error' event never crashes the process); a run of identical errors while
 * reconnecting is logged once, and the recovery once.
 */
export function createRedisConnection(url: string, role: RedisRole, opts: RedisConnectionOptions = {}): Redis {
  const logger = opts.logger ?? consoleLogger;
  const options = redisOptionsFor(role, opts);
  const redis = new Redis(url, options);
  const name = options.connectionName;

  let lastError: string | undefined;
  let suppressed = 0;
  redis.on('error', (err: Error) => {
    if (err.message === lastError) {
      suppressed++;
      return;
    }
    lastError = err.message;
    logger.warn({ err, redisRole: role, connectionName: name }, 'redis connection error');
  });
  redis.on('ready', () => {
    if (lastError !== undefined) {
      logger.info({ redisRole: role, connectionName: name, suppressedErrors: suppressed }, 'redis connection ready again');
    }
    lastError = undefined;
    suppressed = 0;
  });
  return redis;
}

/** Resolves once `redis` is ready; rejects after `timeoutMs` or when the connection ends. */
export function waitForReady(redis: Redis, timeoutMs = 5_000): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  if (redis.status === 'end') return Promise.reject(new Error('redis connection is closed'));
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      redis.off('end', onEnd);
      if (err) reject(err);
      else resolve();
    };
    const onReady = () => done();
    const onEnd = () => done(new Error('redis connection is closed'));
    const timer = setTimeout(() => done(new Error(`redis not ready within ${timeoutMs} ms`)), timeoutMs);
    redis.once('ready', onReady);
    redis.once('end', onEnd);
  });
}

/**
 * True when Redis answers PING within `timeoutMs`. Never throws, never waits longer: a connection
 * that is not ready answers false at once, so no PING piles up in an offline queue.
 */
export async function pingWithTimeout(redis: Redis, timeoutMs = 1_000): Promise<boolean> {
  if (redis.status !== 'ready') return false;
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      redis.ping().then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

const closing = new WeakMap<Redis, Promise<void>>();

/**
 * QUIT (lets replies in flight arrive), falling back to a hard disconnect after `timeoutMs` or
 * when the connection is not up. Safe to call twice; never rejects.
 */
export function closeRedis(redis: Redis, timeoutMs = 2_000): Promise<void> {
  let p = closing.get(redis);
  if (!p) {
    p = doClose(redis, timeoutMs);
    closing.set(redis, p);
  }
  return p;
}

async function doClose(redis: Redis, timeoutMs: number): Promise<void> {
  if (redis.status === 'end') return;
  const ended = new Promise<void>((resolve) => redis.once('end', () => resolve()));
  if (redis.status === 'ready') {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    try {
      const quit = redis.quit().then(() => ended);
      if ((await Promise.race([quit, timedOut])) !== 'timeout') return;
    } catch {
      // Fall through to the hard disconnect.
    } finally {
      clearTimeout(timer);
    }
  }
  // Not up (QUIT would fail or wait for a reconnect), or QUIT did not finish in time.
  // Between reconnect attempts there is no socket: disconnect() only cancels the timer, and
  // ioredis never emits 'end' (status stays 'reconnecting'), so there is nothing to wait for.
  const betweenAttempts = redis.status === 'reconnecting';
  redis.disconnect();
  if (!betweenAttempts) await waitForEnd(redis, ended, 1_000);
}

/** The socket closes asynchronously after disconnect(); resolve when it did (bounded). */
async function waitForEnd(redis: Redis, ended: Promise<void>, ms: number): Promise<void> {
  if (redis.status === 'end') return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([ended, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
