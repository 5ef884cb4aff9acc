import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Redis } from 'ioredis';
import {
  closeRedis,
  createRedisConnection,
  pingWithTimeout,
  reconnectDelay,
  redisOptionsFor,
  waitForReady,
  type RedisRole,
} from '../src/connections.js';
import { createStageQueues } from '../src/stage-queues.js';
import { capturingLogger, closedPort, downloadPayload, rand, redisUrl, startHungRedis, uniqueJobId, uniquePrefix, waitFor } from './helpers.js';

// Above the sum of a test's waits (generous deadlines that return as soon as the condition holds).
vi.setConfig({ testTimeout: 60_000 });

const open: Redis[] = [];
const track = (r: Redis) => (open.push(r), r);
afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => closeRedis(r)));
});

describe('redis connection roles', () => {
  it('gives each role the settings its job needs', () => {
    expect(redisOptionsFor('worker').maxRetriesPerRequest).toBeNull();
    expect(redisOptionsFor('subscriber')).toMatchObject({ maxRetriesPerRequest: null, autoResubscribe: true });
    expect(redisOptionsFor('adapter')).toMatchObject({ maxRetriesPerRequest: null, autoResubscribe: true });
    const producer = redisOptionsFor('producer');
    expect(producer).toMatchObject({ enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    expect(producer.connectTimeout).toBeLessThanOrEqual(2_000);
    expect(producer.commandTimeout).toBeLessThanOrEqual(5_000);
    expect(redisOptionsFor('publisher')).toMatchObject({ enableOfflineQueue: true, maxRetriesPerRequest: 2 });
    for (const role of ['worker', 'producer', 'subscriber', 'publisher', 'adapter'] as RedisRole[]) {
      const o = redisOptionsFor(role);
      expect(o.connectionName).toBe(`dubgate:${role}`);
      expect(o.lazyConnect).toBe(false);
      expect(typeof o.retryStrategy).toBe('function');
    }
    expect(() => redisOptionsFor('nope' as RedisRole)).toThrow(/unknown Redis role/);
  });

  it('backs off exponentially up to a cap and never gives up', () => {
    for (let attempt = 1; attempt < 200; attempt++) {
      const d = reconnectDelay(attempt, 100, 5_000);
      expect(d).toBeGreaterThanOrEqual(Math.min(5_000, 100 * 2 ** (attempt - 1)) / 2 - 1);
      expect(d).toBeLessThanOrEqual(5_000);
    }
    expect(reconnectDelay(1, 100, 5_000)).toBeLessThanOrEqual(100);
  });

  it('names the connection for CLIENT LIST', async () => {
    const name = `dubgate:test-${rand()}`;
    const r = track(createRedisConnection(redisUrl(), 'producer', { connectionName: name }));
    await waitForReady(r);
    const list = await r.client('LIST');
    expect(String(list)).toContain(`name=${name}`);
    const worker = track(createRedisConnection(redisUrl(), 'worker'));
    await waitForReady(worker);
    expect(String(await worker.client('GETNAME'))).toBe('dubgate:worker');
  });

  it('producer: an enqueue fails within 2 s when Redis is unreachable instead of hanging', async () => {
    const logger = capturingLogger();
    const r = track(createRedisConnection(`redis://127.0.0.1:${await closedPort()}`, 'producer', { logger }));
    const queues = createStageQueues({ connection: r, prefix: uniquePrefix(), retries: { download: 1, dub: 1, mux: 1 }, logger });
    try {
      const started = Date.now();
      await expect(queues.enqueue('download', downloadPayload(uniqueJobId()))).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(2_000);
      const counts = Date.now();
      await expect(queues.counts()).rejects.toThrow();
      expect(Date.now() - counts).toBeLessThan(2_000);
    } finally {
      await queues.close();
    }
  });

  it('producer: a command against a hung Redis is bounded by commandTimeout', async () => {
    const hung = await startHungRedis();
    try {
      const r = track(createRedisConnection(hung.url, 'producer', { logger: capturingLogger() }));
      await waitForReady(r);
      const queues = createStageQueues({ connection: r, prefix: uniquePrefix(), retries: { download: 0, dub: 0, mux: 0 } });
      try {
        const started = Date.now();
        await expect(queues.enqueue('download', downloadPayload(uniqueJobId()))).rejects.toThrow(/timed out/i);
        expect(Date.now() - started).toBeLessThan(4_500);
      } finally {
        await queues.close();
      }
    } finally {
      await hung.close();
    }
  });

  it('logs connection errors through the injected logger, once per run of identical errors', async () => {
    const logger = capturingLogger();
    const r = track(
      createRedisConnection(`redis://127.0.0.1:${await closedPort()}`, 'worker', { logger, retryBaseDelayMs: 10, retryMaxDelayMs: 20 }),
    );
    // Wait for a run of identical errors (counted on a listener of our own), not a fixed time.
    let seen = 0;
    r.on('error', () => void seen++);
    await waitFor(() => seen >= 5);
    const errors = logger.entries.filter((e) => e.msg === 'redis connection error');
    expect(errors.length).toBe(1);
    expect(errors[0]!.obj).toMatchObject({ redisRole: 'worker', connectionName: 'dubgate:worker' });
    expect(r.status).not.toBe('end');
  });
});

describe('pingWithTimeout', () => {
  it('is true on a live Redis', async () => {
    const r = track(createRedisConnection(redisUrl(), 'producer'));
    await waitForReady(r);
    expect(await pingWithTimeout(r, 500)).toBe(true);
  });

  it('is false on a closed port, within its bound', async () => {
    const r = track(createRedisConnection(`redis://127.0.0.1:${await closedPort()}`, 'worker', { logger: capturingLogger() }));
    const started = Date.now();
    expect(await pingWithTimeout(r, 300)).toBe(false);
    expect(Date.now() - started).toBeLessThan(400);
  });

  it('is false when Redis accepts the connection but never answers', async () => {
    const hung = await startHungRedis();
    try {
      const r = track(createRedisConnection(hung.url, 'worker', { logger: capturingLogger() }));
      await waitForReady(r);
      // Fake timers for the bound itself: exact, whatever the machine's load (the server never
      // answers, so only the timer can settle it).
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      let result: boolean | undefined;
      try {
        const pinging = pingWithTimeout(r, 300).then((v) => (result = v));
        await vi.advanceTimersByTimeAsync(299);
        expect(result).toBeUndefined();
        await vi.advanceTimersByTimeAsync(1);
        await pinging;
      } finally {
        vi.useRealTimers();
      }
      expect(result).toBe(false);
      // The pending PING must not keep the socket alive past close.
      await closeRedis(r, 200);
      expect(r.status).toBe('end');
    } finally {
      await hung.close();
    }
  });
});

describe('closeRedis', () => {
  it('quits gracefully and is safe to call twice', async () => {
    const r = createRedisConnection(redisUrl(), 'publisher');
    await waitForReady(r);
    await Promise.all([closeRedis(r), closeRedis(r)]);
    await closeRedis(r);
    expect(r.status).toBe('end');
  });

  it('disconnects a connection that never came up', async () => {
    const r = createRedisConnection(`redis://127.0.0.1:${await closedPort()}`, 'producer', { logger: capturingLogger() });
    const started = Date.now();
    await closeRedis(r);
    await waitFor(() => r.status === 'end', 1_000);
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});
