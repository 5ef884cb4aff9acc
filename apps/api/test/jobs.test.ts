// The job routes against real SQLite and real Redis: creation (row, event, outbox, BullMQ,
// Pub/Sub, idempotency, validation), listing, detail, control (cancel, retry, resume), delete, logs.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { createJobsRepository } from '@dubgate/db/jobs';
import { createEventsRepository } from '@dubgate/db/events';
import {
  bearer,
  collectMessages,
  counts,
  createJob,
  createTestApp,
  expectError,
  loginAdmin,
  postJob,
  redisUrl,
  videoUrl,
  waitFor,
  type JobJson,
  type TestApp,
} from './helpers.js';

// Above the sum of a test's waits (generous deadlines that return as soon as the condition holds).
vi.setConfig({ testTimeout: 90_000, hookTimeout: 60_000 });

let t: TestApp;
let token: string;

beforeAll(async () => {
  t = await createTestApp({ name: 'jobs' });
  token = (await loginAdmin(t.app)).token;
});
afterAll(async () => {
  await t?.close();
});

const get = (url: string) => t.app.inject({ method: 'GET', url, headers: bearer(token) });
const post = (url: string) => t.app.inject({ method: 'POST', url, headers: bearer(token) });

/** The job's pending outbox rows (delivered rows are deleted). */
function outboxOf(jobId: string) {
  return t.db().prepare('SELECT kind, payload FROM outbox WHERE job_id = ? ORDER BY id').all(jobId) as Array<{ kind: string; payload: string }>;
}

/** The BullMQ job hash under this file's prefix, or null. */
async function queuedJob(stage: string, queueJobId: string): Promise<{ data: Record<string, unknown>; opts: Record<string, unknown> } | null> {
  const h = await t.redis().hgetall(`${t.queuePrefix}:${stage}:${queueJobId}`);
  if (!h.data) return null;
  return { data: JSON.parse(h.data) as Record<string, unknown>, opts: JSON.parse(h.opts ?? '{}') as Record<string, unknown> };
}

