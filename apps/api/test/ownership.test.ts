// Invariant 7: a user sees and touches only their own jobs; another user's job is a 404,
// indistinguishable from a missing one; an admin sees all.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJobsRepository } from '@dubgate/db/jobs';
import { bearer, counts, createJob, createTestApp, createUser, expectError, loginAdmin, type JobJson, type TestApp } from './helpers.js';

let t: TestApp;
let admin: string;
let alice: string;
let bob: string;
let aliceJob: JobJson;
let aliceFailedDub: JobJson;
let bobJob: JobJson;

beforeAll(async () => {
  t = await createTestApp({ name: 'ownership' });
  admin = (await loginAdmin(t.app)).token;
  alice = (await createUser(t.app, admin, 'alice')).token;
  bob = (await createUser(t.app, admin, 'bob')).token;
  aliceJob = await createJob(t.app, alice, { url: 'https://videos.example.com/alice-1' });
  bobJob = await createJob(t.app, bob, { url: 'https://videos.example.com/bob-1' });

  // A job of Alice's that Alice could resume, so Bob's 404 is about ownership, not state.
  aliceFailedDub = await createJob(t.app, alice, { url: 'https://videos.example.com/alice-dub', requestedDubbing: true, targetLang: 'fr' });
  const repo = createJobsRepository(t.db());
  repo.updateJobState(aliceFailedDub.id, { from: 'QUEUED', to: 'DOWNLOADING' });
  repo.updateJobState(aliceFailedDub.id, { from: 'DOWNLOADING', to: 'DOWNLOADED' });
  repo.upsertMedia(aliceFailedDub.id, 'source', { path: `${aliceFailedDub.id}/source.mp4` });
  repo.updateJobState(aliceFailedDub.id, { from: 'DOWNLOADED', to: 'DUBBING' });
  repo.updateJobState(aliceFailedDub.id, { from: 'DUBBING', to: 'FAILED', patch: { failedStage: 'dub' } });
});
afterAll(async () => {
  await t?.close();
});

type Page = { items: JobJson[]; total: number };
const list = async (token: string, query = '') =>
  (await t.app.inject({ method: 'GET', url: `/api/jobs${query}`, headers: bearer(token) })).json<Page>();

describe("another user's job", () => {
  it('is a 404 on read and on logs', async () => {
    expectError(await t.app.inject({ method: 'GET', url: `/api/jobs/${aliceJob.id}`, headers: bearer(bob) }), 404, 'JOB_NOT_FOUND');
    expectError(await t.app.inject({ method: 'GET', url: `/api/jobs/${aliceJob.id}/logs`, headers: bearer(bob) }), 404, 'JOB_NOT_FOUND');
  });

  it('is a 404 on cancel, retry, resume and delete, and stays untouched', async () => {
    const before = counts(t.db());
    for (const [id, op] of [
      [aliceJob.id, 'cancel'],
      [aliceJob.id, 'retry'],
      [aliceFailedDub.id, 'resume'],
      [aliceFailedDub.id, 'retry'],
    ] as const) {
      expectError(await t.app.inject({ method: 'POST', url: `/api/jobs/${id}/${op}`, headers: bearer(bob) }), 404, 'JOB_NOT_FOUND');
    }
    expectError(await t.app.inject({ method: 'DELETE', url: `/api/jobs/${aliceJob.id}`, headers: bearer(bob) }), 404, 'JOB_NOT_FOUND');
    expect(counts(t.db())).toEqual(before);
    const states = t.db().prepare('SELECT id, state FROM jobs WHERE id IN (?, ?) ORDER BY seq').all(aliceJob.id, aliceFailedDub.id);
    expect(states).toEqual([
      { id: aliceJob.id, state: 'QUEUED' },
      { id: aliceFailedDub.id, state: 'FAILED' },
    ]);
    expect(await t.redis().exists(`${t.queuePrefix}:download:${aliceJob.id}_download_g0`)).toBe(1);
  });

  it('gives the same answer as a job that does not exist', async () => {
    const missing = await t.app.inject({ method: 'GET', url: '/api/jobs/00000000-0000-7000-8000-000000000000', headers: bearer(bob) });
    const foreign = await t.app.inject({ method: 'GET', url: `/api/jobs/${aliceJob.id}`, headers: bearer(bob) });
    expect(foreign.statusCode).toBe(missing.statusCode);
    expect(foreign.json<{ error: { code: string; message: string } }>().error.message).toBe(
      missing.json<{ error: { code: string; message: string } }>().error.message,
    );
  });

  it('never appears in the list, whatever the filters', async () => {
    for (const query of ['', '?status=QUEUED,FAILED', '?search=alice', '?limit=200&offset=0']) {
      const page = await list(bob, query);
      expect(page.items.every((j) => j.ownerId === page.items[0]?.ownerId)).toBe(true);
      expect(page.items.map((j) => j.id)).not.toContain(aliceJob.id);
      expect(page.items.map((j) => j.id)).not.toContain(aliceFailedDub.id);
    }
    const all = await list(bob);
    expect(all.items.map((j) => j.id)).toEqual([bobJob.id]);
    expect(all.total).toBe(1);
    expect(await list(bob, '?search=alice')).toMatchObject({ items: [], total: 0 });
  });
});

