// Control through the api with the scheduler running: cancel (waiting, delayed, running, late
// result), retry (fresh stage ids), resume of a failed dub from its checkpoint.
import { afterEach, describe, expect, it } from 'vitest';
import { UnrecoverableError, type Job as BullJob } from 'bullmq';
import { stageJobId, type DubPayload, type DownloadPayload, type MuxPayload } from '@dubgate/contracts/stages';
import { createHarness, PIPELINE_WITH_DUB, results, sleep, WAIT_MS, waitFor, type Harness } from './helpers.js';

let h: Harness;
afterEach(async () => {
  await h?.close();
});

describe('cancel', () => {
  it('while waiting: the BullMQ job is removed and the job ends CANCELED', async () => {
    h = await createHarness('cancel-waiting');
    const s = h.scheduler();
    s.scheduler.start();
    const created = await h.createJob();
    const queueJobId = stageJobId(created.id, 'download', 0);
    // The api answers after at most 2 s even if its enqueue is still under way.
    await h.delivered(created.id);
    expect(await s.scheduler.stageQueues.queues.download.getJob(queueJobId)).toBeDefined();

    const res = await h.control(created.id, 'cancel');
    expect(res.statusCode).toBe(200);
    expect(h.job(created.id).status).toBe('CANCELED');
    expect(await s.scheduler.stageQueues.queues.download.getJob(queueJobId)).toBeUndefined();

    // A worker started now finds nothing; a reconciler pass does not bring the stage back.
    let calls = 0;
    h.worker('download', async (job: BullJob) => {
      calls++;
      return results.download(job.data as DownloadPayload);
    });
    // Negatives (nothing runs, nothing comes back): no event to wait for, so a short window.
    await sleep(400);
    await s.scheduler.reconcileNow();
    await sleep(200);
    expect(calls).toBe(0);
    expect(h.transitions(created.id)).toEqual(['QUEUED>CANCELED']);
    expect(await s.scheduler.stageQueues.queues.download.getJob(queueJobId)).toBeUndefined();
  });

  it('while a retry waits out its backoff: the delayed BullMQ job is removed', async () => {
    h = await createHarness('cancel-delayed');
    // The cancel must come within the backoff: 3 s is far more than it takes on a loaded machine.
    const backoffDelayMs = 3_000;
    const s = h.scheduler({ backoffDelayMs });
    s.scheduler.start();
    h.worker('download');
    let calls = 0;
    let failedAt = 0;
    h.worker('mux', async () => {
      calls++;
      failedAt = Date.now();
      throw new Error('transient');
    });
    const created = await h.createJob();
    const queueJobId = stageJobId(created.id, 'mux', 0);
    await waitFor(async () => (await s.scheduler.stageQueues.queues.mux.getJob(queueJobId))?.attemptsMade === 1, WAIT_MS, 'first mux attempt failed');
    expect(await (await s.scheduler.stageQueues.queues.mux.getJob(queueJobId))!.getState()).toBe('delayed');
    expect((await h.control(created.id, 'cancel')).statusCode).toBe(200);
    expect(await s.scheduler.stageQueues.queues.mux.getJob(queueJobId)).toBeUndefined();
    await sleep(failedAt + backoffDelayMs + 300 - Date.now()); // past the backoff (a negative: nothing to wait for)
    expect(calls).toBe(1);
    expect(h.job(created.id).status).toBe('CANCELED');
  });

  it('while running: the worker gets the cancel signal; its failure afterwards changes nothing and is not retried', async () => {
    h = await createHarness('cancel-running');
    const control = await h.subscribe('control:cancel');
    // A backoff far longer than the scheduler takes to read the failure (50 ms lost that race
    // under load): the removal below is what stops the retry.
    const s = h.scheduler({ backoffDelayMs: 20_000 });
    s.scheduler.start();
    h.worker('download');
    let calls = 0;
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    h.worker('dub', async (job: BullJob) => {
      calls++;
      started();
      // A worker honouring the contract: stop when control:cancel names this job.
      await waitFor(() => control.messages.some((m) => m.jobId === (job.data as DubPayload).jobId), WAIT_MS, 'cancel signal');
      throw new Error('canceled by the user');
    });
    const created = await h.createJob({ requestedDubbing: true });
    await running;
    await h.waitForState(created.id, 'DUBBING');

    expect((await h.control(created.id, 'cancel')).statusCode).toBe(200);
    // control:cancel is global to the Redis (other suites cancel jobs too): this job's signal.
    await waitFor(() => control.messages.some((m) => m.jobId === created.id), WAIT_MS, 'cancel signal published');
    const signal = control.messages.find((m) => m.jobId === created.id)!;
    expect(signal).toMatchObject({ jobId: created.id });
    expect(typeof signal.reason).toBe('string');

    // The worker fails the run; BullMQ would retry it after its backoff: the scheduler must not let it.
    const queueJobId = stageJobId(created.id, 'dub', 0);
    await waitFor(async () => (await s.scheduler.stageQueues.queues.dub.getJob(queueJobId)) === undefined, WAIT_MS, 'the stale dub run removed');
    // Gone from BullMQ, so it cannot run again; and its events are handled (no warn logged below).
    await s.scheduler.settled();
    expect(calls).toBe(1);
    const job = h.job(created.id);
    expect(job.status).toBe('CANCELED');
    expect(job.error).toBeNull();
    expect(h.transitions(created.id)).toEqual(['QUEUED>DOWNLOADING', 'DOWNLOADING>DOWNLOADED', 'DOWNLOADED>DUBBING', 'DUBBING>CANCELED']);
    expect(h.events(created.id, 'log').filter((e) => e.level === 'warn')).toEqual([]);
  });

  it('a late result after cancel: the job stays CANCELED and no next stage is enqueued', async () => {
    h = await createHarness('cancel-late');
    const s = h.scheduler();
    s.scheduler.start();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    // This worker ignores the cancel signal and finishes anyway.
    h.worker('download', async (job: BullJob) => {
      started();
      await gate;
      return results.download(job.data as DownloadPayload);
    });
    h.worker('dub');
    h.worker('mux');
    const created = await h.createJob({ requestedDubbing: true });
    await running;
    await h.waitForState(created.id, 'DOWNLOADING');
    expect((await h.control(created.id, 'cancel')).statusCode).toBe(200);
    release();
    const queueJobId = stageJobId(created.id, 'download', 0);
    await waitFor(async () => (await (await s.scheduler.stageQueues.queues.download.getJob(queueJobId))?.getState()) === 'completed', WAIT_MS, 'late completion');
    // The scheduler has handled the completion (and everything before it).
    await s.scheduler.settled();
    await s.scheduler.reconcileNow();

    const job = h.job(created.id);
    expect(job.status).toBe('CANCELED');
    expect(h.transitions(created.id)).toEqual(['QUEUED>DOWNLOADING', 'DOWNLOADING>CANCELED']);
    expect(h.jobs.listMedia(created.id)).toEqual([]);
    expect(await s.scheduler.stageQueues.queues.dub.getJob(stageJobId(created.id, 'dub', 0))).toBeUndefined();
    expect(await s.scheduler.stageQueues.queues.mux.getJob(stageJobId(created.id, 'mux', 0))).toBeUndefined();
    const pending = h.db.prepare("SELECT count(*) FROM outbox WHERE job_id = ? AND kind = 'enqueue' AND json_extract(payload, '$.stage') != 'download'").pluck().get(created.id);
    expect(pending).toBe(0);
  });
});