describe('POST /api/jobs', () => {
  it('writes the row, its first event and its outbox rows, enqueues download and publishes job_added', async () => {
    const events = collectMessages(redisUrl(), 'events:state');
    await events.ready;
    try {
      const before = counts(t.db());
      const url = videoUrl('create-1');
      const res = await postJob(t.app, token, { url, requestedDubbing: true, targetLang: 'de', formatPreset: '720p', outputContainer: 'mkv' });
      expect(res.statusCode).toBe(201);
      const job = res.json<{ job: JobJson }>().job;
      expect(job).toMatchObject({
        url,
        status: 'QUEUED',
        generation: 0,
        requestedDubbing: true,
        targetLang: 'de',
        formatPreset: '720p',
        outputContainer: 'mkv',
      });
      expect(job.id).toMatch(/^[0-9a-f-]{36}$/);

      const after = counts(t.db());
      expect(after.jobs).toBe(before.jobs + 1);
      expect(after.events).toBe(before.events + 1);
      const first = t.db().prepare('SELECT type, level FROM job_events WHERE job_id = ?').all(job.id);
      expect(first).toEqual([{ type: 'created', level: 'info' }]);

      // Outbox: enqueue download + publish job_added, both delivered (and deleted) right after
      // commit; what they delivered is checked in Redis below.
      expect(outboxOf(job.id)).toEqual([]);

      // BullMQ: deterministic id under this file's prefix.
      const queueJobId = `${job.id}_download_g0`;
      const queued = await queuedJob('download', queueJobId);
      expect(queued).not.toBeNull();
      expect(queued!.data).toEqual({
        jobId: job.id,
        generation: 0,
        workDir: job.id,
        url,
        formatPreset: '720p',
        wantSubtitles: true,
      });
      expect(queued!.opts.jobId).toBe(queueJobId);
      expect(await t.redis().lrange(`${t.queuePrefix}:download:wait`, 0, -1)).toContain(queueJobId);
      // Nothing under the production prefix.
      expect(await t.redis().exists(`q:download:${queueJobId}`)).toBe(0);

      const added = await events.next((m) => m.jobId === job.id && m.type === 'job_added');
      expect(added.payload).toMatchObject({ url, status: 'QUEUED', ownerId: job.ownerId });
      expect(typeof added.timestamp).toBe('string');
    } finally {
      await events.close();
    }
  });

  it('applies the documented defaults', async () => {
    const job = await createJob(t.app, token, { url: videoUrl() });
    expect(job).toMatchObject({ requestedDubbing: false, targetLang: null, formatPreset: 'best', outputContainer: 'mp4' });
  });

  it('returns the same job for the same Idempotency-Key and refuses the key with another body', async () => {
    const url = videoUrl('idem');
    const key = `key-${Date.now()}`;
    const first = await postJob(t.app, token, { url }, { 'idempotency-key': key });
    expect(first.statusCode).toBe(201);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    const before = counts(t.db());

    const again = await postJob(t.app, token, { url }, { 'idempotency-key': key });
    expect(again.statusCode).toBe(200);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.json<{ job: JobJson }>().job.id).toBe(first.json<{ job: JobJson }>().job.id);
    expect(counts(t.db())).toEqual(before);

    const other = await postJob(t.app, token, { url: videoUrl('idem-other') }, { 'idempotency-key': key });
    expectError(other, 422, 'IDEMPOTENCY_KEY_REUSED');
    expect(counts(t.db())).toEqual(before);

    // A different key is a different job.
    const fresh = await postJob(t.app, token, { url }, { 'idempotency-key': `${key}-2` });
    expect(fresh.statusCode).toBe(201);
    expect(fresh.json<{ job: JobJson }>().job.id).not.toBe(first.json<{ job: JobJson }>().job.id);
  });

  it('creates one job when the same Idempotency-Key arrives twice at once', async () => {
    const url = videoUrl('idem-race');
    const key = `race-${Date.now()}`;
    const before = counts(t.db());
    const answers = await Promise.all([1, 2, 3].map(() => postJob(t.app, token, { url }, { 'idempotency-key': key })));
    expect(answers.map((a) => a.statusCode).sort()).toEqual([200, 200, 201]);
    expect(new Set(answers.map((a) => a.json<{ job: JobJson }>().job.id)).size).toBe(1);
    expect(counts(t.db()).jobs).toBe(before.jobs + 1);
  });

  it('refuses an Idempotency-Key that is not printable ASCII or too long', async () => {
    const before = counts(t.db());
    expectError(await postJob(t.app, token, {}, { 'idempotency-key': 'x'.repeat(201) }), 400, 'VALIDATION_FAILED');
    expectError(await postJob(t.app, token, {}, { 'idempotency-key': 'has space' }), 400, 'VALIDATION_FAILED');
    expect(counts(t.db())).toEqual(before);
  });

  const invalidBodies: Array<[string, Record<string, unknown>, string]> = [
    ['targetLang missing while dubbing', { url: 'https://videos.example.com/a', requestedDubbing: true }, 'targetLang'],
    ['unknown formatPreset', { url: 'https://videos.example.com/a', formatPreset: '4k-ultra' }, 'formatPreset'],
    ['unknown outputContainer', { url: 'https://videos.example.com/a', outputContainer: 'avi' }, 'outputContainer'],
    ['requestedDubbing as a string', { url: 'https://videos.example.com/a', requestedDubbing: 'true', targetLang: 'de' }, 'requestedDubbing'],
    ['url as a number', { url: 12345 }, 'url'],
    ['url missing', { requestedDubbing: false }, 'url'],
    ['an unknown property status', { url: 'https://videos.example.com/a', status: 'COMPLETE' }, 'status'],
    ['an unknown property ownerId', { url: 'https://videos.example.com/a', ownerId: 'someone-else' }, 'ownerId'],
    ['a malformed targetLang', { url: 'https://videos.example.com/a', requestedDubbing: true, targetLang: 'not a language!' }, 'targetLang'],
    ['a URL longer than the limit', { url: `https://videos.example.com/${'a'.repeat(2100)}` }, 'url'],
    ['not an http(s) URL at all', { url: 'not a url' }, 'url'],
  ];
  it.each(invalidBodies)('refuses %s with 400 and writes nothing', async (_name, payload, field) => {
    const before = counts(t.db());
    const keysBefore = await t.redis().llen(`${t.queuePrefix}:download:wait`);
    const res = await t.app.inject({ method: 'POST', url: '/api/jobs', headers: bearer(token), payload });
    const body = expectError(res, 400);
    expect(['VALIDATION_FAILED', 'URL_NOT_ALLOWED']).toContain(body.error.code);
    expect(`${body.error.message} ${JSON.stringify(body.error.details ?? [])}`.toLowerCase()).toContain(field.toLowerCase());
    expect(counts(t.db())).toEqual(before);
    expect(await t.redis().llen(`${t.queuePrefix}:download:wait`)).toBe(keysBefore);
  });

  it('names the unknown property and answers VALIDATION_FAILED', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/jobs',
      headers: bearer(token),
      payload: { url: 'https://videos.example.com/a', status: 'COMPLETE', ownerId: 'x' },
    });
    const body = expectError(res, 400, 'VALIDATION_FAILED');
    expect(body.error.details?.map((d) => d.message)).toEqual(
      expect.arrayContaining(['unknown property "status"', 'unknown property "ownerId"']),
    );
  });

  it('needs authentication', async () => {
    const before = counts(t.db());
    expectError(await t.app.inject({ method: 'POST', url: '/api/jobs', payload: { url: videoUrl() } }), 401, 'UNAUTHENTICATED');
    expect(counts(t.db())).toEqual(before);
  });
});

