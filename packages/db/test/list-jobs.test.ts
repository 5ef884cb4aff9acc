import { describe, expect, it } from 'vitest';
import type { Database } from 'better-sqlite3';
import { JOB_STATES, type JobState } from '@dubgate/contracts/states';
import { createJobsRepository, InvalidCursorError, type ListJobsFilters, type ListJobsTuning } from '../src/jobs-repository.js';
import { normalizeSearch, searchPlan } from '../src/list-jobs.js';
import { migrate, MIGRATIONS } from '../src/migrate.js';
import { jobInput, seedUsers, testDb } from './helpers.js';

// Walks of the transition table that end in each state.
const PATHS: Record<JobState, JobState[]> = {
  QUEUED: ['QUEUED'],
  DOWNLOADING: ['QUEUED', 'DOWNLOADING'],
  DOWNLOADED: ['QUEUED', 'DOWNLOADING', 'DOWNLOADED'],
  DUBBING: ['QUEUED', 'DOWNLOADING', 'DOWNLOADED', 'DUBBING'],
  DUBBED: ['QUEUED', 'DOWNLOADING', 'DOWNLOADED', 'DUBBING', 'DUBBED'],
  MUXING: ['QUEUED', 'DOWNLOADING', 'DOWNLOADED', 'MUXING'],
  COMPLETE: ['QUEUED', 'DOWNLOADING', 'DOWNLOADED', 'MUXING', 'COMPLETE'],
  FAILED: ['QUEUED', 'DOWNLOADING', 'FAILED'],
  CANCELED: ['QUEUED', 'CANCELED'],
};

const HOSTS = [
  'https://www.youtube.com/watch?v=',
  'https://youtu.be/',
  'https://vimeo.com/',
  'https://www.twitch.tv/videos/',
  'https://x.com/someone/status/',
  'https://example.org/files/100%_real_',
];

interface ModelJob {
  seq: number;
  id: string;
  ownerId: string;
  state: JobState;
  url: string;
  title: string | null;
}

function build(n: number, tuning?: Partial<ListJobsTuning>) {
  const { db } = testDb();
  const owners = seedUsers(db, 'admin', 'alice', 'bob');
  const jobs = createJobsRepository(db, { listTuning: tuning });
  let x = 12345;
  const rnd = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < n; i++) {
    const owner = owners[Math.floor(rnd() * owners.length)]!;
    const url = `${HOSTS[Math.floor(rnd() * HOSTS.length)]}${Math.floor(rnd() * 1e9).toString(36)}"q${i}`;
    const r = jobs.insertJob(jobInput(owner, { url }));
    if (!r.ok) throw new Error('insert failed');
    const path = PATHS[JOB_STATES[Math.floor(rnd() * JOB_STATES.length)]!];
    for (let k = 1; k < path.length; k++) {
      const t = jobs.updateJobState(r.job.id, { from: path[k - 1]!, to: path[k]! });
      if (!t.ok) throw new Error(t.reason);
    }
    if (rnd() < 0.3) jobs.upsertMedia(r.job.id, 'source', { path: `${r.job.id}/s.mp4`, title: rnd() < 0.5 ? 'Cooking Show' : 'Piano Lesson' });
  }
  return { db, jobs, owners: owners as [string, string, string] };
}

function model(db: Database): ModelJob[] {
  return (
    db.prepare('SELECT seq, id, owner_id AS ownerId, state, url, title FROM jobs ORDER BY seq DESC').all() as ModelJob[]
  );
}

function expected(all: ModelJob[], f: ListJobsFilters): ModelJob[] {
  const term = normalizeSearch(f.search).toLowerCase();
  return all.filter(
    (j) =>
      (!f.ownerId || j.ownerId === f.ownerId) &&
      (!f.statuses || f.statuses.length === 0 || f.statuses.includes(j.state)) &&
      (term === '' || j.url.toLowerCase().includes(term) || (j.title ?? '').toLowerCase().includes(term)),
  );
}

/** Every item of every page, following nextCursor. */
function walk(jobs: ReturnType<typeof createJobsRepository>, f: Omit<ListJobsFilters, 'limit'>, limit: number) {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 1000; pages++) {
    const page = jobs.listJobs({ ...f, limit, cursor });
    ids.push(...page.items.map((j) => j.id));
    if (!page.nextCursor) return ids;
    cursor = page.nextCursor;
  }
  throw new Error('too many pages');
}