describe('retry', () => {
  it('starts a failed job again from QUEUED with a new generation and fresh stage ids', async () => {
    h = await createHarness('retry-job');
    const s = h.scheduler();
    s.scheduler.start();
    const seen: string[] = [];
    h.worker('download', async (job: BullJob) => {
      seen.push(job.id!);
      if (seen.length === 1) throw new UnrecoverableError('HTTP 503 from the site');
      return results.download(job.data as DownloadPayload);
    });
    h.worker('mux');
    const created = await h.createJob();
    await h.waitForState(created.id, 'FAILED');

    const res = await h.control(created.id, 'retry');
    expect(res.statusCode).toBe(200);
    const job = await h.waitForState(created.id, 'COMPLETE');
    expect(seen).toEqual([stageJobId(created.id, 'download', 0), stageJobId(created.id, 'download', 1)]);
    expect(seen[1]).toBe(`${created.id}_download_g1`);
    expect(job).toMatchObject({ generation: 1, error: null, failedStage: null, outputPath: `${created.id}/output.mp4` });
    expect(h.transitions(created.id)).toEqual([
      'QUEUED>DOWNLOADING',
      'DOWNLOADING>FAILED',
      'FAILED>QUEUED',
      'QUEUED>DOWNLOADING',
      'DOWNLOADING>DOWNLOADED',
      'DOWNLOADED>MUXING',
      'MUXING>COMPLETE',
    ]);
    expect(await s.scheduler.stageQueues.queues.mux.getJob(stageJobId(created.id, 'mux', 1))).toBeDefined();
  });
});