describe('GET /api/jobs', () => {
  let ids: string[] = [];
  let canceled: string;
  let token2: string;

  beforeAll(async () => {
    // A fresh app so totals are exact.
    const own = await createTestApp({ name: 'jobs-list' });
    listApp = own;
    token2 = (await loginAdmin(own.app)).token;
    ids = [];
    for (const slug of ['alpha-one', 'beta-two', 'alpha-three', 'gamma-four', 'delta-five']) {
      ids.push((await createJob(own.app, token2, { url: `https://videos.example.com/${slug}` })).id);
    }
    canceled = ids[1]!;
    const res = await own.app.inject({ method: 'POST', url: `/api/jobs/${canceled}/cancel`, headers: bearer(token2) });
    expect(res.statusCode).toBe(200);
  });
  afterAll(async () => {
    await listApp?.close();
  });
  let listApp: TestApp;
  const list = async (query: string) => {
    const res = await listApp.app.inject({ method: 'GET', url: `/api/jobs${query}`, headers: bearer(token2) });
    return res;
  };
  type Page = { items: JobJson[]; total: number; totalExact: boolean; nextCursor: string | null };

  it('lists newest first with the total', async () => {
    const res = await list('');
    expect(res.statusCode).toBe(200);
    const page = res.json<Page>();
    expect(page.items.map((j) => j.id)).toEqual([...ids].reverse());
    expect(page.total).toBe(5);
    expect(page.totalExact).toBe(true);
    expect(page.nextCursor).toBeNull();
  });

  it('pages with limit and cursor', async () => {
    const p1 = (await list('?limit=2')).json<Page>();
    expect(p1.items.map((j) => j.id)).toEqual([ids[4], ids[3]]);
    expect(p1.total).toBe(5);
    expect(p1.nextCursor).toEqual(expect.any(String));
    const p2 = (await list(`?limit=2&cursor=${p1.nextCursor}`)).json<Page>();
    expect(p2.items.map((j) => j.id)).toEqual([ids[2], ids[1]]);
    expect(p2.total).toBe(5);
    const p3 = (await list(`?limit=2&cursor=${p2.nextCursor}`)).json<Page>();
    expect(p3.items.map((j) => j.id)).toEqual([ids[0]]);
    expect(p3.nextCursor).toBeNull();
  });

  it('pages with limit and offset', async () => {
    const page = (await list('?limit=2&offset=2')).json<Page>();
    expect(page.items.map((j) => j.id)).toEqual([ids[2], ids[1]]);
    expect(page.total).toBe(5);
    const past = (await list('?limit=2&offset=10')).json<Page>();
    expect(past.items).toEqual([]);
    expect(past.total).toBe(5);
  });

  it('filters by one or several statuses', async () => {
    const one = (await list('?status=CANCELED')).json<Page>();
    expect(one.items.map((j) => j.id)).toEqual([canceled]);
    expect(one.total).toBe(1);
    const queued = (await list('?status=QUEUED')).json<Page>();
    expect(queued.total).toBe(4);
    expect(queued.items.every((j) => j.status === 'QUEUED')).toBe(true);
    const both = (await list('?status=QUEUED,CANCELED')).json<Page>();
    expect(both.total).toBe(5);
    expect(both.items.map((j) => j.id)).toEqual([...ids].reverse());
    const none = (await list('?status=FAILED,COMPLETE')).json<Page>();
    expect(none).toMatchObject({ items: [], total: 0 });
  });

  it('searches the URL', async () => {
    const page = (await list('?search=alpha')).json<Page>();
    expect(page.items.map((j) => j.id)).toEqual([ids[2], ids[0]]);
    expect(page.total).toBe(2);
    const combined = (await list('?search=two&status=CANCELED')).json<Page>();
    expect(combined.items.map((j) => j.id)).toEqual([canceled]);
    const nothing = (await list('?search=zzzz-nothing')).json<Page>();
    expect(nothing).toMatchObject({ items: [], total: 0 });
  });

  it('searches with short terms and treats LIKE and FTS syntax as plain text', async () => {
    expect((await list('?search=ph')).json<Page>().items.map((j) => j.id)).toEqual([ids[2], ids[0]]);
    expect((await list('?search=TA-')).json<Page>().items.map((j) => j.id)).toEqual([ids[4], ids[1]]);
    for (const term of ['%25', '_', '%25%25%25', '%22', 'a%22b', 'alpha%20OR%20beta', '*', 'NEAR(alpha)']) {
      const res = await list(`?search=${term}`);
      expect(res.statusCode, term).toBe(200);
      expect(res.json<Page>(), term).toMatchObject({ items: [], total: 0 });
    }
  });

  it.each([
    ['an unknown status', '?status=BOGUS'],
    ['a lower-case status', '?status=queued'],
    ['limit 0', '?limit=0'],
    ['limit above the maximum', '?limit=100000'],
    ['a non-numeric limit', '?limit=abc'],
    ['a negative offset', '?offset=-1'],
    ['cursor and offset together', '?cursor=ajEuMQ&offset=1'],
    ['a forged cursor', '?cursor=bm90LWEtY3Vyc29y'],
    ['an unknown query parameter', '?owner=me'],
    ['an empty search', '?search='],
  ])('refuses %s with 400 VALIDATION_FAILED', async (_name, query) => {
    expectError(await list(query), 400, 'VALIDATION_FAILED');
  });
});