const FILTERS: Array<Omit<ListJobsFilters, 'limit' | 'ownerId'> & { owner?: 0 | 1 | 2 }> = [
  {},
  { owner: 1 },
  { statuses: ['FAILED'] },
  { statuses: ['QUEUED', 'CANCELED', 'COMPLETE'] },
  { owner: 2, statuses: ['DUBBING', 'MUXING'] },
  { search: 'youtube' },
  { search: 'YouTube.COM' },
  { search: 'youtu' },
  { search: 'vimeo.com/' },
  { search: 'piano' },
  { search: 'cooking show' },
  { search: '100%_r' },
  { search: '%' },
  { search: '_' },
  { search: '"q1' },
  { search: 'tv' },
  { search: 'x.' },
  { search: 'zzzz-no-match' },
  { owner: 1, search: 'youtube' },
  { owner: 0, statuses: ['COMPLETE', 'FAILED'], search: 'be/' },
  { statuses: ['FAILED'], search: 'http' },
  { owner: 2, statuses: ['QUEUED'], search: 'o' },
  { statuses: [...JOB_STATES], search: 'vimeo' },
  { search: 'https://www.youtube.com/watch?v=' },
  { owner: 1, statuses: ['COMPLETE'], search: 'HTTPS://youtu.be/' },
  { search: 'https://' },
  { search: 'www.x' },
  // Active states share one search-key class: some but not all of them needs a row check.
  { statuses: ['QUEUED'], search: 'youtube' },
  { statuses: ['DOWNLOADING', 'DUBBED'], search: 'youtu' },
  { owner: 1, statuses: ['MUXING', 'FAILED'], search: 'vimeo' },
  { statuses: ['QUEUED', 'DOWNLOADING', 'DOWNLOADED', 'DUBBING', 'DUBBED', 'MUXING'], search: 'youtube' },
  { owner: 2, statuses: ['DUBBING', 'COMPLETE'], search: 'https://youtu.be/' },
];