describe('cancel then retry', () => {
  it('the canceled run of the old generation is not run again when it fails', async () => {
    h = await createHarness('cancel-retry');
    const control = await h.subscribe('control:cancel');
    // A backoff far longer than the scheduler takes to read the failure (50 ms lost that race
    // under load and ran g0 twice): the removal below is what stops the retry.
    const s = h.scheduler({ backoffDelayMs: 20_000 });
    s.scheduler.start();
    h.worker('download');
    const muxRuns: string[] = [];
    h.worker('mux', async (job: BullJob) => {
      muxRuns.push(job.id!);
      const data = job.data as MuxPayload;
      if (data.generation === 0) {
        await waitFor(() => control.messages.some((m) => m.jobId === data.jobId), WAIT_MS, 'cancel signal');
        // The user retries meanwhile: the run fails once the job is on generation 1.
        await waitFor(() => h.job(data.jobId).generation === 1, WAIT_MS, 'the retry');
        throw new Error('aborted');
      }
      return results.mux(data);
    });
    const created = await h.createJob();
    await waitFor(() => muxRuns.length === 1, WAIT_MS, 'mux running');
    expect((await h.control(created.id, 'cancel')).statusCode).toBe(200);
    expect((await h.control(created.id, 'retry')).statusCode).toBe(200);
    const job = await h.waitForState(created.id, 'COMPLETE');
    // Once g0 is gone from BullMQ it cannot run again: then its runs are all there are.
    await waitFor(async () => (await s.scheduler.stageQueues.queues.mux.getJob(stageJobId(created.id, 'mux', 0))) === undefined, WAIT_MS, 'the g0 mux run removed');
    expect(job.generation).toBe(1);
    expect(muxRuns).toEqual([stageJobId(created.id, 'mux', 0), stageJobId(created.id, 'mux', 1)]);
    expect(await s.scheduler.stageQueues.queues.mux.getJob(stageJobId(created.id, 'mux', 0))).toBeUndefined();
  });
});

describe('resume', () => {
  it('a job that failed while dubbing goes back to DUBBING with its checkpoint, without a second download', async () => {
    h = await createHarness('resume');
    const s = h.scheduler();
    s.scheduler.start();
    let downloads = 0;
    h.worker('download', async (job: BullJob) => {
      downloads++;
      return results.download(job.data as DownloadPayload);
    });
    const dubRuns: Array<{ id: string; data: DubPayload }> = [];
    h.worker('dub', async (job: BullJob) => {
      const data = job.data as DubPayload;
      dubRuns.push({ id: job.id!, data });
      if (data.generation === 0) {
        // Two of five cues done, then a permanent error: the checkpoint stays on the BullMQ job.
        await job.updateData({ ...data, checkpoint: { cuesDone: 2, cuesTotal: 5 } });
        throw new UnrecoverableError('voice model crashed');
      }
      return results.dub(data);
    });
    h.worker('mux', async (job: BullJob) => results.mux(job.data as MuxPayload));

    const created = await h.createJob({ requestedDubbing: true, targetLang: 'de' });
    const failed = await h.waitForState(created.id, 'FAILED');
    expect(failed).toMatchObject({ failedStage: 'dub', error: { code: 'STAGE_FAILED_PERMANENTLY' } });
    expect(h.jobs.getCheckpoint(created.id)).toEqual({ cuesDone: 2, cuesTotal: 5 });

    const res = await h.control(created.id, 'resume');
    expect(res.statusCode).toBe(200);
    const job = await h.waitForState(created.id, 'COMPLETE');
    expect(downloads).toBe(1);
    expect(dubRuns).toHaveLength(2);
    expect(dubRuns[1]!.id).toBe(stageJobId(created.id, 'dub', 1));
    expect(dubRuns[1]!.data.generation).toBe(failed.generation + 1);
    expect(dubRuns[1]!.data.checkpoint).toEqual({ cuesDone: 2, cuesTotal: 5 });
    expect(dubRuns[1]!.data.mediaPath).toBe(`${created.id}/source.mp4`);
    expect(job.generation).toBe(1);
    expect(h.transitions(created.id)).toEqual([
      ...PIPELINE_WITH_DUB.slice(0, 3),
      'DUBBING>FAILED',
      'FAILED>DUBBING',
      'DUBBING>DUBBED',
      'DUBBED>MUXING',
      'MUXING>COMPLETE',
    ]);
    expect(h.jobs.listMedia(created.id).find((m) => m.kind === 'dubbed_audio')).toMatchObject({ language: 'de' });
  });
});