describe('GET /api/jobs/:id', () => {
  it('returns the job with its media and events', async () => {
    const job = await createJob(t.app, token);
    createJobsRepository(t.db()).upsertMedia(job.id, 'source', {
      path: `${job.id}/source.mp4`,
      sizeBytes: 1234,
      durationSec: 12.5,
      width: 1280,
      height: 720,
      videoCodec: 'h264',
      audioCodec: 'aac',
      title: 'A title',
    });
    const res = await get(`/api/jobs/${job.id}`);
    expect(res.statusCode).toBe(200);
    const detail = res.json<{ job: JobJson; media: Array<Record<string, unknown>>; events: Array<Record<string, unknown>> }>();
    expect(detail.job.id).toBe(job.id);
    expect(detail.media).toEqual([
      expect.objectContaining({ kind: 'source', path: `${job.id}/source.mp4`, sizeBytes: 1234, width: 1280, height: 720, title: 'A title' }),
    ]);
    expect(detail.events).toEqual([expect.objectContaining({ type: 'created', level: 'info', jobId: job.id })]);
  });

  it('answers 404 JOB_NOT_FOUND for an unknown id and 400 for a malformed one', async () => {
    expectError(await get('/api/jobs/00000000-0000-7000-8000-000000000000'), 404, 'JOB_NOT_FOUND');
    expectError(await get('/api/jobs/not%20an%20id'), 400, 'VALIDATION_FAILED');
    expectError(await get(`/api/jobs/${'a'.repeat(65)}`), 400, 'VALIDATION_FAILED');
  });
});