describe('listJobs', () => {
  const tunings: Array<[string, Partial<ListJobsTuning>]> = [
    ['default tuning (exact)', {}],
    ['index walk with exact counts', { fewHitsLimit: 0, smallSetLimit: 0 }],
    ['tiny caps (bounded scans, inexact totals)', { searchCountCap: 7, fewHitsLimit: 0, smallSetLimit: 0, scanBudget: 9, likeScanLimit: 11 }],
    ['small-set path everywhere', { smallSetLimit: 1_000_000 }],
  ];
  for (const [name, tuning] of tunings) {
    it(`matches a plain model: ${name}`, () => {
      const { db, jobs, owners } = build(240, tuning);
      const all = model(db);
      for (const { owner, ...rest } of FILTERS) {
        const f: ListJobsFilters = { ...rest, ownerId: owner === undefined ? undefined : owners[owner], limit: 10 };
        const want = expected(all, f);
        const label = JSON.stringify({ owner, ...rest });
        // Following the cursors always yields exactly the matching jobs, newest first.
        expect(walk(jobs, f, 10), label).toEqual(want.map((j) => j.id));
        const first = jobs.listJobs(f);
        if (first.totalExact) expect(first.total, label).toBe(want.length);
        else {
          expect(first.total, label).toBeLessThanOrEqual(want.length);
          expect(name, label).toContain('tiny');
        }
        if (!name.includes('tiny')) {
          expect(first.totalExact, label).toBe(true);
          expect(first.items.map((j) => j.id), label).toEqual(want.slice(0, 10).map((j) => j.id));
          expect(first.nextCursor === null, label).toBe(want.length <= 10);
        }
      }
    });
  }

  for (const [name, tuning] of [
    ['default tuning', {}],
    ['index walks', { fewHitsLimit: 0, smallSetLimit: 0 }],
  ] as Array<[string, Partial<ListJobsTuning>]>) {
    it(`pages by offset, and by offset after a cursor: ${name}`, () => {
      const { db, jobs, owners } = build(120, tuning);
      const all = model(db);
      const filters: Array<Omit<ListJobsFilters, 'limit'>> = [
        {},
        { statuses: ['FAILED', 'QUEUED'] },
        { ownerId: owners[1], search: 'youtu' },
        { ownerId: owners[2], statuses: ['CANCELED'], search: 'http' },
      ];
      for (const f of filters) {
        const want = expected(all, { ...f, limit: 0 }).map((j) => j.id);
        const got: string[] = [];
        for (let offset = 0; offset < want.length + 7; offset += 7) {
          got.push(...jobs.listJobs({ ...f, limit: 7, offset }).items.map((j) => j.id));
        }
        expect(got, JSON.stringify(f)).toEqual(want);
      }
      const f = { statuses: ['FAILED', 'QUEUED'] as JobState[] };
      const want = expected(all, { ...f, limit: 0 }).map((j) => j.id);
      const p1 = jobs.listJobs({ ...f, limit: 5 });
      expect(p1.nextCursor).not.toBeNull();
      const p = jobs.listJobs({ ...f, limit: 5, cursor: p1.nextCursor, offset: 3 });
      expect(p.items.map((j) => j.id)).toEqual(want.slice(8, 13));
    });
  }

  it('never shows one owner the jobs of another', () => {
    const { jobs, owners } = build(150);
    for (const owner of owners) {
      for (const f of [{}, { search: 'youtube' }, { statuses: ['COMPLETE'] as JobState[], search: 'http' }, { search: 'o' }]) {
        const ids = walk(jobs, { ...f, ownerId: owner }, 13);
        for (const id of ids) expect(jobs.getJobOwner(id)).toBe(owner);
      }
    }
    expect(jobs.listJobs({ ownerId: 'nobody', limit: 10, search: 'youtube' })).toEqual({ items: [], total: 0, totalExact: true, nextCursor: null });
    expect(jobs.listJobs({ ownerId: 'nobody', limit: 10 }).items).toEqual([]);
  });

  it('tells owners apart even when they share the overflow key code', () => {
    const { db } = testDb();
    const add = db.prepare(`INSERT INTO users (id, username, password_hash, created_at, num) VALUES (?, ?, 'h', '2025-01-01T00:00:00Z', ?)`);
    const [a, b] = ['carol', 'dave'];
    add.run(a, a, 300);
    add.run(b, b, 301);
    expect(() => db.prepare('UPDATE users SET num = 5 WHERE id = ?').run(a)).toThrow(/never changes/);
    const jobs = createJobsRepository(db, { listTuning: { smallSetLimit: 0, fewHitsLimit: 0 } });
    for (let i = 0; i < 10; i++) jobs.insertJob(jobInput(i % 2 === 0 ? a! : b!, { url: `https://vimeo.com/${i}` }));
    const forA = jobs.listJobs({ ownerId: a!, search: 'vimeo', limit: 50 });
    expect(forA.total).toBe(5);
    expect(forA.items).toHaveLength(5);
    expect(forA.items.every((j) => j.ownerId === a)).toBe(true);
    const few = createJobsRepository(db, { listTuning: { smallSetLimit: 0 } }).listJobs({ ownerId: b!, search: 'vimeo', limit: 50 });
    expect(few.items.map((j) => j.ownerId)).toEqual(Array(5).fill(b));
  });

  it('reports capped totals for broad searches', () => {
    const { db, jobs } = build(60, { searchCountCap: 10, likeScanLimit: 10, fewHitsLimit: 0 });
    const all = model(db);
    const r = jobs.listJobs({ search: 'http', limit: 5 });
    expect(r).toMatchObject({ total: 10, totalExact: false });
    expect(r.items.map((j) => j.id)).toEqual(all.slice(0, 5).map((j) => j.id));
    const short = jobs.listJobs({ search: 'tp', limit: 5 });
    expect(short.totalExact).toBe(false);
    expect(short.total).toBeLessThanOrEqual(all.length);
    // Without a search the totals come from job_counts: always exact.
    expect(jobs.listJobs({ limit: 5 })).toMatchObject({ total: 60, totalExact: true });
  });

  it('stops a sparse search at the budget and continues from where it stopped', () => {
    const { db, jobs, owners } = build(200, { scanBudget: 20, searchCountCap: 10, smallSetLimit: 0, fewHitsLimit: 0 });
    const all = model(db);
    const f = { ownerId: owners[2], statuses: ['CANCELED'] as JobState[], search: 'http' };
    const want = expected(all, { ...f, limit: 0 });
    const first = jobs.listJobs({ ...f, limit: 50 });
    expect(first.items.length).toBeLessThan(want.length);
    expect(first.nextCursor).not.toBeNull();
    expect(walk(jobs, f, 50)).toEqual(want.map((j) => j.id));
  });

  it('ignores a leading scheme and www. in the search term', () => {
    expect(normalizeSearch('https://www.youtube.com/watch?v=abc')).toBe('youtube.com/watch?v=abc');
    expect(normalizeSearch('  HTTP://youtu.be/x ')).toBe('youtu.be/x');
    expect(normalizeSearch('https://x.c')).toBe('x.c');
    expect(normalizeSearch('https://x')).toBe('https://x'); // too little left: keep it whole
    expect(normalizeSearch('www.ab')).toBe('www.ab');
    expect(normalizeSearch('youtube')).toBe('youtube');
    expect(normalizeSearch(undefined)).toBe('');
    const { db } = testDb();
    const [u] = seedUsers(db, 'u');
    const jobs = createJobsRepository(db);
    jobs.insertJob(jobInput(u!, { url: 'http://youtu.be/abcdef' }));
    expect(jobs.listJobs({ search: 'https://youtu.be/abc', limit: 5 }).total).toBe(1);
  });

  it('looks long terms up by their most id-like word and checks the whole term', () => {
    expect(searchPlan('youtube')).toEqual({ phrase: 'youtube', verify: false });
    expect(searchPlan('youtube.com/watch?v=dQw4w9WgXcQ')).toEqual({ phrase: 'dQw4w9WgXcQ', verify: true });
    expect(searchPlan('twitch.tv/videos/5115203631')).toEqual({ phrase: '5115203631', verify: true });
    expect(searchPlan('youtube.com/watch')).toEqual({ phrase: 'youtube.com/watch', verify: false });
    const { db } = testDb();
    const [u] = seedUsers(db, 'u');
    const jobs = createJobsRepository(db, { listTuning: { fewHitsLimit: 0, smallSetLimit: 0 } });
    jobs.insertJob(jobInput(u!, { url: 'https://www.twitch.tv/videos/5115203631' }));
    jobs.insertJob(jobInput(u!, { url: 'https://vimeo.com/5115203631' })); // same id, other site
    for (const tuning of [{}, { fewHitsLimit: 0, smallSetLimit: 0 }]) {
      const repo = createJobsRepository(db, { listTuning: tuning });
      expect(repo.listJobs({ search: 'https://www.twitch.tv/videos/5115203631', limit: 5 }).items.map((j) => j.url)).toEqual([
        'https://www.twitch.tv/videos/5115203631',
      ]);
      expect(repo.listJobs({ search: 'https://www.twitch.tv/videos/5115203631', limit: 5, ownerId: u! }).total).toBe(1);
      expect(repo.listJobs({ search: '5115203631', limit: 5 }).total).toBe(2);
    }
  });

  it('refuses a cursor it did not make', () => {
    const { jobs } = build(3);
    for (const bad of ['nope', 'bm9wZQ', '', 'a b', Buffer.from('j1.-5').toString('base64url'), Buffer.from('j1.zzzzzzzzzzzz').toString('base64url')]) {
      if (bad === '') continue; // empty means no cursor
      expect(() => jobs.listJobs({ limit: 5, cursor: bad })).toThrow(InvalidCursorError);
    }
    expect(() => jobs.listJobs({ limit: 5, cursor: '' })).not.toThrow();
  });

  it('clamps the limit and treats an empty status list as no filter', () => {
    const { jobs } = build(30);
    expect(jobs.listJobs({ limit: 0 }).items).toHaveLength(1);
    expect(jobs.listJobs({ limit: 5000 }).items).toHaveLength(30);
    expect(jobs.listJobs({ limit: 100, statuses: [] }).total).toBe(30);
  });

  it('moves a job to a new search key only when it ends or is retried, not on each transition', () => {
    const { db } = testDb();
    const [u] = seedUsers(db, 'u');
    const jobs = createJobsRepository(db);
    const r = jobs.insertJob(jobInput(u!, { url: 'https://vimeo.com/424242' }));
    if (!r.ok) throw new Error('insert failed');
    const key = () => db.prepare(`SELECT rowid FROM jobs_fts WHERE jobs_fts MATCH '"424242"'`).pluck().all() as number[];
    const first = key();
    expect(first).toHaveLength(1);
    const steps: JobState[] = ['QUEUED', 'DOWNLOADING', 'DOWNLOADED', 'DUBBING', 'DUBBED', 'MUXING'];
    for (let i = 1; i < steps.length; i++) {
      expect(jobs.updateJobState(r.job.id, { from: steps[i - 1]!, to: steps[i]! }).ok).toBe(true);
      expect(key()).toEqual(first);
    }
    expect(jobs.updateJobState(r.job.id, { from: 'MUXING', to: 'FAILED' }).ok).toBe(true);
    expect(key()).toEqual([first[0]! - (first[0]! & 15) + JOB_STATES.indexOf('FAILED')]);
    expect(jobs.updateJobState(r.job.id, { from: 'FAILED', to: 'QUEUED' }).ok).toBe(true);
    expect(key()).toEqual(first);
    expect(jobs.listJobs({ statuses: ['QUEUED'], search: '424242', limit: 5 }).total).toBe(1);
    expect(jobs.listJobs({ statuses: ['MUXING'], search: '424242', limit: 5 }).total).toBe(0);
  });

  it('finds the same jobs after migrating a version 1 database to state-class keys', () => {
    const { db } = testDb({ migrate: false });
    migrate(db, MIGRATIONS.filter((m) => m.version === 1));
    const owners = seedUsers(db, 'admin', 'alice');
    const v1 = createJobsRepository(db, { listTuning: { smallSetLimit: 0, fewHitsLimit: 0 } });
    JOB_STATES.forEach((state, i) => {
      for (let k = 0; k < 3; k++) {
        const r = v1.insertJob(jobInput(owners[k % 2]!, { url: `https://vimeo.com/${i}${k}77` }));
        if (!r.ok) throw new Error('insert failed');
        const path = PATHS[state];
        for (let s = 1; s < path.length; s++) v1.updateJobState(r.job.id, { from: path[s - 1]!, to: path[s]! });
      }
    });
    expect(migrate(db).applied).toEqual(MIGRATIONS.filter((m) => m.version > 1).map((m) => m.version));
    const all = model(db);
    const jobs = createJobsRepository(db, { listTuning: { smallSetLimit: 0, fewHitsLimit: 0 } });
    for (const statuses of [undefined, ['DUBBING'], ['QUEUED', 'MUXING'], ['COMPLETE', 'DOWNLOADED'], ['FAILED', 'CANCELED']] as Array<JobState[] | undefined>) {
      for (const ownerId of [undefined, owners[1]]) {
        const f: ListJobsFilters = { statuses, ownerId, search: 'vimeo', limit: 100 };
        expect(jobs.listJobs(f).items.map((j) => j.id), JSON.stringify(f)).toEqual(expected(all, f).map((j) => j.id));
      }
    }
    // Every job has exactly one search key, and it carries its state class.
    const keys = db.prepare(`SELECT rowid FROM jobs_fts WHERE jobs_fts MATCH 'vimeo'`).pluck().all() as number[];
    expect(keys).toHaveLength(all.length);
    const bySeq = new Map(all.map((j) => [j.seq, j.state]));
    for (const k of keys) {
      const st = bySeq.get(Math.floor(k / 4096))!;
      expect(k & 15, st).toBe(['COMPLETE', 'FAILED', 'CANCELED'].includes(st) ? JOB_STATES.indexOf(st) : 0);
    }
  });

  it('uses the indexes it was built for', () => {
    const { db } = build(5);
    const plan = (sql: string) => (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as Array<{ detail: string }>).map((r) => r.detail).join(' | ');
    expect(plan(`SELECT seq FROM jobs WHERE state = 'FAILED' AND seq < 10 ORDER BY seq DESC LIMIT 5`)).toContain('jobs_state_seq');
    expect(plan(`SELECT seq FROM jobs WHERE owner_id = 'x' AND state = 'FAILED' AND seq < 10 ORDER BY seq DESC LIMIT 5`)).toContain('jobs_owner_state_seq');
    expect(plan(`SELECT * FROM jobs WHERE owner_id = 'x' AND seq < 10 ORDER BY seq DESC LIMIT 5`)).toContain('jobs_owner_seq');
    expect(plan(`SELECT * FROM jobs WHERE owner_id = 'x' AND seq < 10 ORDER BY seq DESC LIMIT 5`)).not.toContain('TEMP B-TREE');
  });
});
