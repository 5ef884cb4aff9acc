import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { closeDatabase, openDatabase } from '@dubgate/db/open';
import { createJobsRepository } from '@dubgate/db/jobs';
import { createAuthRepository } from '@dubgate/db/auth';
import { createBatchJobCache } from '../src/batch-job-cache.js';

const cleanups: Array<() => void> = [];
afterEach(() => cleanups.splice(0).reverse().forEach((c) => c()));

function setup(n: number) {
  const dir = mkdtempSync(join(tmpdir(), 'dubgate-cache-'));
  const db = openDatabase(join(dir, 'gateway.db'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }), () => closeDatabase(db));
  const user = createAuthRepository(db).createUser({ username: 'u', passwordHash: 'x', role: 'user' });
  if (!user.ok) throw new Error('no user');
  const jobs = createJobsRepository(db);
  const ids = Array.from({ length: n }, (_, i) => {
    const r = jobs.insertJob({ ownerId: user.user.id, url: `https://videos.example.com/${i}`, requestedDubbing: false, targetLang: null, formatPreset: 'best', outputContainer: 'mp4' });
    if (!r.ok) throw new Error('no job');
    return r.job.id;
  });
  // Counts the reads that reach SQLite.
  const reads = { one: 0, many: 0 };
  const counted = {
    getJob: (id: string) => (reads.one++, jobs.getJob(id)),
    getJobs: (list: readonly string[]) => (reads.many++, jobs.getJobs(list)),
  };
  return { jobs, ids, reads, cache: createBatchJobCache(counted, 4) };
}

describe('batch job cache', () => {
  it('reads a batch in chunks, then serves it without reading again', () => {
    const { ids, reads, cache, jobs } = setup(10);
    cache.load([...ids, ids[0]!, 'no-such-job']);
    expect(reads).toEqual({ one: 0, many: 3 }); // 11 distinct ids in chunks of 4
    for (const id of ids) expect(cache.get(id)).toEqual(jobs.getJob(id));
    expect(cache.get('no-such-job')).toBeNull();
    expect(reads).toEqual({ one: 0, many: 3 });
  });

  it('keeps what the scheduler wrote, reads again what it forgot, and empties on clear', () => {
    const { ids, reads, cache, jobs } = setup(2);
    const [a, b] = ids as [string, string];
    cache.load([a]);
    const moved = jobs.updateJobState(a, { from: 'QUEUED', to: 'DOWNLOADING' });
    if (!moved.ok) throw new Error('not moved');
    cache.remember(moved.job);
    expect(cache.get(a)?.status).toBe('DOWNLOADING');
    jobs.setAttempt(a, 3);
    cache.forget(a);
    expect(cache.get(a)?.attempt).toBe(3);
    expect(reads.one).toBe(1);
    expect(cache.get(b)?.status).toBe('QUEUED'); // not loaded: read on demand, then kept
    cache.get(b);
    expect(reads.one).toBe(2);
    cache.clear();
    cache.get(b);
    expect(reads.one).toBe(3);
  });
});