describe('control: cancel, retry, resume', () => {
  it('cancels a queued job, signals workers and removes the waiting stage job', async () => {
    const signals = collectMessages(redisUrl(), 'control:cancel');
    await signals.ready;
    try {
      const job = await createJob(t.app, token);
      expect(await queuedJob('download', `${job.id}_download_g0`)).not.toBeNull();
      const res = await post(`/api/jobs/${job.id}/cancel`);
      expect(res.statusCode).toBe(200);
      expect(res.json<{ job: JobJson }>().job.status).toBe('CANCELED');
      const signal = await signals.next((m) => m.jobId === job.id);
      expect(signal.reason).toEqual(expect.stringContaining('canceled'));
      expect(await queuedJob('download', `${job.id}_download_g0`)).toBeNull();
      expect(t.db().prepare('SELECT state FROM jobs WHERE id = ?').pluck().get(job.id)).toBe('CANCELED');

      // Canceled is not active: a second cancel is refused.
      expectError(await post(`/api/jobs/${job.id}/cancel`), 409, 'JOB_NOT_CANCELABLE');
    } finally {
      await signals.close();
    }
  });

  it('cancels a job a worker is running: the worker gets the cancel signal, the active stage job is left to it', async () => {
    // An app of its own, so the worker's queue holds only this job.
    const own = await createTestApp({ name: 'jobs-worker' });
    const connection = new Redis(redisUrl(), { maxRetriesPerRequest: null });
    const signals = collectMessages(redisUrl(), 'control:cancel');
    let worker: Worker | undefined;
    try {
      await signals.ready;
      const ownToken = (await loginAdmin(own.app)).token;
      const job = await createJob(own.app, ownToken);
      let started!: () => void;
      const running = new Promise<void>((resolve) => (started = resolve));
      const outcome = new Promise<string>((resolve) => {
        worker = new Worker(
          'download',
          async (bullJob) => {
            started();
            // The reference worker's loop: work until the cancel signal for this job arrives.
            await signals.next((m) => m.jobId === (bullJob.data as { jobId: string }).jobId);
            resolve('canceled');
            throw new UnrecoverableError('canceled');
          },
          { connection, prefix: own.queuePrefix },
        );
      });
      await running;
      const res = await own.app.inject({ method: 'POST', url: `/api/jobs/${job.id}/cancel`, headers: bearer(ownToken) });
      expect(res.statusCode).toBe(200);
      expect(res.json<{ job: JobJson }>().job.status).toBe('CANCELED');
      expect(await outcome).toBe('canceled');
      // Deleting it now works too; the worker's stage job is gone from the queue afterwards.
      await waitFor(async () => (await own.redis().zcard(`${own.queuePrefix}:download:failed`)) === 1);
      expect((await own.app.inject({ method: 'DELETE', url: `/api/jobs/${job.id}`, headers: bearer(ownToken) })).statusCode).toBe(204);
      expect(await own.redis().exists(`${own.queuePrefix}:download:${job.id}_download_g0`)).toBe(0);
    } finally {
      await worker?.close();
      connection.disconnect();
      await signals.close();
      await own.close();
    }
  });

  it('retries a canceled job from the beginning with a fresh generation', async () => {
    const job = await createJob(t.app, token);
    expectError(await post(`/api/jobs/${job.id}/retry`), 409, 'JOB_NOT_RETRYABLE');
    expect((await post(`/api/jobs/${job.id}/cancel`)).statusCode).toBe(200);
    const res = await post(`/api/jobs/${job.id}/retry`);
    expect(res.statusCode).toBe(200);
    expect(res.json<{ job: JobJson }>().job).toMatchObject({ status: 'QUEUED', generation: 1 });
    const queued = await queuedJob('download', `${job.id}_download_g1`);
    expect(queued?.data).toMatchObject({ jobId: job.id, generation: 1, url: job.url });
    // Retry of a queued job does not apply.
    expectError(await post(`/api/jobs/${job.id}/retry`), 409, 'JOB_NOT_RETRYABLE');
  });

  it('retries a failed job', async () => {
    const job = await createJob(t.app, token);
    const repo = createJobsRepository(t.db());
    expect(repo.updateJobState(job.id, { from: 'QUEUED', to: 'DOWNLOADING' }).ok).toBe(true);
    expect(repo.updateJobState(job.id, { from: 'DOWNLOADING', to: 'FAILED', patch: { failedStage: 'download', error: { code: 'STAGE_FAILED', message: 'boom' } } }).ok).toBe(true);
    const res = await post(`/api/jobs/${job.id}/retry`);
    expect(res.statusCode).toBe(200);
    expect(res.json<{ job: JobJson }>().job).toMatchObject({ status: 'QUEUED', generation: 1, failedStage: null, error: null });
    expect(await queuedJob('download', `${job.id}_download_g1`)).not.toBeNull();
  });

  it('refuses cancel and retry of a complete job with 409', async () => {
    const job = await createJob(t.app, token);
    const repo = createJobsRepository(t.db());
    for (const [from, to] of [
      ['QUEUED', 'DOWNLOADING'],
      ['DOWNLOADING', 'DOWNLOADED'],
      ['DOWNLOADED', 'MUXING'],
      ['MUXING', 'COMPLETE'],
    ] as const) {
      expect(repo.updateJobState(job.id, { from, to }).ok).toBe(true);
    }
    expectError(await post(`/api/jobs/${job.id}/cancel`), 409, 'JOB_NOT_CANCELABLE');
    expectError(await post(`/api/jobs/${job.id}/retry`), 409, 'JOB_NOT_RETRYABLE');
    expectError(await post(`/api/jobs/${job.id}/resume`), 409, 'JOB_NOT_RESUMABLE');
  });

  it('resumes a job that failed while dubbing from its checkpoint, with a fresh generation', async () => {
    const job = await createJob(t.app, token, { requestedDubbing: true, targetLang: 'pt-BR' });
    // Not resumable while queued.
    expectError(await post(`/api/jobs/${job.id}/resume`), 409, 'JOB_NOT_RESUMABLE');

    const repo = createJobsRepository(t.db());
    expect(repo.updateJobState(job.id, { from: 'QUEUED', to: 'DOWNLOADING' }).ok).toBe(true);
    expect(repo.updateJobState(job.id, { from: 'DOWNLOADING', to: 'DOWNLOADED' }).ok).toBe(true);
    expect(repo.upsertMedia(job.id, 'source', { path: `${job.id}/source.mp4` })).not.toBeNull();
    expect(repo.upsertMedia(job.id, 'subtitles', { path: `${job.id}/source.en.vtt`, language: 'en' })).not.toBeNull();
    expect(repo.updateJobState(job.id, { from: 'DOWNLOADED', to: 'DUBBING' }).ok).toBe(true);
    const checkpoint = { cuesDone: 7, cuesTotal: 20, state: { partial: `${job.id}/dub.partial.wav` } };
    expect(repo.saveCheckpoint(job.id, checkpoint)).toBe(true);
    expect(
      repo.updateJobState(job.id, {
        from: 'DUBBING',
        to: 'FAILED',
        patch: { failedStage: 'dub', error: { code: 'STAGE_FAILED', message: 'tts crashed' } },
      }).ok,
    ).toBe(true);

    const res = await post(`/api/jobs/${job.id}/resume`);
    expect(res.statusCode).toBe(200);
    expect(res.json<{ job: JobJson }>().job).toMatchObject({ status: 'DUBBING', generation: 1, failedStage: null });

    const queued = await queuedJob('dub', `${job.id}_dub_g1`);
    expect(queued).not.toBeNull();
    expect(queued!.data).toEqual({
      jobId: job.id,
      generation: 1,
      workDir: job.id,
      mediaPath: `${job.id}/source.mp4`,
      subtitlePath: `${job.id}/source.en.vtt`,
      targetLang: 'pt-BR',
      checkpoint,
    });
    expect(queued!.opts.jobId).toBe(`${job.id}_dub_g1`);
    // Every outbox row of the resume went out.
    expect(outboxOf(job.id).filter((o) => o.payload.includes('"stage":"dub"'))).toEqual([]);

    // Now DUBBING: neither resume nor retry applies.
    expectError(await post(`/api/jobs/${job.id}/resume`), 409, 'JOB_NOT_RESUMABLE');
    expectError(await post(`/api/jobs/${job.id}/retry`), 409, 'JOB_NOT_RETRYABLE');
  });

  it('refuses to resume a job that failed while downloading', async () => {
    const job = await createJob(t.app, token, { requestedDubbing: true, targetLang: 'de' });
    const repo = createJobsRepository(t.db());
    repo.updateJobState(job.id, { from: 'QUEUED', to: 'DOWNLOADING' });
    repo.updateJobState(job.id, { from: 'DOWNLOADING', to: 'FAILED', patch: { failedStage: 'download' } });
    const before = counts(t.db());
    expectError(await post(`/api/jobs/${job.id}/resume`), 409, 'JOB_NOT_RESUMABLE');
    expect(counts(t.db())).toEqual(before);
  });

  it('refuses to resume a failed dub without downloaded media, writing nothing', async () => {
    const job = await createJob(t.app, token, { requestedDubbing: true, targetLang: 'de' });
    const repo = createJobsRepository(t.db());
    repo.updateJobState(job.id, { from: 'QUEUED', to: 'DOWNLOADING' });
    repo.updateJobState(job.id, { from: 'DOWNLOADING', to: 'DOWNLOADED' });
    repo.updateJobState(job.id, { from: 'DOWNLOADED', to: 'DUBBING' });
    repo.updateJobState(job.id, { from: 'DUBBING', to: 'FAILED', patch: { failedStage: 'dub' } });
    const before = counts(t.db());
    expectError(await post(`/api/jobs/${job.id}/resume`), 409, 'JOB_NOT_RESUMABLE');
    expect(counts(t.db())).toEqual(before);
    expect(t.db().prepare('SELECT state FROM jobs WHERE id = ?').pluck().get(job.id)).toBe('FAILED');
  });

  it.each(['cancel', 'retry', 'resume'])('answers 404 JOB_NOT_FOUND to %s of an unknown job', async (op) => {
    expectError(await post(`/api/jobs/00000000-0000-7000-8000-000000000000/${op}`), 404, 'JOB_NOT_FOUND');
  });
});

