import { describe, expect, it } from 'vitest';
import { JobAddedMessageSchema, JobRemovedMessageSchema, StateChangeMessageSchema } from '@dubgate/contracts/events';
import { JobDetailSchema, JobSchema, MediaSchema } from '@dubgate/contracts/jobs';
import { DownloadPayloadSchema, stageJobId } from '@dubgate/contracts/stages';
import { createJobsRepository } from '../src/jobs-repository.js';
import { createOutboxRepository } from '../src/outbox-repository.js';
import { createEventsRepository } from '../src/events-repository.js';
import { uuidv7, uuidv7Time } from '../src/uuid.js';
import { counts, hasShape, jobInput, manualClock, seedUsers, testDb } from './helpers.js';

const outboxOf = (db: Parameters<typeof createOutboxRepository>[0]) => ({ outbox: createOutboxRepository(db) });

function setup() {
  const { db } = testDb();
  const time = manualClock();
  const [alice, bob] = seedUsers(db, 'alice', 'bob');
  const jobs = createJobsRepository(db, { clock: time.clock });
  const outbox = createOutboxRepository(db, { clock: time.clock });
  return { db, time, alice: alice!, bob: bob!, jobs, outbox };
}

describe('uuidv7', () => {
  it('is a version 7 UUID that sorts in creation order', () => {
    const ids = Array.from({ length: 5000 }, () => uuidv7());
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    const t = Date.parse('2030-05-06T07:08:09.010Z');
    const late = uuidv7(t);
    expect(uuidv7Time(late)).toBe(t);
    // A clock that goes back never makes an id sort before an earlier one.
    expect(uuidv7(t - 60_000) > late).toBe(true);
  });
});

describe('insertJob', () => {
  it('writes the row, the created event and the outbox rows in one go', () => {
    const { db, alice, jobs, outbox } = setup();
    const r = jobs.insertJob(jobInput(alice, { requestedDubbing: true, targetLang: 'de', formatPreset: '720p', outputContainer: 'mkv' }));
    if (!r.ok || !r.created) throw new Error('expected a new job');
    const { job } = r;
    expect(hasShape(JobSchema, job)).toBe(true);
    expect(job).toMatchObject({
      ownerId: alice,
      status: 'QUEUED',
      generation: 0,
      attempt: 0,
      requestedDubbing: true,
      targetLang: 'de',
      formatPreset: '720p',
      outputContainer: 'mkv',
      error: null,
      failedStage: null,
      progress: null,
      holdReason: null,
      outputPath: null,
      createdAt: '2025-01-01T00:00:00.000Z',
    });

    const detail = jobs.getJobById(job.id)!;
    expect(detail.events).toHaveLength(1);
    expect(detail.events[0]).toMatchObject({ id: r.eventId, type: 'created', level: 'info' });

    const rows = outbox.listDue(10);
    expect(rows.map((o) => o.id)).toEqual(r.outboxIds);
    const [enqueue, publish] = rows;
    if (enqueue?.kind !== 'enqueue' || publish?.kind !== 'publish') throw new Error('unexpected outbox rows');
    expect(enqueue.jobId).toBe(job.id);
    expect(enqueue.payload.stage).toBe('download');
    expect(enqueue.payload.queueJobId).toBe(stageJobId(job.id, 'download', 0));
    expect(enqueue.payload.payload).toEqual({
      jobId: job.id,
      generation: 0,
      workDir: job.id,
      url: job.url,
      formatPreset: '720p',
      wantSubtitles: true,
    });
    expect(hasShape(DownloadPayloadSchema, enqueue.payload.payload)).toBe(true);
    expect(publish.payload.channel).toBe('events:state');
    expect(hasShape(JobAddedMessageSchema, publish.payload.message)).toBe(true);
    expect(publish.payload.message).toMatchObject({ jobId: job.id, type: 'job_added', payload: { ownerId: alice, eventId: r.eventId, status: 'QUEUED' } });
    expect(counts(db)).toEqual({ jobs: 1, events: 1, outbox: 2 });
  });

  it('replays an idempotency key without writing, and tells a different body apart', () => {
    const { db, alice, bob, jobs } = setup();
    const first = jobs.insertJob(jobInput(alice, { idempotencyKey: 'k1', requestHash: 'h1' }));
    if (!first.ok) throw new Error('expected ok');
    const before = counts(db);

    // The rows handed back for delivery are the rows as stored.
    const { outbox } = outboxOf(db);
    expect(first.outboxItems).toEqual(first.outboxIds.map((id) => {
      const r = outbox.get(id)!;
      return { id: r.id, kind: r.kind, payload: r.payload };
    }));

    const again = jobs.insertJob(jobInput(alice, { idempotencyKey: 'k1', requestHash: 'h1' }));
    expect(again).toEqual({ ok: true, created: false, job: first.job, eventId: null, outboxIds: [], outboxItems: [] });
    expect(counts(db)).toEqual(before);

    const other = jobs.insertJob(jobInput(alice, { url: 'https://vimeo.com/1', idempotencyKey: 'k1', requestHash: 'h2' }));
    expect(other).toEqual({ ok: false, reason: 'idempotency_conflict', job: first.job });
    expect(counts(db)).toEqual(before);

    // Keys are per owner, and jobs without a key never collide.
    const bobs = jobs.insertJob(jobInput(bob, { idempotencyKey: 'k1', requestHash: 'h1' }));
    expect(bobs.ok && bobs.created).toBe(true);
    expect(jobs.insertJob(jobInput(alice)).ok).toBe(true);
    expect(jobs.insertJob(jobInput(alice)).ok).toBe(true);
    expect(counts(db).jobs).toBe(4);
  });

  it('refuses an unknown owner', () => {
    const { db, jobs } = setup();
    expect(() => jobs.insertJob(jobInput('nobody'))).toThrow(/FOREIGN KEY/);
    expect(counts(db)).toEqual({ jobs: 0, events: 0, outbox: 0 });
  });
});

