// Retries with exponential backoff up to MAX_RETRIES (per stage), the attempt count on the job,
// and errors a worker marks permanent (UnrecoverableError, or a "PERMANENT:" failedReason).
import { afterEach, describe, expect, it } from 'vitest';
import { UnrecoverableError, type Job as BullJob } from 'bullmq';
import { stageJobId } from '@dubgate/contracts/stages';
import { createHarness, PIPELINE_WITHOUT_DUB, PIPELINE_WITH_DUB, results, sleep, WAIT_MS, waitFor, type Harness } from './helpers.js';
import type { DubPayload, MuxPayload } from '@dubgate/contracts/stages';

let h: Harness;
afterEach(async () => {
  await h?.close();
});

describe('retries', () => {
  it('a stage that fails once is retried, counted on the job and logged, and the job completes', async () => {
    h = await createHarness('retry-once');
    const s = h.scheduler({ backoffDelayMs: 100 });
    s.scheduler.start();
    h.worker('download');
    h.worker('mux');
    const calls: number[] = [];
    h.worker('dub', async (job: BullJob) => {
      calls.push(Date.now());
      if (job.attemptsMade === 0) throw new Error('the TTS service timed out');
      return results.dub(job.data as DubPayload);
    });

    const created = await h.createJob({ requestedDubbing: true });
    const job = await h.waitForState(created.id, 'COMPLETE');
    expect(calls).toHaveLength(2);
    expect(calls[1]! - calls[0]!).toBeGreaterThanOrEqual(90);
    // The failed attempt is not a transition: the job stays DUBBING while BullMQ retries.
    expect(h.transitions(job.id)).toEqual(PIPELINE_WITH_DUB);
    const warns = h.events(job.id, 'log').filter((e) => e.level === 'warn');
    expect(warns).toHaveLength(1);
    expect(warns[0]!.message).toContain('the TTS service timed out');
    expect(warns[0]!.payload).toMatchObject({ stage: 'dub', attempt: 1 });
    // The mux stage then ran once, so attempt ends at 1 for it; the dub attempt count was 2.
    const dubbed = h.events(job.id, 'state_change').find((e) => e.payload.to === 'DUBBED');
    expect(dubbed).toBeDefined();
    await s.scheduler.settled(); // metrics are counted after the commits waitForState sees
    expect(await s.metrics.render().then((m) => m.body)).toMatch(/dubgate_stage_retries_total\{[^}]*stage="dub"[^}]*\} 1/);
  });

  it.each([0, 100])('a retry (backoff %i ms) is logged once, even when its events are read twice', async (backoffDelayMs) => {
    h = await createHarness('retry-replay');
    const first = h.scheduler({ backoffDelayMs });
    first.scheduler.start();
    h.worker('download');
    h.worker('mux', async (job: BullJob) => {
      if (job.attemptsMade === 0) throw new Error('muxer busy');
      return results.mux(job.data as MuxPayload);
    });
    const created = await h.createJob();
    await h.waitForState(created.id, 'COMPLETE');
    const warns = () => h.events(created.id, 'log').filter((e) => e.level === 'warn');
    expect(warns()).toHaveLength(1);
    expect(warns()[0]!.message).toContain('muxer busy');
    await first.stop();

    // Read every event again from the start: the retry is not logged a second time.
    await h.redis.del(...(['download', 'dub', 'mux'] as const).map((st) => h.keys.schedulerCursorKey(st)));
    const second = h.scheduler({ backoffDelayMs });
    second.scheduler.start();
    // Every event in the streams handled a second time (and the cursors moved past them).
    await waitFor(() => second.scheduler.isLeader(), WAIT_MS, 'the second scheduler leads');
    await second.scheduler.settled();
    expect(await h.redis.get(h.keys.schedulerCursorKey('mux'))).not.toBeNull();
    expect(warns()).toHaveLength(1);
    expect(h.transitions(created.id)).toEqual(PIPELINE_WITHOUT_DUB);
  });

  it('the attempt count is on the job while the stage is retried', async () => {
    h = await createHarness('retry-attempt');
    const s = h.scheduler({ backoffDelayMs: 300 });
    s.scheduler.start();
    h.worker('download');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    h.worker('mux', async (job: BullJob) => {
      if (job.attemptsMade === 0) throw new Error('disk hiccup');
      await gate;
      return results.mux(job.data as MuxPayload);
    });
    const created = await h.createJob();
    await expect.poll(() => h.job(created.id).attempt, { timeout: WAIT_MS }).toBe(2);
    expect(h.job(created.id).status).toBe('MUXING');
    release();
    const job = await h.waitForState(created.id, 'COMPLETE');
    expect(job.attempt).toBe(2);
    expect(h.transitions(job.id)).toEqual(PIPELINE_WITHOUT_DUB);
  });

  it('a stage that always fails ends FAILED after exactly MAX_RETRIES retries, with growing backoff', async () => {
    h = await createHarness('retry-exhaust');
    const s = h.scheduler({ backoffDelayMs: 100, retries: { download: 3, dub: 3, mux: 3 } });
    s.scheduler.start();
    h.worker('download');
    const calls: number[] = [];
    h.worker('mux', async () => {
      calls.push(Date.now());
      throw new Error(`ffmpeg exited with code 1 (call ${calls.length})`);
    });
    const created = await h.createJob();
    const job = await h.waitForState(created.id, 'FAILED');
    await sleep(500); // nothing runs after the job failed (a negative: no event to wait for)
    expect(calls).toHaveLength(4); // 1 + MAX_RETRIES
    const gaps = calls.slice(1).map((t, i) => t - calls[i]!);
    // Exponential: 100, 200, 400 ms. Each gap is at least its delay...
    expect(gaps[0]).toBeGreaterThanOrEqual(95);
    expect(gaps[1]).toBeGreaterThanOrEqual(195);
    expect(gaps[2]).toBeGreaterThanOrEqual(395);
    // ...and each delay BullMQ scheduled is longer than the one before. Read from its record
    // (a 'delayed' event's due time minus the event's own time), not from the gaps between
    // calls: a loaded machine can stretch one gap past the next.
    const queueJobId = stageJobId(created.id, 'mux', 0);
    const delays = (await h.redis.xrange(`${h.queuePrefix}:mux:events`, '-', '+'))
      .map(([id, f]) => ({ id, f: Object.fromEntries(Array.from({ length: f.length / 2 }, (_, i) => [f[2 * i]!, f[2 * i + 1]!])) }))
      .filter(({ f }) => f.event === 'delayed' && f.jobId === queueJobId)
      .map(({ id, f }) => Number(f.delay) - Number(id.split('-')[0]));
    expect(delays).toHaveLength(3);
    expect(delays[1]!).toBeGreaterThan(delays[0]!);
    expect(delays[2]!).toBeGreaterThan(delays[1]!);

    expect(job).toMatchObject({ status: 'FAILED', failedStage: 'mux', attempt: 4 });
    expect(job.error).toEqual({ code: 'STAGE_FAILED', message: 'ffmpeg exited with code 1 (call 4)' });
    expect(h.transitions(job.id)).toEqual(['QUEUED>DOWNLOADING', 'DOWNLOADING>DOWNLOADED', 'DOWNLOADED>MUXING', 'MUXING>FAILED']);
    const failed = h.events(job.id, 'state_change').at(-1)!;
    expect(failed.level).toBe('error');
    expect(failed.payload).toMatchObject({ stage: 'mux', permanent: false, attempts: 4 });
    expect(h.events(job.id, 'log').filter((e) => e.level === 'warn')).toHaveLength(3);
  });

  it('retries are settable per stage', async () => {
    h = await createHarness('retry-per-stage');
    // The api enqueues only downloads; dub and mux get the scheduler's per-stage options.
    const s = h.scheduler({ backoffDelayMs: 50, retries: { download: 3, dub: 1, mux: 3 } });
    s.scheduler.start();
    h.worker('download');
    let calls = 0;
    h.worker('dub', async () => {
      calls++;
      throw new Error('no voice for this language');
    });
    const created = await h.createJob({ requestedDubbing: true });
    const job = await h.waitForState(created.id, 'FAILED');
    expect(calls).toBe(2);
    expect(job).toMatchObject({ failedStage: 'dub', attempt: 2, error: { code: 'STAGE_FAILED' } });
  });
});