describe('DELETE /api/jobs/:id', () => {
  it('cancels an active job, removes its stage jobs, rows and media, and publishes job_removed', async () => {
    const events = collectMessages(redisUrl(), 'events:state');
    await events.ready;
    try {
      const job = await createJob(t.app, token);
      mkdirSync(join(t.mediaRoot, job.id), { recursive: true });
      writeFileSync(join(t.mediaRoot, job.id, 'source.mp4'), 'video');
      createJobsRepository(t.db()).upsertMedia(job.id, 'source', { path: `${job.id}/source.mp4` });

      const res = await t.app.inject({ method: 'DELETE', url: `/api/jobs/${job.id}`, headers: bearer(token) });
      expect(res.statusCode).toBe(204);
      expect(res.body).toBe('');
      expectError(await get(`/api/jobs/${job.id}`), 404, 'JOB_NOT_FOUND');
      const db = t.db();
      expect(db.prepare('SELECT count(*) FROM jobs WHERE id = ?').pluck().get(job.id)).toBe(0);
      expect(db.prepare('SELECT count(*) FROM job_events WHERE job_id = ?').pluck().get(job.id)).toBe(0);
      expect(db.prepare('SELECT count(*) FROM media WHERE job_id = ?').pluck().get(job.id)).toBe(0);
      expect(existsSync(join(t.mediaRoot, job.id))).toBe(false);
      expect(existsSync(t.mediaRoot)).toBe(true);
      expect(await queuedJob('download', `${job.id}_download_g0`)).toBeNull();
      expect(await t.redis().lrange(`${t.queuePrefix}:download:wait`, 0, -1)).not.toContain(`${job.id}_download_g0`);
      await events.next((m) => m.jobId === job.id && m.type === 'job_removed');
      // Exactly once: the api's publishes were answered before DELETE returned, so a message
      // published after that arrives after all of them.
      const marker = randomUUID();
      await t.redis().publish('events:state', JSON.stringify({ jobId: marker, type: 'job_removed', timestamp: new Date().toISOString(), payload: { ownerId: marker } }));
      await events.next((m) => m.jobId === marker);
      expect(events.messages.filter((m) => m.jobId === job.id && m.type === 'job_removed')).toHaveLength(1);

      expectError(await t.app.inject({ method: 'DELETE', url: `/api/jobs/${job.id}`, headers: bearer(token) }), 404, 'JOB_NOT_FOUND');
    } finally {
      await events.close();
    }
  });

  it('removes the stage jobs of every generation', async () => {
    const job = await createJob(t.app, token);
    const repo = createJobsRepository(t.db());
    repo.updateJobState(job.id, { from: 'QUEUED', to: 'DOWNLOADING' });
    repo.updateJobState(job.id, { from: 'DOWNLOADING', to: 'FAILED', patch: { failedStage: 'download' } });
    expect((await post(`/api/jobs/${job.id}/retry`)).statusCode).toBe(200);
    // Both generations are in BullMQ now: the failed run's and the retry's.
    expect(await queuedJob('download', `${job.id}_download_g0`)).not.toBeNull();
    expect(await queuedJob('download', `${job.id}_download_g1`)).not.toBeNull();
    expect((await t.app.inject({ method: 'DELETE', url: `/api/jobs/${job.id}`, headers: bearer(token) })).statusCode).toBe(204);
    expect(await queuedJob('download', `${job.id}_download_g0`)).toBeNull();
    expect(await queuedJob('download', `${job.id}_download_g1`)).toBeNull();
  });

  it('deletes a terminal job without touching other jobs', async () => {
    const keep = await createJob(t.app, token);
    const gone = await createJob(t.app, token);
    expect((await post(`/api/jobs/${gone.id}/cancel`)).statusCode).toBe(200);
    expect((await t.app.inject({ method: 'DELETE', url: `/api/jobs/${gone.id}`, headers: bearer(token) })).statusCode).toBe(204);
    expect((await get(`/api/jobs/${keep.id}`)).statusCode).toBe(200);
    expect(await queuedJob('download', `${keep.id}_download_g0`)).not.toBeNull();
  });
});