describe('updateJobState', () => {
  it('moves the job, records the event and the outbox rows', () => {
    const { db, alice, jobs, outbox, time } = setup();
    const { job } = jobs.insertJob(jobInput(alice)) as { job: { id: string } };
    outbox.removeDelivered(outbox.listDue(10).map((o) => o.id));
    time.advance(1000);
    const r = jobs.updateJobState(job.id, {
      from: 'QUEUED',
      to: 'DOWNLOADING',
      reason: 'worker took it',
      patch: { attempt: 1 },
      eventPayload: { stageJobId: 'x', from: 'LIES' },
      outbox: [{ kind: 'publish', jobId: job.id, payload: { channel: 'events:log', message: { jobId: job.id, type: 'log', timestamp: time.clock().toISOString(), payload: { level: 'info', message: 'hi' } } } }],
    });
    if (!r.ok) throw new Error(r.reason);
    expect(r.job).toMatchObject({ status: 'DOWNLOADING', attempt: 1, updatedAt: '2025-01-01T00:00:01.000Z' });
    const ev = createEventsRepository(db).listEvents(job.id, { limit: 10 }).items.at(-1)!;
    expect(ev).toMatchObject({ id: r.eventId, type: 'state_change', level: 'info' });
    expect(ev.payload).toEqual({ stageJobId: 'x', reason: 'worker took it', from: 'QUEUED', to: 'DOWNLOADING' });
    const due = outbox.listDue(10);
    expect(due.map((o) => o.id)).toEqual(r.outboxIds);
    expect(due).toHaveLength(2);
    const msg = due[0]!.payload as { channel: string; message: unknown };
    expect(msg.channel).toBe('events:state');
    expect(hasShape(StateChangeMessageSchema, msg.message)).toBe(true);
    expect(msg.message).toMatchObject({ type: 'state_change', payload: { from: 'QUEUED', to: 'DOWNLOADING', ownerId: alice, eventId: r.eventId, reason: 'worker took it' } });
    expect(due[1]!.payload).toMatchObject({ channel: 'events:log' });
  });

  it('applies and clears patch fields', () => {
    const { alice, jobs } = setup();
    const { job } = jobs.insertJob(jobInput(alice, { requestedDubbing: true, targetLang: 'fr' })) as { job: { id: string } };
    const go = (from: Parameters<typeof jobs.updateJobState>[1]['from'], to: typeof from, patch = {}) => {
      const r = jobs.updateJobState(job.id, { from, to, patch });
      if (!r.ok) throw new Error(`${from}->${to}: ${r.reason}`);
      return r.job;
    };
    go('QUEUED', 'DOWNLOADING', { holdReason: null });
    go('DOWNLOADING', 'DOWNLOADED');
    go('DOWNLOADED', 'DUBBING');
    const failed = go('DUBBING', 'FAILED', {
      failedStage: 'dub',
      error: { code: 'STAGE_FAILED', message: 'tts crashed' },
      checkpoint: { cuesDone: 3, cuesTotal: 10 },
    });
    expect(failed).toMatchObject({ status: 'FAILED', failedStage: 'dub', error: { code: 'STAGE_FAILED', message: 'tts crashed' } });
    expect(jobs.getCheckpoint(job.id)).toEqual({ cuesDone: 3, cuesTotal: 10 });
    const resumed = go('FAILED', 'DUBBING', { generation: 1, attempt: 0, error: null, failedStage: null });
    expect(resumed).toMatchObject({ status: 'DUBBING', generation: 1, attempt: 0, error: null, failedStage: null });
    expect(jobs.getCheckpoint(job.id)).toEqual({ cuesDone: 3, cuesTotal: 10 });
    go('DUBBING', 'DUBBED', { checkpoint: null });
    go('DUBBED', 'MUXING');
    const done = go('MUXING', 'COMPLETE', { outputPath: `${job.id}/output.mp4` });
    expect(done.outputPath).toBe(`${job.id}/output.mp4`);
    expect(jobs.getCheckpoint(job.id)).toBeNull();
  });

  it('a forbidden transition changes nothing', () => {
    const { db, alice, jobs } = setup();
    const { job } = jobs.insertJob(jobInput(alice)) as { job: { id: string } };
    const rowBefore = db.prepare('SELECT * FROM jobs').get();
    const before = counts(db);
    expect(jobs.updateJobState(job.id, { from: 'QUEUED', to: 'COMPLETE' })).toEqual({ ok: false, reason: 'forbidden' });
    expect(jobs.updateJobState(job.id, { from: 'QUEUED', to: 'QUEUED' })).toEqual({ ok: false, reason: 'forbidden' });
    expect(jobs.updateJobState(job.id, { from: 'COMPLETE', to: 'QUEUED' })).toEqual({ ok: false, reason: 'forbidden' });
    expect(jobs.updateJobState(job.id, { from: 'BOGUS' as never, to: 'QUEUED' })).toEqual({ ok: false, reason: 'forbidden' });
    expect(jobs.updateJobState(job.id, { from: 'QUEUED', to: 'LOST' as never })).toEqual({ ok: false, reason: 'forbidden' });
    expect(db.prepare('SELECT * FROM jobs').get()).toEqual(rowBefore);
    expect(counts(db)).toEqual(before);
  });

  it('a stale transition changes nothing and reports the current state', () => {
    const { db, alice, jobs, time } = setup();
    const { job } = jobs.insertJob(jobInput(alice)) as { job: { id: string } };
    expect(jobs.updateJobState(job.id, { from: 'QUEUED', to: 'DOWNLOADING' }).ok).toBe(true);
    time.advance(5000);
    const rowBefore = db.prepare('SELECT * FROM jobs').get();
    const before = counts(db);
    // A duplicate outcome, and a cancel racing a completed download.
    expect(jobs.updateJobState(job.id, { from: 'QUEUED', to: 'DOWNLOADING', outbox: [{ kind: 'publish', jobId: null, payload: { channel: 'events:notification', message: { jobId: 'system', type: 'notification', timestamp: time.clock().toISOString(), payload: { type: 't', title: 't', message: 'm', severity: 'info' } } } }] }))
      .toEqual({ ok: false, reason: 'stale', current: 'DOWNLOADING' });
    expect(jobs.updateJobState(job.id, { from: 'QUEUED', to: 'CANCELED' })).toEqual({ ok: false, reason: 'stale', current: 'DOWNLOADING' });
    expect(db.prepare('SELECT * FROM jobs').get()).toEqual(rowBefore);
    expect(counts(db)).toEqual(before);
    expect(jobs.updateJobState('missing', { from: 'QUEUED', to: 'CANCELED' })).toEqual({ ok: false, reason: 'not_found' });
    expect(counts(db)).toEqual(before);
  });

  it('rolls back the whole transition when a later write fails', () => {
    const { db, alice, jobs } = setup();
    const { job } = jobs.insertJob(jobInput(alice)) as { job: { id: string } };
    const before = counts(db);
    const rowBefore = db.prepare('SELECT * FROM jobs').get();
    expect(() =>
      jobs.updateJobState(job.id, {
        from: 'QUEUED',
        to: 'DOWNLOADING',
        // A bad outbox row (kind fails the CHECK) after the update and the event were written.
        outbox: [{ kind: 'nope', jobId: job.id, payload: {} } as never],
      }),
    ).toThrow(/CHECK/);
    expect(db.prepare('SELECT * FROM jobs').get()).toEqual(rowBefore);
    expect(counts(db)).toEqual(before);
  });

  it('joins a caller transaction', () => {
    const { db, alice, jobs } = setup();
    const { job } = jobs.insertJob(jobInput(alice)) as { job: { id: string } };
    const before = counts(db);
    const tx = db.transaction(() => {
      expect(jobs.updateJobState(job.id, { from: 'QUEUED', to: 'DOWNLOADING' }).ok).toBe(true);
      throw new Error('caller changed its mind');
    });
    expect(() => tx()).toThrow('caller changed its mind');
    expect(jobs.getJob(job.id)!.status).toBe('QUEUED');
    expect(counts(db)).toEqual(before);
  });
});