describe('permanent errors', () => {
  it('UnrecoverableError fails the job at once, without a retry', async () => {
    h = await createHarness('unrecoverable');
    const s = h.scheduler({ backoffDelayMs: 50 });
    s.scheduler.start();
    let calls = 0;
    h.worker('download', async () => {
      calls++;
      throw new UnrecoverableError('the video is private');
    });
    const created = await h.createJob();
    const job = await h.waitForState(created.id, 'FAILED');
    await sleep(300); // a negative (no retry): no event to wait for
    expect(calls).toBe(1);
    expect(job).toMatchObject({ failedStage: 'download', attempt: 1 });
    expect(job.error).toEqual({ code: 'STAGE_FAILED_PERMANENTLY', message: 'the video is private' });
    expect(h.transitions(job.id)).toEqual(['QUEUED>DOWNLOADING', 'DOWNLOADING>FAILED']);
    expect(h.events(job.id, 'state_change').at(-1)!.payload).toMatchObject({ permanent: true });
    expect(h.events(job.id, 'log').filter((e) => e.level === 'warn')).toHaveLength(0);
  });

  it('a failedReason starting with "PERMANENT:" (a worker without UnrecoverableError) stops the retries', async () => {
    h = await createHarness('permanent-prefix');
    // A backoff far longer than the scheduler takes to read the failure (with 250 ms a loaded
    // machine could run the retry first): removing the delayed retry is what stops it.
    const s = h.scheduler({ backoffDelayMs: 20_000 });
    s.scheduler.start();
    h.worker('download');
    let calls = 0;
    h.worker('mux', async () => {
      calls++;
      throw new Error('PERMANENT: unsupported codec');
    });
    const created = await h.createJob();
    const job = await h.waitForState(created.id, 'FAILED');
    // The retry is removed before the job is failed (asserted below): it cannot run any more.
    expect(calls).toBe(1);
    expect(job).toMatchObject({ failedStage: 'mux' });
    expect(job.error).toEqual({ code: 'STAGE_FAILED_PERMANENTLY', message: 'unsupported codec' });
    expect(h.transitions(job.id)).toEqual(['QUEUED>DOWNLOADING', 'DOWNLOADING>DOWNLOADED', 'DOWNLOADED>MUXING', 'MUXING>FAILED']);
    // The delayed retry was taken out of BullMQ.
    expect(await s.scheduler.stageQueues.queues.mux.getJob(stageJobId(job.id, 'mux', 0))).toBeUndefined();
  });

  it('an invalid result is a permanent failure, not a transition on bad data', async () => {
    h = await createHarness('bad-result');
    const s = h.scheduler();
    s.scheduler.start();
    h.worker('download', async () => ({ mediaPath: '/etc/passwd', sizeBytes: -1 }));
    const created = await h.createJob();
    const job = await h.waitForState(created.id, 'FAILED');
    expect(job.error?.code).toBe('STAGE_FAILED_PERMANENTLY');
    expect(job.error?.message).toContain('invalid result');
    expect(h.jobs.listMedia(job.id)).toEqual([]);
    expect(h.transitions(job.id)).toEqual(['QUEUED>DOWNLOADING', 'DOWNLOADING>FAILED']);
  });

  it('an invalid result read in the same batch as its start still records that a worker took the stage', async () => {
    h = await createHarness('bad-result-one-batch');
    const created = await h.createJob();
    const worker = h.worker('download', async () => ({ mediaPath: '/etc/passwd', sizeBytes: -1 }));
    await new Promise((resolve) => worker.once('completed', resolve));
    await worker.close();
    const s = h.scheduler();
    s.scheduler.start();
    const job = await h.waitForState(created.id, 'FAILED');
    expect(job.error?.code).toBe('STAGE_FAILED_PERMANENTLY');
    expect(h.transitions(job.id)).toEqual(['QUEUED>DOWNLOADING', 'DOWNLOADING>FAILED']);
    await s.scheduler.settled(); // events are counted after the commit waitForState sees
    expect((await s.metrics.render()).body).toMatch(/dubgate_stage_events_total\{[^}]*event="active",outcome="superseded"[^}]*\} 1/);
  });
});
