import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * One scheduler acts at a time: a Redis key held with a TTL and renewed well before it
 * expires. A second scheduler keeps trying and takes over within `ttlMs` of the first dying.
 * Losing the key (a long pause, Redis failover) stops acting at once.
 */
export interface LeaderLockOptions {
  redis: Redis;
  key: string;
  ttlMs: number;
  /** How often to renew or retry; default ttl / 3. */
  intervalMs?: number;
  onAcquired: () => void | Promise<void>;
  onLost: () => void | Promise<void>;
  logger?: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
}

export interface LeaderLock {
  readonly id: string;
  isLeader(): boolean;
  start(): void;
  /** Stops renewing and releases the key if held (so a successor takes over at once). */
  stop(): Promise<void>;
}

// Renew only our own lock; release only our own lock.
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

export function createLeaderLock(opts: LeaderLockOptions): LeaderLock {
  const id = `${process.pid}-${randomUUID()}`;
  const intervalMs = opts.intervalMs ?? Math.max(100, Math.floor(opts.ttlMs / 3));
  let leader = false;
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  let ticking: Promise<void> = Promise.resolve();

  async function becomeFollower(reason: string) {
    if (!leader) return;
    leader = false;
    opts.logger?.warn({ lock: opts.key, reason }, 'lost scheduler leadership');
    await opts.onLost();
  }

  async function tick() {
    try {
      if (leader) {
        const renewed = await opts.redis.eval(RENEW, 1, opts.key, id, String(opts.ttlMs));
        if (renewed !== 1) await becomeFollower('lock expired or taken');
      } else {
        const got = await opts.redis.set(opts.key, id, 'PX', opts.ttlMs, 'NX');
        if (got === 'OK' && stopped) {
          // stop() came while we asked: give it back instead of making a successor wait the TTL.
          await opts.redis.eval(RELEASE, 1, opts.key, id);
        } else if (got === 'OK') {
          leader = true;
          opts.logger?.info({ lock: opts.key, id }, 'acquired scheduler leadership');
          await opts.onAcquired();
        }
      }
    } catch (err) {
      // Redis unreachable: we cannot prove we still hold the lock, so stop acting.
      await becomeFollower(`redis error: ${(err as Error).message}`);
    }
  }

  function schedule() {
    if (stopped) return;
    timer = setTimeout(() => {
      ticking = tick().finally(schedule);
    }, intervalMs);
  }

  return {
    id,
    isLeader: () => leader,
    start() {
      ticking = tick().finally(schedule);
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await ticking;
      if (leader) {
        await becomeFollower('stopping');
        await opts.redis.eval(RELEASE, 1, opts.key, id).catch(() => undefined);
      }
    },
  };
}