describe('GET /api/jobs/:id/logs', () => {
  let job: JobJson;
  let eventIds: number[];

  beforeAll(async () => {
    job = await createJob(t.app, token);
    const events = createEventsRepository(t.db());
    const ids = events.insertEvents([
      { jobId: job.id, type: 'log', level: 'debug', message: 'probing formats' },
      { jobId: job.id, type: 'log', level: 'info', message: 'downloading' },
      { jobId: job.id, type: 'log', level: 'warn', message: 'slow mirror' },
      { jobId: job.id, type: 'error', level: 'error', message: 'connection reset' },
      { jobId: job.id, type: 'log', level: 'info', message: 'resumed' },
    ]);
    eventIds = ids.map((id) => id!);
  });

  type LogPage = { items: Array<{ id: number; level: string; message: string; type: string }>; nextAfter: number | null };

  it('lists events oldest first', async () => {
    const res = await get(`/api/jobs/${job.id}/logs`);
    expect(res.statusCode).toBe(200);
    const page = res.json<LogPage>();
    expect(page.items.map((e) => e.message)).toEqual(['Job created', 'probing formats', 'downloading', 'slow mirror', 'connection reset', 'resumed']);
    expect(page.nextAfter).toBeNull();
  });

  it('pages with limit and the after cursor', async () => {
    const p1 = (await get(`/api/jobs/${job.id}/logs?limit=2`)).json<LogPage>();
    expect(p1.items).toHaveLength(2);
    expect(p1.nextAfter).toBe(eventIds[0]);
    const p2 = (await get(`/api/jobs/${job.id}/logs?limit=2&after=${p1.nextAfter}`)).json<LogPage>();
    expect(p2.items.map((e) => e.id)).toEqual([eventIds[1], eventIds[2]]);
    const p3 = (await get(`/api/jobs/${job.id}/logs?limit=2&after=${p2.nextAfter}`)).json<LogPage>();
    expect(p3.items.map((e) => e.id)).toEqual([eventIds[3], eventIds[4]]);
    expect(p3.nextAfter).toBeNull();
    const after = (await get(`/api/jobs/${job.id}/logs?after=${eventIds[4]}`)).json<LogPage>();
    expect(after).toEqual({ items: [], nextAfter: null });
  });

  it('filters by minimum level', async () => {
    const warn = (await get(`/api/jobs/${job.id}/logs?level=warn`)).json<LogPage>();
    expect(warn.items.map((e) => e.message)).toEqual(['slow mirror', 'connection reset']);
    const error = (await get(`/api/jobs/${job.id}/logs?level=error`)).json<LogPage>();
    expect(error.items.map((e) => e.level)).toEqual(['error']);
    const info = (await get(`/api/jobs/${job.id}/logs?level=info`)).json<LogPage>();
    expect(info.items.map((e) => e.level)).not.toContain('debug');
  });

  it.each([
    ['limit 0', '?limit=0'],
    ['limit above 500', '?limit=501'],
    ['a negative after', '?after=-1'],
    ['an unknown level', '?level=verbose'],
    ['an unknown parameter', '?since=1'],
  ])('refuses %s with 400', async (_name, query) => {
    expectError(await get(`/api/jobs/${job.id}/logs${query}`), 400, 'VALIDATION_FAILED');
  });

  it('answers 404 for an unknown job', async () => {
    expectError(await get('/api/jobs/00000000-0000-7000-8000-000000000000/logs'), 404, 'JOB_NOT_FOUND');
  });
});