describe('reading jobs', () => {
  it('getJobById returns media and the latest events in ascending order', () => {
    const { db, alice, jobs } = setup();
    const { job } = jobs.insertJob(jobInput(alice)) as { job: { id: string } };
    const events = createEventsRepository(db);
    events.insertEvents(Array.from({ length: 120 }, (_, i) => ({ jobId: job.id, type: 'log' as const, message: `line ${i}` })));
    jobs.upsertMedia(job.id, 'source', { path: `${job.id}/source.mp4`, title: 'A title', sizeBytes: 10 });
    const d = jobs.getJobById(job.id)!;
    expect(hasShape(JobDetailSchema, d)).toBe(true);
    expect(d.events).toHaveLength(100);
    expect(d.eventsTruncated).toBe(true);
    expect(d.events.at(-1)!.message).toBe('line 119');
    expect(d.events[0]!.message).toBe('line 20');
    const ids = d.events.map((e) => e.id);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    expect(d.media).toHaveLength(1);
    expect(jobs.getJobById('missing')).toBeNull();
    expect(jobs.getJob('missing')).toBeNull();
    expect(jobs.getJobOwner(job.id)).toBe(alice);
    expect(jobs.getJobOwner('missing')).toBeNull();
  });

  it('small histories are not truncated', () => {
    const { alice, jobs } = setup();
    const { job } = jobs.insertJob(jobInput(alice)) as { job: { id: string } };
    const d = jobs.getJobById(job.id)!;
    expect(d.eventsTruncated).toBe(false);
    expect(d.events).toHaveLength(1);
  });

  it('listJobsInStates pages through jobs in creation order', () => {
    const { alice, jobs } = setup();
    const ids = Array.from({ length: 7 }, () => (jobs.insertJob(jobInput(alice)) as { job: { id: string } }).job.id);
    jobs.updateJobState(ids[2]!, { from: 'QUEUED', to: 'CANCELED' });
    jobs.updateJobState(ids[4]!, { from: 'QUEUED', to: 'DOWNLOADING' });
    const active = ['QUEUED', 'DOWNLOADING'] as const;
    const p1 = jobs.listJobsInStates(active, 3);
    expect(p1.map((j) => j.id)).toEqual([ids[0], ids[1], ids[3]]);
    const p2 = jobs.listJobsInStates(active, 3, p1.at(-1)!.id);
    expect(p2.map((j) => j.id)).toEqual([ids[4], ids[5], ids[6]]);
    expect(jobs.listJobsInStates(active, 3, ids[6])).toEqual([]);
    expect(jobs.listJobsInStates([], 3)).toEqual([]);
    // Paging survives the deletion of the job it continues from.
    jobs.deleteJob(ids[3]!);
    expect(jobs.listJobsInStates(active, 2, ids[3]).map((j) => j.id)).toEqual([ids[4], ids[5]]);
  });

  it('countJobsByState follows inserts, transitions and deletes', () => {
    const { alice, bob, jobs } = setup();
    const a = (jobs.insertJob(jobInput(alice)) as { job: { id: string } }).job.id;
    jobs.insertJob(jobInput(alice));
    jobs.insertJob(jobInput(bob));
    jobs.updateJobState(a, { from: 'QUEUED', to: 'CANCELED' });
    expect(jobs.countJobsByState()).toMatchObject({ QUEUED: 2, CANCELED: 1, COMPLETE: 0 });
    expect(jobs.countJobsByState(alice)).toMatchObject({ QUEUED: 1, CANCELED: 1 });
    jobs.deleteJob(a);
    expect(jobs.countJobsByState(alice)).toMatchObject({ QUEUED: 1, CANCELED: 0 });
  });
});