describe('Idempotency-Key', () => {
  it("is per user: another user's key never returns their job", async () => {
    const url = 'https://videos.example.com/shared-key';
    const a = await t.app.inject({ method: 'POST', url: '/api/jobs', headers: { ...bearer(alice), 'idempotency-key': 'shared' }, payload: { url } });
    expect(a.statusCode).toBe(201);
    const b = await t.app.inject({ method: 'POST', url: '/api/jobs', headers: { ...bearer(bob), 'idempotency-key': 'shared' }, payload: { url } });
    expect(b.statusCode).toBe(201);
    const aJob = a.json<{ job: JobJson }>().job;
    const bJob = b.json<{ job: JobJson }>().job;
    expect(bJob.id).not.toBe(aJob.id);
    expect(bJob.ownerId).not.toBe(aJob.ownerId);
    // Nor does a different body under the same key clash across users.
    const c = await t.app.inject({
      method: 'POST',
      url: '/api/jobs',
      headers: { ...bearer(admin), 'idempotency-key': 'shared' },
      payload: { url: 'https://videos.example.com/other' },
    });
    expect(c.statusCode).toBe(201);
    for (const id of [aJob.id, bJob.id, c.json<{ job: JobJson }>().job.id]) {
      expect((await t.app.inject({ method: 'DELETE', url: `/api/jobs/${id}`, headers: bearer(admin) })).statusCode).toBe(204);
    }
  });
});

describe('the owner', () => {
  it('reads, lists and controls their own jobs', async () => {
    expect((await t.app.inject({ method: 'GET', url: `/api/jobs/${aliceJob.id}`, headers: bearer(alice) })).statusCode).toBe(200);
    expect((await t.app.inject({ method: 'GET', url: `/api/jobs/${aliceJob.id}/logs`, headers: bearer(alice) })).statusCode).toBe(200);
    const page = await list(alice);
    expect(page.items.map((j) => j.id).sort()).toEqual([aliceJob.id, aliceFailedDub.id].sort());
    expect(page.total).toBe(2);
    const resumed = await t.app.inject({ method: 'POST', url: `/api/jobs/${aliceFailedDub.id}/resume`, headers: bearer(alice) });
    expect(resumed.statusCode).toBe(200);
    expect(await t.redis().exists(`${t.queuePrefix}:dub:${aliceFailedDub.id}_dub_g1`)).toBe(1);
  });
});

describe('the admin', () => {
  it('sees every job', async () => {
    const page = await list(admin);
    expect(page.items.map((j) => j.id)).toEqual(expect.arrayContaining([aliceJob.id, aliceFailedDub.id, bobJob.id]));
    expect(page.total).toBe(3);
    expect((await t.app.inject({ method: 'GET', url: `/api/jobs/${bobJob.id}`, headers: bearer(admin) })).statusCode).toBe(200);
    expect((await t.app.inject({ method: 'GET', url: `/api/jobs/${aliceJob.id}/logs`, headers: bearer(admin) })).statusCode).toBe(200);
  });

  it("controls and deletes another user's job", async () => {
    const canceled = await t.app.inject({ method: 'POST', url: `/api/jobs/${bobJob.id}/cancel`, headers: bearer(admin) });
    expect(canceled.statusCode).toBe(200);
    const retried = await t.app.inject({ method: 'POST', url: `/api/jobs/${bobJob.id}/retry`, headers: bearer(admin) });
    expect(retried.statusCode).toBe(200);
    // The job keeps its owner.
    expect(retried.json<{ job: JobJson }>().job.ownerId).toBe(bobJob.ownerId);
    const deleted = await t.app.inject({ method: 'DELETE', url: `/api/jobs/${bobJob.id}`, headers: bearer(admin) });
    expect(deleted.statusCode).toBe(204);
    expect(await list(bob)).toMatchObject({ items: [], total: 0 });
  });

  it('a job created by a user belongs to that user, not to whoever the body names', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/jobs',
      headers: bearer(bob),
      payload: { url: 'https://videos.example.com/sneaky', ownerId: aliceJob.ownerId },
    });
    expectError(res, 400, 'VALIDATION_FAILED');
    const own = await createJob(t.app, bob);
    expect(own.ownerId).not.toBe(aliceJob.ownerId);
  });
});