describe('counting', () => {
  it('counts every accepted job in jobs_created_total', async () => {
    const before = await metricValue('jobs_created_total');
    await createJob(t.app, token);
    await waitFor(async () => (await metricValue('jobs_created_total')) === before + 1);
    // A replay is not a new job.
    const key = `count-${Date.now()}`;
    const url = videoUrl();
    await postJob(t.app, token, { url }, { 'idempotency-key': key });
    await postJob(t.app, token, { url }, { 'idempotency-key': key });
    expect(await metricValue('jobs_created_total')).toBe(before + 2);
  });
});

async function metricValue(name: string): Promise<number> {
  const res = await t.app.inject({ method: 'GET', url: '/metrics' });
  const line = res.body.split('\n').find((l) => new RegExp(`^(\\w+_)?${name}(\\{[^}]*\\})? `).test(l));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('BullMQ view', () => {
  it('sees the waiting download jobs of this file under its prefix only', async () => {
    const connection = new Redis(redisUrl(), { maxRetriesPerRequest: null });
    const queue = new Queue('download', { connection, prefix: t.queuePrefix });
    try {
      const job = await createJob(t.app, token);
      const found = await queue.getJob(`${job.id}_download_g0`);
      expect(found?.data).toMatchObject({ jobId: job.id, generation: 0 });
      expect(await found?.getState()).toBe('waiting');
    } finally {
      await queue.close();
      connection.disconnect();
    }
  });
});

describe('overload', () => {
  it('past API_MAX_PENDING_CREATES answers 503 with Retry-After at once, and a refused request writes nothing', async () => {
    const small = await createTestApp({ name: 'overload', env: { API_MAX_PENDING_CREATES: '3' } });
    try {
      const auth = bearer((await loginAdmin(small.app)).token);
      const before = counts(small.db());
      // Forty at once: the first three wait for their group commit, the rest find the cap reached.
      const answers = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          small.app.inject({ method: 'POST', url: '/api/jobs', headers: auth, payload: { url: videoUrl(`overload-${i}`) } }),
        ),
      );
      const created = answers.filter((a) => a.statusCode === 201);
      const refused = answers.filter((a) => a.statusCode === 503);
      expect(created.length + refused.length).toBe(40);
      expect(created).toHaveLength(3);
      for (const r of refused) {
        expect(r.headers['retry-after']).toBe('1');
        expect(r.json().error.code).toBe('SERVICE_UNAVAILABLE');
      }
      // Exactly the accepted jobs exist.
      const after = counts(small.db());
      expect(after.jobs - before.jobs).toBe(3);
      const ids = created.map((c) => c.json().job.id as string).sort();
      expect(small.db().prepare('SELECT id FROM jobs ORDER BY id').pluck().all()).toEqual(ids);
      // Once the burst is answered, the api takes jobs again.
      const again = await small.app.inject({ method: 'POST', url: '/api/jobs', headers: auth, payload: { url: videoUrl('overload-after') } });
      expect(again.statusCode).toBe(201);
    } finally {
      await small.close();
    }
  });
});
