// The happy path through the api, the scheduler and plain BullMQ workers: every transition in
// job_events and on events:state, media rows, the output path; replayed events change nothing.
import { afterEach, describe, expect, it } from 'vitest';
import { stageJobId } from '@dubgate/contracts/stages';
import { createHarness, PIPELINE_WITHOUT_DUB, PIPELINE_WITH_DUB, WAIT_MS, waitFor, type Harness } from './helpers.js';

let h: Harness;
afterEach(async () => {
  await h?.close();
});

describe('the full pipeline', () => {
  it('with dubbing: QUEUED → DOWNLOADING → DOWNLOADED → DUBBING → DUBBED → MUXING → COMPLETE', async () => {
    h = await createHarness('full-dub');
    const state = await h.subscribe('events:state');
    const s = h.scheduler();
    s.scheduler.start();
    h.worker('download');
    h.worker('dub');
    h.worker('mux');

    const created = await h.createJob({ requestedDubbing: true, targetLang: 'es', outputContainer: 'mkv' });
    const job = await h.waitForState(created.id, 'COMPLETE');

    expect(h.transitions(job.id)).toEqual(PIPELINE_WITH_DUB);
    expect(job.outputPath).toBe(`${job.id}/output.mkv`);
    expect(job.error).toBeNull();
    expect(job.holdReason).toBeNull();
    expect(job.attempt).toBe(1);

    const media = h.jobs.listMedia(job.id);
    expect(media.map((m) => m.kind).sort()).toEqual(['dubbed_audio', 'output', 'source']);
    const byKind = Object.fromEntries(media.map((m) => [m.kind, m]));
    expect(byKind.source).toMatchObject({ path: `${job.id}/source.mp4`, sizeBytes: 4096, title: 'a video', sourceUrl: job.url });
    expect(byKind.dubbed_audio).toMatchObject({ path: `${job.id}/dub-es.wav`, language: 'es' });
    expect(byKind.output).toMatchObject({ path: `${job.id}/output.mkv`, sizeBytes: 8192 });

    // The mux stage got the dubbed track and the container the user asked for.
    const mux = await s.scheduler.stageQueues.queues.mux.getJob(stageJobId(job.id, 'mux', 0));
    expect(mux?.data).toMatchObject({ mediaPath: `${job.id}/source.mp4`, dubbedAudioPath: `${job.id}/dub-es.wav`, dubbedLanguage: 'es', outputContainer: 'mkv' });

    // Every transition was published as a state_change, in order, with its event id.
    await expect.poll(() => state.messages.filter((m) => m.jobId === job.id && m.type === 'state_change').length, { timeout: WAIT_MS }).toBe(6);
    const published = state.messages.filter((m) => m.jobId === job.id && m.type === 'state_change');
    expect(published.map((m) => `${m.payload.from}>${m.payload.to}`)).toEqual(PIPELINE_WITH_DUB);
    const eventIds = h.db.prepare("SELECT id FROM job_events WHERE job_id = ? AND type = 'state_change' ORDER BY id").pluck().all(job.id);
    expect(published.map((m) => m.payload.eventId)).toEqual(eventIds);
    expect(published.every((m) => m.payload.ownerId === job.ownerId)).toBe(true);

    // Metrics are counted after the commit that waitForState saw: wait for the events to be handled.
    await s.scheduler.settled();
    const metrics = (await s.metrics.render()).body;
    expect(metrics).toMatch(/dubgate_job_transitions_total\{[^}]*from="MUXING",to="COMPLETE"[^}]*\} 1/);
    expect(metrics).toMatch(/dubgate_stage_handoff_seconds_count\{[^}]*\} 2/);
  });

  it('a start and its completion read in one batch are one transaction, with the start first', async () => {
    h = await createHarness('one-batch');
    const created = await h.createJob({ requestedDubbing: false });
    // The stage runs while no scheduler reads: its active and completed events wait in the stream.
    const worker = h.worker('download');
    const done = await new Promise<unknown>((resolve) => worker.once('completed', resolve));
    expect(done).toBeTruthy();
    await worker.close();
    expect(h.job(created.id).status).toBe('QUEUED');

    const s = h.scheduler();
    s.scheduler.start();
    const job = await h.waitForState(created.id, 'DOWNLOADED');
    expect(h.transitions(job.id)).toEqual(['QUEUED>DOWNLOADING', 'DOWNLOADING>DOWNLOADED']);
    expect(job.attempt).toBe(1);
    // The start was not handled on its own (counted as superseded) but applied by the completion,
    // first, in the same transaction: consecutive event ids, the media row beside them.
    const rows = h.db
      .prepare("SELECT id, created_at AS at FROM job_events WHERE job_id = ? AND type = 'state_change' ORDER BY id")
      .all(job.id) as Array<{ id: number; at: string }>;
    expect(rows[1]!.id).toBe(rows[0]!.id + 1);
    expect(h.jobs.listMedia(job.id).map((m) => m.kind)).toEqual(['source']);
    // The duration is observed after the commit that waitForState saw: wait for the batch to finish.
    await s.scheduler.settled();
    const metrics = (await s.metrics.render()).body;
    expect(metrics).toMatch(/dubgate_stage_events_total\{[^}]*event="active",outcome="superseded"[^}]*\} 1/);
    expect(metrics).toMatch(/dubgate_stage_duration_seconds_count\{[^}]*stage="download"[^}]*\} 1/);
  });

  it('without dubbing: no DUBBING or DUBBED, no dub stage', async () => {
    h = await createHarness('full-nodub');
    const state = await h.subscribe('events:state');
    const s = h.scheduler();
    s.scheduler.start();
    let dubCalls = 0;
    h.worker('download');
    h.worker('dub', async () => {
      dubCalls++;
      throw new Error('must not be called');
    });
    h.worker('mux');

    const created = await h.createJob({ requestedDubbing: false });
    const job = await h.waitForState(created.id, 'COMPLETE');
    expect(h.transitions(job.id)).toEqual(PIPELINE_WITHOUT_DUB);
    expect(job.outputPath).toBe(`${job.id}/output.mp4`);
    expect(h.jobs.listMedia(job.id).map((m) => m.kind).sort()).toEqual(['output', 'source']);
    expect(dubCalls).toBe(0);
    expect(await s.scheduler.stageQueues.queues.dub.getJob(stageJobId(job.id, 'dub', 0))).toBeUndefined();
    const mux = await s.scheduler.stageQueues.queues.mux.getJob(stageJobId(job.id, 'mux', 0));
    expect(mux?.data.dubbedAudioPath).toBeUndefined();
    await expect.poll(() => state.messages.filter((m) => m.jobId === job.id && m.type === 'state_change').map((m) => `${m.payload.from}>${m.payload.to}`), { timeout: WAIT_MS }).toEqual(
      PIPELINE_WITHOUT_DUB,
    );
  });

  it('runs several jobs side by side, and a scheduler re-reading every event from the start changes nothing', async () => {
    h = await createHarness('replay');
    const first = h.scheduler();
    first.scheduler.start();
    h.worker('download');
    h.worker('dub');
    h.worker('mux');
    const created = await Promise.all(Array.from({ length: 12 }, (_, i) => h.createJob({ requestedDubbing: i % 2 === 0 })));
    for (const j of created) await h.waitForState(j.id, 'COMPLETE');
    await first.stop();

    const before = h.db.prepare('SELECT count(*) FROM job_events').pluck().get();
    // A fresh cursor: every completed, active and failed event is handled a second time.
    await h.redis.del(...(['download', 'dub', 'mux'] as const).map((st) => h.keys.schedulerCursorKey(st)));
    const second = h.scheduler();
    second.scheduler.start();
    // Every event in the streams handled a second time (and the cursors moved past them).
    await waitFor(() => second.scheduler.isLeader(), WAIT_MS, 'the second scheduler leads');
    await second.scheduler.settled();
    expect(await h.redis.get(h.keys.schedulerCursorKey('mux'))).not.toBeNull();
    await second.scheduler.reconcileNow();
    expect(h.db.prepare('SELECT count(*) FROM job_events').pluck().get()).toBe(before);
    for (const [i, j] of created.entries()) expect(h.transitions(j.id)).toEqual(i % 2 === 0 ? PIPELINE_WITH_DUB : PIPELINE_WITHOUT_DUB);
    const metrics = (await second.metrics.render()).body;
    expect(metrics).not.toMatch(/dubgate_job_transitions_total\{/);
  });
});