describe('deleteJob', () => {
  it('cascades to media and events, returns the paths, and keeps the removal message', () => {
    const { db, alice, jobs, outbox } = setup();
    const { job } = jobs.insertJob(jobInput(alice)) as { job: { id: string } };
    const other = (jobs.insertJob(jobInput(alice)) as { job: { id: string } }).job.id;
    jobs.upsertMedia(job.id, 'source', { path: `${job.id}/source.mp4`, title: 'Cats' });
    jobs.upsertMedia(job.id, 'subtitles', { path: `${job.id}/subs.vtt` });
    for (const [from, to] of [['QUEUED', 'DOWNLOADING'], ['DOWNLOADING', 'DOWNLOADED'], ['DOWNLOADED', 'MUXING']] as const) {
      jobs.updateJobState(job.id, { from, to });
    }
    jobs.updateJobState(job.id, { from: 'MUXING', to: 'COMPLETE', patch: { outputPath: `${job.id}/output.mp4` } });
    const before = outbox.pendingCount();

    const r = jobs.deleteJob(job.id)!;
    expect(r.ownerId).toBe(alice);
    expect(r.mediaPaths.sort()).toEqual([`${job.id}/output.mp4`, `${job.id}/source.mp4`, `${job.id}/subs.vtt`]);
    expect(jobs.getJob(job.id)).toBeNull();
    expect(db.prepare('SELECT count(*) FROM media WHERE job_id = ?').pluck().get(job.id)).toBe(0);
    expect(db.prepare('SELECT count(*) FROM job_events WHERE job_id = ?').pluck().get(job.id)).toBe(0);
    expect(db.prepare('SELECT count(*) FROM jobs_fts WHERE jobs_fts MATCH ?').pluck().get('"Cats"')).toBe(0);
    // Outbox rows of the deleted job survive (no foreign key), the removal message among them.
    expect(outbox.pendingCount()).toBe(before + 1);
    const removal = outbox.get(r.outboxIds[0]!)!;
    expect(removal.payload).toMatchObject({ channel: 'events:state' });
    expect(hasShape(JobRemovedMessageSchema, (removal.payload as { message: unknown }).message)).toBe(true);
    expect(jobs.getJob(other)).not.toBeNull();
    expect(jobs.deleteJob(job.id)).toBeNull();
  });
});

