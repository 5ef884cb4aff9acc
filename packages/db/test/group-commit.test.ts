import { describe, expect, it } from 'vitest';
import { createGroupCommit } from '../src/group-commit.js';
import { createJobsRepository } from '../src/jobs-repository.js';
import { jobInput, seedUsers, testDb } from './helpers.js';

describe('group commit', () => {
  it('writes asked for in one tick share one transaction, and each caller gets its own result', async () => {
    const { db } = testDb();
    const [owner] = seedUsers(db, 'alice');
    const jobs = createJobsRepository(db);
    const sizes: number[] = [];
    const commits = createGroupCommit(db, { onCommit: (n) => sizes.push(n) });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => commits.run(() => jobs.insertJob(jobInput(owner!, { url: `https://example.com/${i}` })))),
    );
    expect(sizes).toEqual([50]);
    expect(results.map((r) => (r.ok && r.created ? r.job.url : null))).toEqual(Array.from({ length: 50 }, (_, i) => `https://example.com/${i}`));
    expect(db.prepare('SELECT count(*) FROM jobs').pluck().get()).toBe(50);
  });

  it('resolves only after the commit: another connection already sees the row', async () => {
    const { db, path } = testDb();
    const [owner] = seedUsers(db, 'alice');
    const jobs = createJobsRepository(db);
    const commits = createGroupCommit(db);
    const { openDatabase, closeDatabase } = await import('../src/open.js');
    const other = openDatabase(path, { migrate: false });
    try {
      const r = await commits.run(() => jobs.insertJob(jobInput(owner!)));
      expect(r.ok).toBe(true);
      expect(other.prepare('SELECT count(*) FROM jobs WHERE id = ?').pluck().get(r.job.id)).toBe(1);
    } finally {
      closeDatabase(other);
    }
  });

  it('a failing write is rejected alone; the others of its batch are committed', async () => {
    const { db } = testDb();
    const [owner] = seedUsers(db, 'alice');
    const jobs = createJobsRepository(db);
    const commits = createGroupCommit(db);
    const outcomes = await Promise.allSettled([
      commits.run(() => jobs.insertJob(jobInput(owner!, { url: 'https://example.com/a' }))),
      commits.run(() => {
        jobs.insertJob(jobInput(owner!, { url: 'https://example.com/half-done' }));
        throw new Error('boom after a write');
      }),
      commits.run(() => jobs.insertJob(jobInput(owner!, { url: 'https://example.com/b' }))),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((outcomes[1] as PromiseRejectedResult).reason).toMatchObject({ message: 'boom after a write' });
    // The failing write's own insert was rolled back with it.
    expect(db.prepare('SELECT url FROM jobs ORDER BY seq').pluck().all()).toEqual(['https://example.com/a', 'https://example.com/b']);
  });

  it('splits batches at maxBatch and keeps the order of the writes', async () => {
    const { db } = testDb();
    db.exec('CREATE TABLE seen (n INTEGER)');
    const insert = db.prepare('INSERT INTO seen (n) VALUES (?)');
    const sizes: number[] = [];
    const commits = createGroupCommit(db, { maxBatch: 7, onCommit: (n) => sizes.push(n) });
    await Promise.all(Array.from({ length: 20 }, (_, i) => commits.run(() => insert.run(i))));
    expect(sizes).toEqual([7, 7, 6]);
    expect(db.prepare('SELECT n FROM seen ORDER BY rowid').pluck().all()).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('when the commit itself cannot happen (database locked), every write of the batch is rejected and nothing is kept', async () => {
    const { db, path } = testDb({ busyTimeoutMs: 50 });
    db.exec('CREATE TABLE seen (n INTEGER)');
    const { openDatabase, closeDatabase } = await import('../src/open.js');
    const holder = openDatabase(path, { migrate: false });
    try {
      holder.exec('BEGIN IMMEDIATE');
      const commits = createGroupCommit(db);
      const insert = db.prepare('INSERT INTO seen (n) VALUES (?)');
      const outcomes = await Promise.allSettled([commits.run(() => insert.run(1)), commits.run(() => insert.run(2))]);
      expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected']);
      expect((outcomes[0] as PromiseRejectedResult).reason).toMatchObject({ code: expect.stringMatching(/^SQLITE_BUSY/) });
      holder.exec('ROLLBACK');
      expect(db.prepare('SELECT count(*) FROM seen').pluck().get()).toBe(0);
      // And it works again once the lock is gone.
      await commits.run(() => insert.run(3));
      expect(db.prepare('SELECT n FROM seen').pluck().all()).toEqual([3]);
    } finally {
      closeDatabase(holder);
    }
  });

  it('flush() commits what is queued at once (shutdown)', () => {
    const { db } = testDb();
    db.exec('CREATE TABLE seen (n INTEGER)');
    const commits = createGroupCommit(db);
    const insert = db.prepare('INSERT INTO seen (n) VALUES (?)');
    void commits.run(() => insert.run(1));
    void commits.run(() => insert.run(2));
    expect(commits.pending).toBe(2);
    commits.flush();
    expect(commits.pending).toBe(0);
    expect(db.prepare('SELECT count(*) FROM seen').pluck().get()).toBe(2);
  });
});
