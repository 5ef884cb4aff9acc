import { describe, expect, it } from 'vitest';
import { createEventsRepository } from '../src/events-repository.js';
import { createJobsRepository } from '../src/jobs-repository.js';
import { jobInput, manualClock, seedUsers, testDb } from './helpers.js';

function setup() {
  const { db } = testDb();
  const time = manualClock();
  const [alice] = seedUsers(db, 'alice');
  const jobs = createJobsRepository(db, { clock: time.clock });
  const events = createEventsRepository(db, { clock: time.clock });
  const newJob = () => (jobs.insertJob(jobInput(alice!)) as { job: { id: string } }).job.id;
  return { db, time, jobs, events, newJob };
}

describe('events repository', () => {
  it('insertEvent appends with defaults and returns increasing ids', () => {
    const { events, newJob, time } = setup();
    const job = newJob();
    time.advance(500);
    const a = events.insertEvent(job, { type: 'log', message: 'hello' })!;
    const b = events.insertEvent(job, { type: 'error', level: 'error', message: 'boom', payload: { code: 'X', n: [1, 2] }, createdAt: '2025-01-01T00:00:09Z' })!;
    expect(b).toBeGreaterThan(a);
    const { items } = events.listEvents(job, { limit: 10 });
    expect(items.slice(1)).toEqual([
      { id: a, jobId: job, type: 'log', level: 'info', message: 'hello', payload: null, createdAt: '2025-01-01T00:00:00.500Z' },
      { id: b, jobId: job, type: 'error', level: 'error', message: 'boom', payload: { code: 'X', n: [1, 2] }, createdAt: '2025-01-01T00:00:09.000Z' },
    ]);
    expect(events.insertEvent('missing', { type: 'log', message: 'x' })).toBeNull();
    expect(() => events.insertEvent(job, { type: 'nope' as never })).toThrow(RangeError);
    expect(() => events.insertEvent(job, { type: 'log', level: 'loud' as never })).toThrow(RangeError);
  });

  it('insertEvents writes a batch in one transaction and skips jobs that are gone', () => {
    const { db, events, jobs, newJob } = setup();
    const j1 = newJob();
    const j2 = newJob();
    jobs.deleteJob(j2);
    const before = db.prepare('SELECT count(*) FROM job_events').pluck().get() as number;
    const ids = events.insertEvents([
      { jobId: j1, type: 'log', message: 'one' },
      { jobId: j2, type: 'log', message: 'for a deleted job' },
      { jobId: j1, type: 'log', level: 'warn', message: 'two' },
    ]);
    expect(ids[1]).toBeNull();
    expect(ids[0]).not.toBeNull();
    expect(ids[2]).toBe(ids[0]! + 1);
    expect(db.prepare('SELECT count(*) FROM job_events').pluck().get()).toBe(before + 2);
    expect(events.insertEvents([])).toEqual([]);

    // One failure in the middle of a batch leaves nothing behind.
    expect(() =>
      events.insertEvents([
        { jobId: j1, type: 'log', message: 'kept?' },
        { jobId: j1, type: 'log', message: 'bad time', createdAt: 'not a date' },
      ]),
    ).toThrow(RangeError);
    expect(db.prepare('SELECT count(*) FROM job_events').pluck().get()).toBe(before + 2);
    // Validation happens before anything is written.
    expect(() => events.insertEvents([{ jobId: j1, type: 'log' }, { jobId: j1, type: 'bogus' as never }])).toThrow(RangeError);
    expect(db.prepare('SELECT count(*) FROM job_events').pluck().get()).toBe(before + 2);
  });

  it('batches are fast enough for the relay', () => {
    const { events, newJob } = setup();
    const job = newJob();
    const batch = Array.from({ length: 5000 }, (_, i) => ({ jobId: job, type: 'progress' as const, level: 'debug' as const, message: `p${i}` }));
    const t = performance.now();
    const ids = events.insertEvents(batch);
    expect(performance.now() - t).toBeLessThan(2000);
    expect(ids.every((id) => id !== null)).toBe(true);
  });

  it('listEvents pages in id order, with a minimum level', () => {
    const { events, newJob } = setup();
    const job = newJob();
    const other = newJob();
    const levels = ['debug', 'info', 'warn', 'error'] as const;
    for (let i = 0; i < 20; i++) {
      events.insertEvent(job, { type: 'log', level: levels[i % 4], message: `m${i}` });
      events.insertEvent(other, { type: 'log', message: `other${i}` });
    }
    const all: string[] = [];
    let after: number | undefined;
    for (;;) {
      const page = events.listEvents(job, { after, limit: 6 });
      all.push(...page.items.map((e) => e.message));
      for (const e of page.items) expect(e.jobId).toBe(job);
      if (page.nextAfter === null) break;
      expect(page.nextAfter).toBe(page.items.at(-1)!.id);
      after = page.nextAfter;
    }
    expect(all).toEqual(['Job created', ...Array.from({ length: 20 }, (_, i) => `m${i}`)]);
    const warn = events.listEvents(job, { limit: 100, level: 'warn' }).items;
    expect(warn.map((e) => e.level)).toEqual(Array(10).fill(0).map((_, i) => (i % 2 === 0 ? 'warn' : 'error')));
    expect(events.listEvents(job, { limit: 21 }).nextAfter).toBeNull();
    expect(events.listEvents(job, { limit: 20 }).nextAfter).not.toBeNull();
    expect(events.listEvents('missing', { limit: 5 })).toEqual({ items: [], nextAfter: null });
  });

  it('ids are never reused, even after the newest job is deleted', () => {
    const { events, jobs, newJob } = setup();
    const a = newJob();
    const last = events.insertEvent(a, { type: 'log', message: 'x' })!;
    jobs.deleteJob(a);
    const b = newJob();
    const next = events.insertEvent(b, { type: 'log', message: 'y' })!;
    expect(next).toBeGreaterThan(last + 1); // b's 'created' event came in between
  });
});
