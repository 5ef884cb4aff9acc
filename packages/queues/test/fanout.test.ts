import { afterEach, describe, expect, it, vi } from 'vitest';
import { Redis } from 'ioredis';
import { createFanoutPublisher, FANOUT_MAX_BYTES, fanoutChannel, parseFanoutMessage } from '../src/fanout.js';
import { rand, redisUrl } from './helpers.js';

// Above the sum of a test's waits (generous deadlines that return as soon as the condition holds).
vi.setConfig({ testTimeout: 90_000 });

const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A subscriber on the channel of a fresh adapter key, recording every message. */
async function listen(key: string) {
  const sub = new Redis(redisUrl());
  cleanups.push(() => sub.quit());
  const messages: string[] = [];
  sub.on('message', (_channel: string, m: string) => messages.push(m));
  await sub.subscribe(fanoutChannel(key));
  return messages;
}

function publisherRedis() {
  const redis = new Redis(redisUrl());
  cleanups.push(() => redis.quit());
  return redis;
}

const progress = (n: number) => ({ jobId: `j${n}`, type: 'download' as const, percent: n, speed: null, eta: null, stage: null });

describe('fan-out publisher', () => {
  it('sends the events of one event-loop turn as one message, in order, that the decoder accepts', async () => {
    const key = `sio-${rand()}`;
    const messages = await listen(key);
    const emitted: string[] = [];
    const fanout = createFanoutPublisher(publisherRedis(), { key, onEmitted: (e) => emitted.push(e) });
    expect(fanout.channel).toBe(`${key}#relay`);
    for (let i = 0; i < 5; i++) expect(fanout.emit([`job:j${i}`], 'progress', progress(i))).toBe(true);
    expect(fanout.emit(['user:u', 'admins'], 'job_removed', { jobId: 'x' })).toBe(true);
    await fanout.flushed();
    await expect.poll(() => messages.length, { timeout: 30_000 }).toBe(1);
    const parsed = parseFanoutMessage(messages[0]!);
    expect(parsed.ok && parsed.events.map((e) => [e.rooms, e.event, e.payload])).toEqual([
      ...[0, 1, 2, 3, 4].map((i) => [[`job:j${i}`], 'progress', progress(i)]),
      [['user:u', 'admins'], 'job_removed', { jobId: 'x' }],
    ]);
    expect(emitted).toEqual([...Array(5).fill('progress'), 'job_removed']);
    // The next turn is the next message.
    fanout.emit(['job:j9'], 'progress', progress(9));
    await fanout.flushed();
    await expect.poll(() => messages.length, { timeout: 30_000 }).toBe(2);
  });

  it('cuts batches at the event and byte limits, losing nothing and keeping the order', async () => {
    const key = `sio-${rand()}`;
    const messages = await listen(key);
    const fanout = createFanoutPublisher(publisherRedis(), { key, maxEvents: 4, maxBytes: 600 });
    for (let i = 0; i < 10; i++) fanout.emit([`job:j${i}`], 'progress', progress(i));
    fanout.emit(['job:big'], 'log', { jobId: 'big', level: 'info', message: 'x'.repeat(700), timestamp: new Date().toISOString() });
    fanout.emit(['job:last'], 'progress', progress(99));
    await fanout.flushed();
    // Batches go out in order on one connection: once the one with the last event is in, all are.
    await expect.poll(() => messages.some((m) => m.includes('job:last')), { timeout: 30_000 }).toBe(true);
    expect(messages.length).toBeGreaterThanOrEqual(4);
    const batches = messages.map((m) => parseFanoutMessage(m));
    expect(batches.every((b) => b.ok)).toBe(true);
    const events = batches.flatMap((b) => (b.ok ? b.events : []));
    expect(events.map((e) => e.rooms[0])).toEqual([...Array.from({ length: 10 }, (_, i) => `job:j${i}`), 'job:big', 'job:last']);
    for (const b of batches) if (b.ok) expect(b.events.length).toBeLessThanOrEqual(4);
    // An event larger than the byte limit goes alone rather than being dropped.
    for (const m of messages) if (!m.includes('job:big')) expect(Buffer.byteLength(m)).toBeLessThanOrEqual(600);
  });

  it('queues nothing for an empty room list or an unencodable payload; a refused publish is reported with its size', async () => {
    const errors: Array<{ err: unknown; events: number }> = [];
    const failing = { publish: () => Promise.reject(new Error('Redis is down')) };
    const fanout = createFanoutPublisher(failing, { onError: (err, events) => errors.push({ err, events }) });
    expect(fanout.emit([], 'job_removed', { jobId: 'x' })).toBe(false);
    const cyclic: Record<string, unknown> = { jobId: 'c' };
    cyclic.self = cyclic;
    expect(fanout.emit(['job:c'], 'job_removed', cyclic as never)).toBe(false);
    expect(errors).toHaveLength(1);
    fanout.emit(['job:a'], 'job_removed', { jobId: 'a' });
    fanout.emit(['job:b'], 'job_removed', { jobId: 'b' });
    await fanout.flushed();
    expect(errors.map((e) => [(e.err as Error).message ?? 'encode', e.events]).slice(1)).toEqual([['Redis is down', 2]]);
  });
});

describe('fan-out decoder', () => {
  const ok = { rooms: ['job:a'], event: 'job_removed', payload: { jobId: 'a' } };
  it('accepts a well-formed batch', () => {
    expect(parseFanoutMessage(JSON.stringify({ v: 1, events: [ok] }))).toEqual({ ok: true, events: [ok] });
    expect(parseFanoutMessage(Buffer.from(JSON.stringify({ v: 1, events: [ok] })))).toEqual({ ok: true, events: [ok] });
  });

  it('refuses, whole, anything else, with a reason', () => {
    const cases: Array<[unknown, string]> = [
      ['{"v":1,', 'invalid_json'],
      [{ v: 2, events: [ok] }, 'schema'],
      [{ v: 1, events: [] }, 'schema'],
      [{ v: 1, events: [{ ...ok, event: 'disconnect' }] }, 'schema'],
      [{ v: 1, events: [{ ...ok, rooms: [] }] }, 'schema'],
      [{ v: 1, events: [{ ...ok, rooms: [''] }] }, 'schema'],
      [{ v: 1, events: [{ ...ok, rooms: Array(65).fill('r') }] }, 'schema'],
      [{ v: 1, events: [ok, { ...ok, payload: null }] }, 'schema'],
      [{ v: 1, events: Array(501).fill(ok) }, 'schema'],
      [{ v: 1, events: [ok], extra: 1 }, 'schema'],
      [{ v: 1, events: [ok], pad: 'x'.repeat(FANOUT_MAX_BYTES) }, 'too_large'],
    ];
    for (const [value, reason] of cases) {
      const raw = typeof value === 'string' ? value : JSON.stringify(value);
      expect(parseFanoutMessage(raw), raw.slice(0, 80)).toEqual({ ok: false, reason });
    }
  });
});
