import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../src/logger.js';
import { callOnce, closeAll, createShutdown } from '../src/shutdown.js';

function setup(timeoutMs = 1000) {
  const lines: string[] = [];
  const logger = createLogger({ name: 'test', level: 'debug', destination: { write: (l: string) => void lines.push(l) } });
  const exit = vi.fn<(code: number) => void>();
  const signals = new EventEmitter();
  const shutdown = createShutdown({ logger, timeoutMs, exit, signals });
  const logs = () => lines.map((l) => JSON.parse(l) as { level: number; msg: string; [k: string]: unknown });
  return { shutdown, exit, signals, logs };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// These tests are about time budgets: fake timers (setTimeout, Date and performance.now, which
// shutdown's clock reads) make every duration exact, whatever the machine's load. A test moves
// time on with advanceTimersByTimeAsync, which also runs the promise callbacks in between.
beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('createShutdown', () => {
  it('runs steps last-added first and exits 0', async () => {
    const { shutdown, exit, logs } = setup();
    const order: string[] = [];
    shutdown.add('sqlite', () => void order.push('sqlite'));
    shutdown.add('redis', async () => {
      await sleep(5);
      order.push('redis');
    });
    shutdown.add('http', () => void order.push('http'));
    const running = shutdown.run('test');
    await vi.advanceTimersByTimeAsync(5);
    const report = await running;
    expect(order).toEqual(['http', 'redis', 'sqlite']);
    expect(report).toMatchObject({ reason: 'test', code: 0, timedOut: false });
    expect(report.steps.map((s) => [s.name, s.status])).toEqual([
      ['http', 'ok'],
      ['redis', 'ok'],
      ['sqlite', 'ok'],
    ]);
    expect(exit).toHaveBeenCalledTimes(1);
    expect(exit).toHaveBeenCalledWith(0);
    expect(logs().map((l) => l.msg)).toEqual(['shutting down', 'closed http', 'closed redis', 'closed sqlite', 'shutdown complete']);
  });

  it('runs every step even when one throws, then exits 1', async () => {
    const { shutdown, exit, logs } = setup();
    const ran: string[] = [];
    shutdown.add('a', () => void ran.push('a'));
    shutdown.add('b', () => {
      ran.push('b');
      throw new Error('b broke');
    });
    shutdown.add('c', async () => {
      ran.push('c');
      throw new Error('c broke');
    });
    const report = await shutdown.run('SIGTERM');
    expect(ran).toEqual(['c', 'b', 'a']);
    expect(report.code).toBe(1);
    expect(report.steps.map((s) => s.status)).toEqual(['failed', 'failed', 'ok']);
    expect((report.steps[0]!.error as Error).message).toBe('c broke');
    expect(exit).toHaveBeenCalledWith(1);
    const failed = logs().find((l) => l.msg === 'closing b failed');
    expect(failed).toMatchObject({ level: 50, step: 'b', err: { message: 'b broke' } });
  });

  it('bounds a hanging step by the remaining time and still calls the rest', async () => {
    const { shutdown, exit } = setup(100);
    const ran: string[] = [];
    shutdown.add('sqlite', () => void ran.push('sqlite')); // synchronous close still happens
    shutdown.add('worker', () => new Promise(() => {})); // never settles
    const started = Date.now();
    const running = shutdown.run('SIGTERM');
    await vi.advanceTimersByTimeAsync(99);
    expect(exit).not.toHaveBeenCalled(); // still within the budget
    await vi.advanceTimersByTimeAsync(1);
    const report = await running;
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(90);
    expect(elapsed).toBeLessThan(2000);
    expect(report.timedOut).toBe(true);
    expect(report.steps.map((s) => [s.name, s.status])).toEqual([
      ['worker', 'timeout'],
      ['sqlite', 'ok'],
    ]);
    expect(ran).toEqual(['sqlite']);
    expect(exit).toHaveBeenCalledWith(1);
  });

  it('shares the time budget between steps', async () => {
    const { shutdown } = setup(300);
    shutdown.add('second', () => sleep(5000));
    shutdown.add('first', () => sleep(20));
    const running = shutdown.run('x');
    await vi.advanceTimersByTimeAsync(300);
    const report = await running;
    expect(report.steps.map((s) => s.status)).toEqual(['ok', 'timeout']);
    // the second step got what the first left, not a fresh 300 ms
    expect(report.steps[1]!.durationMs).toBeLessThan(295);
    expect(report.durationMs).toBeLessThan(2000);
  });

  it('returns the same promise on a second run()', async () => {
    const { shutdown, exit } = setup();
    const step = vi.fn(() => sleep(10));
    shutdown.add('once', step);
    const first = shutdown.run('a');
    const second = shutdown.run('b');
    expect(second).toBe(first);
    expect(shutdown.started).toBe(true);
    await vi.advanceTimersByTimeAsync(10);
    expect((await second).reason).toBe('a');
    expect(step).toHaveBeenCalledTimes(1);
    expect(exit).toHaveBeenCalledTimes(1);
  });

  it('lets a step be removed, and ignores steps added after shutdown began', async () => {
    const { shutdown } = setup();
    const removed = vi.fn();
    const remove = shutdown.add('gone', removed);
    remove();
    const run = shutdown.run('x');
    const late = vi.fn();
    shutdown.add('late', late);
    const report = await run;
    expect(report.steps).toEqual([]);
    expect(removed).not.toHaveBeenCalled();
    expect(late).not.toHaveBeenCalled();
  });
});

describe('listen', () => {
  it('shuts down on SIGTERM; a second signal forces exit 1', async () => {
    const { shutdown, exit, signals, logs } = setup();
    let release!: () => void;
    shutdown.add('drain', () => new Promise<void>((r) => (release = r)));
    const unlisten = shutdown.listen();
    expect(shutdown.listen()).toBe(unlisten);
    signals.emit('SIGTERM', 'SIGTERM');
    expect(shutdown.started).toBe(true);
    await vi.advanceTimersByTimeAsync(5);
    expect(exit).not.toHaveBeenCalled();
    signals.emit('SIGINT', 'SIGINT');
    expect(exit).toHaveBeenCalledWith(1);
    expect(logs().some((l) => l.msg === 'second signal during shutdown; exiting now')).toBe(true);
    release();
    await shutdown.run('ignored');
    expect(exit).toHaveBeenLastCalledWith(0);
    unlisten();
    for (const event of ['SIGTERM', 'SIGINT', 'uncaughtException', 'unhandledRejection']) {
      expect(signals.listenerCount(event)).toBe(0);
    }
  });

  it('logs an uncaught exception fatally and exits 1 after cleaning up', async () => {
    const { shutdown, exit, signals, logs } = setup();
    const closed = vi.fn();
    shutdown.add('db', closed);
    shutdown.listen();
    signals.emit('uncaughtException', new Error('kaboom'));
    const report = await shutdown.run('ignored');
    expect(report.reason).toBe('uncaughtException');
    expect(closed).toHaveBeenCalledTimes(1);
    expect(report.code).toBe(1);
    expect(exit).toHaveBeenCalledWith(1);
    expect(logs()[0]).toMatchObject({ level: 60, msg: 'uncaught exception', err: { message: 'kaboom' } });
  });

  it('treats an unhandled rejection during a clean shutdown as a failure', async () => {
    const { shutdown, exit, signals } = setup();
    shutdown.add('slow', () => sleep(10));
    shutdown.listen();
    signals.emit('SIGTERM', 'SIGTERM');
    signals.emit('unhandledRejection', new Error('late'));
    const running = shutdown.run('x');
    await vi.advanceTimersByTimeAsync(10);
    const report = await running;
    expect(report.reason).toBe('SIGTERM');
    expect(report.code).toBe(1);
    expect(exit).toHaveBeenCalledTimes(1);
    expect(exit).toHaveBeenCalledWith(1);
  });
});

describe('closeAll', () => {
  it('runs every step and rethrows a single error as is', async () => {
    const ran: number[] = [];
    const boom = new Error('boom');
    await expect(
      closeAll([
        () => void ran.push(1),
        () => {
          throw boom;
        },
        null,
        false,
        async () => void ran.push(3),
      ]),
    ).rejects.toBe(boom);
    expect(ran).toEqual([1, 3]);
  });

  it('collects several errors into an AggregateError', async () => {
    const err = await closeAll([
      () => Promise.reject(new Error('a')),
      () => {
        throw new Error('b');
      },
    ]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AggregateError);
    expect((err as AggregateError).errors.map((e: Error) => e.message)).toEqual(['a', 'b']);
  });

  it('resolves when everything closes', async () => {
    await expect(closeAll([])).resolves.toBeUndefined();
  });
});

describe('callOnce', () => {
  it('makes close() safe to call twice', async () => {
    const fn = vi.fn(async () => 'closed');
    const close = callOnce(fn);
    const [a, b] = await Promise.all([close(), close()]);
    expect([a, b, await close()]).toEqual(['closed', 'closed', 'closed']);
    expect(fn).toHaveBeenCalledTimes(1);
  });
});
