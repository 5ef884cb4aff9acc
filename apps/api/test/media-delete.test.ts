// DELETE /api/jobs/:id removes files only inside MEDIA_ROOT, resolved by real path: no id and no
// stored path (relative escape, absolute, symlink) reaches anything outside.
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createJobsRepository } from '@dubgate/db/jobs';
import { bearer, counts, createJob, createTestApp, loginAdmin, type TestApp } from './helpers.js';

let t: TestApp;
let token: string;
/** Files outside MEDIA_ROOT that must survive every test. */
let sentinels: string[];

beforeAll(async () => {
  t = await createTestApp({ name: 'media' });
  token = (await loginAdmin(t.app)).token;
});
afterAll(async () => {
  await t?.close();
});

beforeEach(() => {
  // <dir>/media is MEDIA_ROOT; everything below sits next to it, outside.
  mkdirSync(join(t.dir, 'etc'), { recursive: true });
  mkdirSync(join(t.dir, 'outside-dir'), { recursive: true });
  sentinels = [join(t.dir, 'etc', 'passwd'), join(t.dir, 'outside.txt'), join(t.dir, 'abs-outside.txt'), join(t.dir, 'outside-dir', 'keep.txt'), join(t.dir, 'b')];
  for (const file of sentinels) writeFileSync(file, `sentinel ${file}`);
  // Something at <media>/../etc and beside it for ids that try to climb out.
  mkdirSync(t.mediaRoot, { recursive: true });
  writeFileSync(join(t.mediaRoot, 'other-job-file.txt'), 'not this job');
});

function expectSentinelsIntact() {
  for (const file of sentinels) expect(readFileSync(file, 'utf8'), file).toBe(`sentinel ${file}`);
  expect(existsSync(join(t.mediaRoot, 'other-job-file.txt'))).toBe(true);
}

const del = (id: string) => t.app.inject({ method: 'DELETE', url: `/api/jobs/${id}`, headers: bearer(token) });

describe('ids that try to leave the jobs', () => {
  it.each([
    '..%2F..%2Fetc',
    '..%2F..%2Fetc%2Fpasswd',
    '%2e%2e',
    '%2e%2e%2f%2e%2e%2fetc',
    '..',
    '.',
    'a/../../b',
    '..%5C..%5Cetc',
    '%2F..%2Foutside.txt',
    '..%252F..%252Fetc',
    'abc%00def',
  ])('DELETE /api/jobs/%s answers 400 or 404 and removes nothing', async (id) => {
    const job = await createJob(t.app, token);
    const before = counts(t.db());
    const res = await del(id);
    expect([400, 404]).toContain(res.statusCode);
    expect(res.json<{ error: { code: string } }>().error.code).toMatch(/^(VALIDATION_FAILED|JOB_NOT_FOUND|ROUTE_NOT_FOUND)$/);
    expect(counts(t.db())).toEqual(before);
    expect(existsSync(t.mediaRoot)).toBe(true);
    expect((await t.app.inject({ method: 'GET', url: `/api/jobs/${job.id}`, headers: bearer(token) })).statusCode).toBe(200);
    expectSentinelsIntact();
  });
});

describe('stored paths that point outside MEDIA_ROOT', () => {
  it('deletes the job dir and leaves ../, absolute and symlinked targets alone', async () => {
    const job = await createJob(t.app, token);
    const jobDir = join(t.mediaRoot, job.id);
    mkdirSync(jobDir, { recursive: true });
    writeFileSync(join(jobDir, 'source.mp4'), 'video');
    // Symlinks inside the job dir pointing outside: to a file and to a directory.
    symlinkSync(join(t.dir, 'outside.txt'), join(jobDir, 'link-to-file'));
    symlinkSync(join(t.dir, 'outside-dir'), join(jobDir, 'link-to-dir'));

    const repo = createJobsRepository(t.db());
    repo.upsertMedia(job.id, 'source', { path: '../outside.txt' });
    repo.upsertMedia(job.id, 'subtitles', { path: join(t.dir, 'abs-outside.txt') });
    repo.upsertMedia(job.id, 'dubbed_audio', { path: `${job.id}/link-to-file` });
    repo.upsertMedia(job.id, 'output', { path: `${job.id}/link-to-dir/keep.txt` });

    const res = await del(job.id);
    expect(res.statusCode).toBe(204);
    expect(existsSync(jobDir)).toBe(false);
    expect(t.db().prepare('SELECT count(*) FROM jobs WHERE id = ?').pluck().get(job.id)).toBe(0);
    expect(t.db().prepare('SELECT count(*) FROM media WHERE job_id = ?').pluck().get(job.id)).toBe(0);
    expectSentinelsIntact();
    expect(readdirSync(join(t.dir, 'outside-dir'))).toEqual(['keep.txt']);
  });

  it('leaves the target alone when the job dir itself is a symlink to outside', async () => {
    const job = await createJob(t.app, token);
    symlinkSync(join(t.dir, 'outside-dir'), join(t.mediaRoot, job.id));
    createJobsRepository(t.db()).upsertMedia(job.id, 'source', { path: `${job.id}/keep.txt` });
    const res = await del(job.id);
    expect(res.statusCode).toBe(204);
    expectSentinelsIntact();
    expect(readdirSync(join(t.dir, 'outside-dir'))).toEqual(['keep.txt']);
  });

  it('leaves MEDIA_ROOT itself and other jobs alone when a stored path names them', async () => {
    const other = await createJob(t.app, token);
    mkdirSync(join(t.mediaRoot, other.id), { recursive: true });
    writeFileSync(join(t.mediaRoot, other.id, 'source.mp4'), 'other video');

    const job = await createJob(t.app, token);
    const repo = createJobsRepository(t.db());
    repo.upsertMedia(job.id, 'source', { path: '.' });
    repo.upsertMedia(job.id, 'subtitles', { path: t.mediaRoot });
    repo.upsertMedia(job.id, 'output', { path: `${job.id}/../${other.id}/source.mp4` });

    expect((await del(job.id)).statusCode).toBe(204);
    expect(existsSync(t.mediaRoot)).toBe(true);
    expectSentinelsIntact();
    // A stored path inside MEDIA_ROOT but in another job's directory is not this job's to remove.
    expect(readFileSync(join(t.mediaRoot, other.id, 'source.mp4'), 'utf8')).toBe('other video');
  });

  it('removes a job whose files were never written', async () => {
    const job = await createJob(t.app, token);
    createJobsRepository(t.db()).upsertMedia(job.id, 'source', { path: `${job.id}/source.mp4` });
    expect((await del(job.id)).statusCode).toBe(204);
    expectSentinelsIntact();
  });
});
