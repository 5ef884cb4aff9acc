import { describe, expect, it } from 'vitest';
import { createJobsRepository } from '../src/jobs-repository.js';
import { mergeSearchIndex, optimizeDatabase, optimizeSearchIndex } from '../src/maintenance.js';
import { jobInput, seedUsers, testDb } from './helpers.js';

describe('search index maintenance', () => {
  it('merges and optimizes without changing what a search finds', () => {
    const { db } = testDb();
    const [u] = seedUsers(db, 'm');
    const jobs = createJobsRepository(db);
    // One transaction per job, as in production: many small segments.
    for (let i = 0; i < 200; i++) {
      const r = jobs.insertJob(jobInput(u!, { url: `https://vimeo.com/${1000 + i}` }));
      if (r.ok && i % 3 === 0) jobs.updateJobState(r.job.id, { from: 'QUEUED', to: 'CANCELED' });
    }
    const before = jobs.listJobs({ search: 'vimeo.com/1', limit: 500 });
    const canceled = jobs.listJobs({ search: 'vimeo', statuses: ['CANCELED'], limit: 500 });
    let rounds = 0;
    while (mergeSearchIndex(db, 64) && rounds < 100) rounds++;
    expect(mergeSearchIndex(db)).toBe(false);
    optimizeSearchIndex(db);
    optimizeDatabase(db);
    expect(jobs.listJobs({ search: 'vimeo.com/1', limit: 500 })).toEqual(before);
    expect(jobs.listJobs({ search: 'vimeo', statuses: ['CANCELED'], limit: 500 })).toEqual(canceled);
    expect(canceled.total).toBe(67);
    // Throws SQLITE_CORRUPT_VTAB when the index is damaged.
    expect(() => db.prepare(`INSERT INTO jobs_fts (jobs_fts, rank) VALUES ('integrity-check', 0)`).run()).not.toThrow();
  });
});