describe('small writes', () => {
  it('setHoldReason reports whether the value changed', () => {
    const { alice, jobs, time } = setup();
    const { job } = jobs.insertJob(jobInput(alice)) as { job: { id: string } };
    time.advance(10);
    expect(jobs.setHoldReason(job.id, 'disk space low')).toBe(true);
    expect(jobs.setHoldReason(job.id, 'disk space low')).toBe(false);
    expect(jobs.getJob(job.id)).toMatchObject({ holdReason: 'disk space low', updatedAt: '2025-01-01T00:00:00.010Z' });
    expect(jobs.setHoldReason(job.id, null)).toBe(true);
    expect(jobs.setHoldReason(job.id, null)).toBe(false);
    expect(jobs.setHoldReason('missing', 'x')).toBe(false);
  });

  it('setAttempt and saveCheckpoint', () => {
    const { alice, jobs } = setup();
    const { job } = jobs.insertJob(jobInput(alice)) as { job: { id: string } };
    expect(jobs.setAttempt(job.id, 3)).toBe(true);
    expect(jobs.getJob(job.id)!.attempt).toBe(3);
    expect(jobs.saveCheckpoint(job.id, { cuesDone: 1, cuesTotal: 2, state: { a: [1] } })).toBe(true);
    expect(jobs.getCheckpoint(job.id)).toEqual({ cuesDone: 1, cuesTotal: 2, state: { a: [1] } });
    expect(jobs.saveCheckpoint(job.id, null)).toBe(true);
    expect(jobs.getCheckpoint(job.id)).toBeNull();
    expect(jobs.setAttempt('missing', 1)).toBe(false);
    expect(jobs.getCheckpoint('missing')).toBeNull();
  });

  it('updateProgress keeps the newest snapshot; updateProgressMany batches', () => {
    const { alice, jobs } = setup();
    const a = (jobs.insertJob(jobInput(alice)) as { job: { id: string } }).job.id;
    const b = (jobs.insertJob(jobInput(alice)) as { job: { id: string } }).job.id;
    const snap = (percent: number, at: string) => ({ stage: 'download' as const, percent, speed: 1000, eta: 5, step: null, updatedAt: at });
    expect(jobs.updateProgress(a, snap(50, '2025-01-01T00:00:05.000Z'))).toBe(true);
    expect(jobs.updateProgress(a, snap(40, '2025-01-01T00:00:04.000Z'))).toBe(false);
    expect(jobs.getJob(a)!.progress).toEqual(snap(50, '2025-01-01T00:00:05.000Z'));
    // Other ISO spellings of the same instant compare correctly.
    expect(jobs.updateProgress(a, snap(60, '2025-01-01T01:00:06+01:00'))).toBe(true);
    expect(jobs.getJob(a)!.progress!.updatedAt).toBe('2025-01-01T00:00:06.000Z');
    const n = jobs.updateProgressMany([
      { jobId: a, progress: snap(70, '2025-01-01T00:00:07.000Z') },
      { jobId: b, progress: { stage: 'dub', percent: 10, speed: null, eta: null, step: 'cue 1/10', updatedAt: '2025-01-01T00:00:07.000Z' } },
      { jobId: 'missing', progress: snap(1, '2025-01-01T00:00:07.000Z') },
    ]);
    expect(n).toBe(2);
    expect(jobs.getJob(b)!.progress).toMatchObject({ stage: 'dub', step: 'cue 1/10', speed: null });
    expect(jobs.updateProgressMany([])).toBe(0);
  });

  it('a job that ends keeps no running progress, and no late snapshot brings one back', () => {
    const { alice, jobs } = setup();
    const snap = (percent: number, at: string) => ({ stage: 'mux' as const, percent, speed: 1000, eta: 5, step: 'muxing', updatedAt: at });
    const ends: Array<[string[], string]> = [
      [['DOWNLOADING', 'DOWNLOADED', 'MUXING', 'COMPLETE'], 'COMPLETE'],
      [['DOWNLOADING', 'CANCELED'], 'CANCELED'],
      [['DOWNLOADING', 'FAILED'], 'FAILED'],
    ];
    for (const [path, end] of ends) {
      const id = (jobs.insertJob(jobInput(alice)) as { job: { id: string } }).job.id;
      let from = 'QUEUED';
      for (const to of path) {
        if (to === end) expect(jobs.updateProgress(id, snap(45, '2025-01-01T00:00:05.000Z'))).toBe(true);
        const r = jobs.updateJobState(id, { from: from as never, to: to as never, ...(to === 'FAILED' ? { patch: { failedStage: 'download' } } : {}) });
        expect(r.ok, `${from} -> ${to}`).toBe(true);
        from = to;
      }
      // Cleared in the transition's own transaction...
      expect(jobs.getJob(id)!.progress, end).toBeNull();
      // ...and a snapshot that the relay writes late (newer than any before) is refused.
      expect(jobs.updateProgress(id, snap(50, '2025-01-01T00:00:06.000Z')), end).toBe(false);
      expect(jobs.updateProgressMany([{ jobId: id, progress: snap(55, '2025-01-01T00:00:07.000Z') }]), end).toBe(0);
      expect(jobs.getJob(id)!.progress, end).toBeNull();
    }
  });

  it('upsertMedia is idempotent per (job, kind) and feeds the search', () => {
    const { db, alice, jobs, time } = setup();
    const { job } = jobs.insertJob(jobInput(alice)) as { job: { id: string } };
    const first = jobs.upsertMedia(job.id, 'source', { path: `${job.id}/a.mp4`, sizeBytes: 5, title: 'Old Title', width: 640, height: 360 })!;
    expect(hasShape(MediaSchema, first)).toBe(true);
    time.advance(1000);
    const second = jobs.upsertMedia(job.id, 'source', { path: `${job.id}/a.mp4`, sizeBytes: 5, title: 'Brand New Title', width: 640, height: 360 })!;
    expect(second.id).toBe(first.id);
    expect(second.createdAt).toBe(first.createdAt);
    expect(second.title).toBe('Brand New Title');
    expect(jobs.listMedia(job.id)).toEqual([second]);
    const search = (q: string) => jobs.listJobs({ search: q, limit: 10 }).items.length;
    expect(search('brand new')).toBe(1);
    expect(search('old title')).toBe(0);
    jobs.upsertMedia(job.id, 'dubbed_audio', { path: `${job.id}/de.m4a`, language: 'de', durationSec: 12.5 });
    expect(jobs.listMedia(job.id).map((m) => m.kind)).toEqual(['source', 'dubbed_audio']);
    expect(jobs.upsertMedia('missing', 'source', { path: 'x' })).toBeNull();
    expect(() => jobs.upsertMedia(job.id, 'bogus' as never, { path: 'x' })).toThrow(RangeError);
    db.prepare(`DELETE FROM media WHERE kind = 'source'`).run();
    expect(search('brand new')).toBe(0);
    expect(search('youtube')).toBe(1);
  });
});
