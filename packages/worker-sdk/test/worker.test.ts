// The stage worker against a real Redis: payload and result validation, events in the contracts'
// shapes, retries and permanent failures, checkpoints, cancellation and shutdown hand-back.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Stage } from '@dubgate/contracts/states';
import type { StageResults } from '@dubgate/contracts/stages';
import { createMetrics } from '@dubgate/runtime/metrics';
import { createStageWorker, type StageProcessor, type StageWorker } from '../src/worker.js';
import { PermanentError } from '../src/errors.js';
import { runChild } from '../src/child.js';
import {
  deleteKeys,
  downloadPayload,
  dubPayload,
  listen,
  metricValue,
  producer,
  publishCancel,
  rand,
  redisUrl,
  sleep,
  tempDir,
  testLogger,
  uniquePrefix,
  waitFor,
} from './helpers.js';

// The waits below have generous deadlines (a wait returns as soon as its condition holds); the
// test timeout stays above their sum, so a failure names what it waited for.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 60_000 });

type Cleanup = () => unknown;
let cleanups: Cleanup[] = [];
afterEach(async () => {
  for (const fn of cleanups.reverse()) await fn();
  cleanups = [];
});

async function setup<S extends Stage>(stage: S) {
  const prefix = uniquePrefix();
  const media = tempDir('sdk');
  const prod = producer(stage, prefix);
  const events = await listen();
  const workers: StageWorker[] = [];
  cleanups.push(async () => {
    await Promise.all(workers.map((w) => w.close()));
    await prod.close();
    await events.close();
    await deleteKeys(prefix);
    media.cleanup();
  });
  return {
    prefix,
    mediaRoot: media.dir,
    prod,
    events,
    async worker(processor: StageProcessor<S>, extra: Partial<Parameters<typeof createStageWorker<S>>[0]> = {}) {
      const w = createStageWorker<S>({
        stage,
        redisUrl: redisUrl(),
        queuePrefix: prefix,
        mediaRoot: media.dir,
        processor,
        logger: testLogger(),
        progressIntervalMs: 50,
        ...extra,
      });
      workers.push(w);
      await w.start();
      return w;
    },
    /** Writes a file under the job directory and returns its MEDIA_ROOT-relative path. */
    file(jobId: string, name: string, content = 'x') {
      mkdirSync(join(media.dir, jobId), { recursive: true });
      writeFileSync(join(media.dir, jobId, name), content);
      return `${jobId}/${name}`;
    },
  };
}

const jobIdOf = () => `job-${rand()}`;

describe('a stage run', () => {
  it('gets a validated payload and a context, and publishes progress and logs in the contracts\' shapes', async () => {
    const t = await setup('download');
    const jobId = jobIdOf();
    const seen: Record<string, unknown> = {};
    await t.worker(async (ctx) => {
      Object.assign(seen, { payload: ctx.payload, stage: ctx.stage, attempt: ctx.attempt, queueJobId: ctx.queueJobId, workDir: ctx.workDir, mediaRoot: ctx.mediaRoot });
      for (let i = 1; i <= 5; i++) {
        ctx.progress({ percent: i * 10, speed: 1000 * i, eta: 10 - i, step: 'transfer' });
        await sleep(60);
      }
      ctx.log('info', 'fetched 5 chunks');
      const path = join(ctx.workDir, 'source.mp4');
      writeFileSync(path, 'media');
      return { mediaPath: ctx.relativePath(path), sizeBytes: 5 };
    });
    await t.prod.add(`${jobId}_download_g0`, downloadPayload(jobId));
    await waitFor(async () => (await t.prod.state(`${jobId}_download_g0`)) === 'completed', undefined, 'completed');
    const job = await t.prod.job(`${jobId}_download_g0`);
    expect(job?.returnvalue).toEqual({ mediaPath: `${jobId}/source.mp4`, sizeBytes: 5 });
    expect(seen).toMatchObject({ payload: downloadPayload(jobId), stage: 'download', attempt: 1, queueJobId: `${jobId}_download_g0`, workDir: join(t.mediaRoot, jobId), mediaRoot: t.mediaRoot });

    await waitFor(() => t.events.of(jobId, 'events:progress').some((m) => m.message.payload.final === true), undefined, 'final progress');
    // Everything of this run was published before the final progress, on one connection, in order.
    const all = t.events.of(jobId);
    for (const m of all) expect(m.errors, `${m.channel} ${JSON.stringify(m.message)}`).toEqual([]);
    const progress = t.events.of(jobId, 'events:progress').map((m) => m.message.payload);
    expect(progress.length).toBeGreaterThanOrEqual(3);
    expect(progress.map((p) => p.seq)).toEqual(progress.map((_, i) => i));
    expect(progress[0]).toMatchObject({ stage: 'download', percent: 10, speed: 1000, eta: 9, step: 'transfer' });
    // The SDK sends a final 100% when the stage did not.
    expect(progress.at(-1)).toMatchObject({ percent: 100, final: true });
    const logs = t.events.of(jobId, 'events:log').map((m) => m.message.payload);
    expect(logs).toContainEqual({ level: 'info', message: 'fetched 5 chunks', stage: 'download' });
  });

  it('throttles progress but always sends the latest and the final update', async () => {
    const t = await setup('download');
    const jobId = jobIdOf();
    await t.worker(
      async (ctx) => {
        for (let i = 0; i <= 200; i++) ctx.progress({ percent: i / 2 });
        await sleep(400);
        ctx.progress({ percent: 100, step: 'done', final: true });
        ctx.progress({ percent: 50 }); // after final: dropped
        return { mediaPath: t.file(jobId, 'source.mp4'), sizeBytes: 1 };
      },
      { progressIntervalMs: 200 },
    );
    await t.prod.add(`${jobId}_download_g0`, downloadPayload(jobId));
    await waitFor(async () => (await t.prod.state(`${jobId}_download_g0`)) === 'completed');
    // The final progress is the last message of the run (published in order on one connection).
    await waitFor(() => t.events.of(jobId, 'events:progress').some((m) => m.message.payload.final === true), undefined, 'final progress');
    const progress = t.events.of(jobId, 'events:progress').map((m) => m.message.payload);
    // The first at once, the latest (100) after the interval, then the final one.
    expect(progress.map((p) => p.percent)).toEqual([0, 100, 100]);
    expect(progress.at(-1)).toMatchObject({ final: true, step: 'done', seq: 2 });
  });

  it('refuses an invalid payload permanently, without calling the stage', async () => {
    const t = await setup('download');
    const jobId = jobIdOf();
    let calls = 0;
    await t.worker(async () => {
      calls++;
      throw new Error('must not run');
    });
    await t.prod.add(`${jobId}_download_g0`, { ...downloadPayload(jobId), formatPreset: '4k' }, { attempts: 3 });
    await waitFor(async () => (await t.prod.state(`${jobId}_download_g0`)) === 'failed');
    const job = await t.prod.job(`${jobId}_download_g0`);
    expect(calls).toBe(0);
    expect(job?.attemptsMade).toBe(1);
    expect(job?.failedReason).toMatch(/^PERMANENT: invalid payload: \/formatPreset/);
    expect(job?.stacktrace?.at(-1)).toMatch(/^UnrecoverableError/);
    await waitFor(() => t.events.of(jobId, 'events:error').length > 0, undefined, 'error event');
    const [err] = t.events.of(jobId, 'events:error');
    expect(err?.valid).toBe(true);
    expect(err?.message.payload).toMatchObject({ code: 'PAYLOAD_INVALID', stage: 'download', permanent: true });
  });

  it('does not retry a PermanentError and publishes it with its code', async () => {
    const t = await setup('download');
    const jobId = jobIdOf();
    let calls = 0;
    await t.worker(async () => {
      calls++;
      throw new PermanentError('the URL is a web page', 'EXTRACTOR_MISSING');
    });
    await t.prod.add(`${jobId}_download_g0`, downloadPayload(jobId), { attempts: 3 });
    await waitFor(async () => (await t.prod.state(`${jobId}_download_g0`)) === 'failed');
    // 'failed' is final: a retry would have moved the job to delayed or waiting instead, so no
    // later run can follow and there is nothing to wait for.
    const job = await t.prod.job(`${jobId}_download_g0`);
    expect(calls).toBe(1);
    expect(await t.prod.state(`${jobId}_download_g0`)).toBe('failed');
    expect(job?.attemptsMade).toBe(1);
    expect(job?.failedReason).toBe('PERMANENT: the URL is a web page');
    await waitFor(() => t.events.of(jobId, 'events:error').length > 0, undefined, 'error event');
    expect(t.events.of(jobId, 'events:error')[0]?.message.payload).toEqual({
      code: 'EXTRACTOR_MISSING',
      message: 'the URL is a web page',
      stage: 'download',
      permanent: true,
    });
  });

  it('lets BullMQ retry other errors, with the attempt number in the context', async () => {
    const t = await setup('download');
    const jobId = jobIdOf();
    const attempts: number[] = [];
    await t.worker(async (ctx) => {
      attempts.push(ctx.attempt);
      if (ctx.attempt === 1) throw new Error('connection reset');
      return { mediaPath: t.file(jobId, 'source.mp4'), sizeBytes: 1 };
    });
    await t.prod.add(`${jobId}_download_g0`, downloadPayload(jobId), { attempts: 3 });
    await waitFor(async () => (await t.prod.state(`${jobId}_download_g0`)) === 'completed');
    expect(attempts).toEqual([1, 2]);
    // Published during the first run; the subscriber receives it asynchronously.
    await waitFor(() => t.events.of(jobId, 'events:error').length > 0, undefined, 'error event');
    const errors = t.events.of(jobId, 'events:error').map((m) => m.message.payload);
    expect(errors).toEqual([{ code: 'STAGE_FAILED', message: 'connection reset', stage: 'download', permanent: false }]);
  });

  it('refuses an invalid result at the source (schema, or a file that does not exist)', async () => {
    const t = await setup('download');
    const a = jobIdOf();
    const b = jobIdOf();
    await t.worker(async (ctx) => {
      if (ctx.payload.jobId === a) return { mediaPath: '/etc/passwd', sizeBytes: 1 } as StageResults['download'];
      return { mediaPath: `${ctx.payload.jobId}/missing.mp4`, sizeBytes: 1 };
    });
    await t.prod.add(`${a}_download_g0`, downloadPayload(a), { attempts: 3 });
    await t.prod.add(`${b}_download_g0`, downloadPayload(b), { attempts: 3 });
    await waitFor(async () => (await t.prod.state(`${a}_download_g0`)) === 'failed' && (await t.prod.state(`${b}_download_g0`)) === 'failed');
    const ja = await t.prod.job(`${a}_download_g0`);
    const jb = await t.prod.job(`${b}_download_g0`);
    expect(ja?.attemptsMade).toBe(1);
    expect(ja?.failedReason).toMatch(/^PERMANENT: the download stage returned an invalid result \(\/mediaPath/);
    expect(jb?.failedReason).toMatch(/^PERMANENT: .*missing\.mp4.*not a file under MEDIA_ROOT/);
    await waitFor(() => t.events.of(a, 'events:error').length > 0, undefined, 'error event');
    expect(t.events.of(a, 'events:error')[0]?.message.payload).toMatchObject({ code: 'RESULT_INVALID', permanent: true });
  });

  it('keeps a dub checkpoint across a retry, and in job.data for a resume', async () => {
    const t = await setup('dub');
    const jobId = jobIdOf();
    const seen: Array<unknown> = [];
    await t.worker(async (ctx) => {
      seen.push(ctx.payload.checkpoint ?? null);
      const start = ctx.payload.checkpoint?.cuesDone ?? 0;
      for (let cue = start; cue < 4; cue++) {
        if (ctx.attempt === 1 && cue === 2) throw new Error('espeak-ng crashed');
        await ctx.checkpoint({ cuesDone: cue + 1, cuesTotal: 4, state: { trackPath: `${jobId}/dub.es.partial.wav` } });
      }
      if (ctx.attempt === 2) throw new PermanentError('disk full, give up', 'DISK_FULL');
      return { audioPath: t.file(jobId, 'dub.es.wav'), language: 'es', cues: 4 };
    });
    await t.prod.add(`${jobId}_dub_g0`, dubPayload(jobId), { attempts: 3 });
    await waitFor(async () => (await t.prod.state(`${jobId}_dub_g0`)) === 'failed');
    expect(seen).toEqual([null, { cuesDone: 2, cuesTotal: 4, state: { trackPath: `${jobId}/dub.es.partial.wav` } }]);
    // What the scheduler copies into SQLite when the stage fails for good:
    const job = await t.prod.job(`${jobId}_dub_g0`);
    expect((job?.data as { checkpoint?: unknown }).checkpoint).toEqual({ cuesDone: 4, cuesTotal: 4, state: { trackPath: `${jobId}/dub.es.partial.wav` } });
  });

  it('refuses checkpoints outside the dub stage and invalid checkpoints', async () => {
    const t = await setup('download');
    const jobId = jobIdOf();
    await t.worker(async (ctx) => {
      await ctx.checkpoint({ cuesDone: 1, cuesTotal: 2 });
      return { mediaPath: t.file(jobId, 'source.mp4'), sizeBytes: 1 };
    });
    await t.prod.add(`${jobId}_download_g0`, downloadPayload(jobId));
    await waitFor(async () => (await t.prod.state(`${jobId}_download_g0`)) === 'failed');
    expect((await t.prod.job(`${jobId}_download_g0`))?.failedReason).toMatch(/dub contract only/);

    const d = await setup('dub');
    await d.worker(async (ctx) => {
      await ctx.checkpoint({ cuesDone: -1, cuesTotal: 2 });
      return { audioPath: 'x', language: 'es', cues: 0 };
    });
    await d.prod.add(`${jobId}_dub_g0`, dubPayload(jobId));
    await waitFor(async () => (await d.prod.state(`${jobId}_dub_g0`)) === 'failed');
    expect((await d.prod.job(`${jobId}_dub_g0`))?.failedReason).toMatch(/invalid checkpoint: \/cuesDone/);
  });
});

describe('cancellation', () => {
  it('control:cancel aborts the running stage within 5 s, kills its child, and the job is not retried', async () => {
    const t = await setup('download');
    const jobId = jobIdOf();
    let childStarted = false;
    let calls = 0;
    await t.worker(async (ctx) => {
      calls++;
      childStarted = true;
      await runChild('sleep', ['60'], { signal: ctx.signal });
      throw new Error('unreachable');
    });
    await t.prod.add(`${jobId}_download_g0`, downloadPayload(jobId), { attempts: 3 });
    await waitFor(() => childStarted, undefined, 'stage started');
    const t0 = Date.now();
    await publishCancel({ jobId, reason: 'canceled by user' });
    await waitFor(async () => (await t.prod.state(`${jobId}_download_g0`)) === 'failed', 5_000, 'failed after cancel');
    expect(Date.now() - t0).toBeLessThan(5_000);
    const job = await t.prod.job(`${jobId}_download_g0`);
    expect(job?.failedReason).toBe('PERMANENT: canceled');
    expect(job?.stacktrace?.at(-1)).toMatch(/^UnrecoverableError/);
    // 'failed' is final (a retry would have moved it to delayed or waiting): no second run can follow.
    expect(calls).toBe(1);
    expect(await t.prod.state(`${jobId}_download_g0`)).toBe('failed');
    // Published before the job failed; the subscriber receives it asynchronously.
    await waitFor(() => t.events.of(jobId, 'events:log').length > 0, undefined, 'log event');
    const logs = t.events.of(jobId, 'events:log').map((m) => m.message.payload.message);
    expect(logs).toContain('canceled: canceled by user');
  });

  it('settles a canceled job within the grace period even when the stage ignores its signal', async () => {
    const t = await setup('download');
    const jobId = jobIdOf();
    let started = false;
    let abortedAt: number | undefined;
    await t.worker(
      async (ctx) => {
        started = true;
        // Only noted: the stage goes on ignoring its signal.
        ctx.signal.addEventListener('abort', () => (abortedAt = Date.now()));
        await sleep(20_000);
        throw new Error('late');
      },
      { abortGraceMs: 500 },
    );
    await t.prod.add(`${jobId}_download_g0`, downloadPayload(jobId), { attempts: 3 });
    await waitFor(() => started, undefined, 'stage started');
    await publishCancel({ jobId, reason: 'stop' });
    // The grace period runs from the abort, so it is measured from there (not from before the
    // test's own connection to publish the cancel was even set up).
    await waitFor(() => abortedAt !== undefined, undefined, 'stage aborted');
    await waitFor(async () => (await t.prod.state(`${jobId}_download_g0`)) === 'failed', 5_000, 'failed after cancel');
    expect(Date.now() - abortedAt!).toBeLessThan(2_000);
    expect((await t.prod.job(`${jobId}_download_g0`))?.failedReason).toBe('PERMANENT: canceled');
  });

  it('a cancel naming a stageJobId stops only that run; BullMQ\'s worker.cancelJob works too', async () => {
    const t = await setup('download');
    const a = jobIdOf();
    const b = jobIdOf();
    // A third run whose cancel, sent after the one under test, proves that one was handled: the
    // worker's cancel subscription gets messages in the order they were published.
    const marker = jobIdOf();
    const running = new Set<string>();
    const w = await t.worker(
      async (ctx) => {
        running.add(ctx.payload.jobId);
        await new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('aborted'))));
        throw new Error('unreachable');
      },
      { concurrency: 3 },
    );
    await t.prod.add(`${a}_download_g0`, downloadPayload(a), { attempts: 3 });
    await t.prod.add(`${b}_download_g0`, downloadPayload(b), { attempts: 3 });
    await t.prod.add(`${marker}_download_g0`, downloadPayload(marker), { attempts: 3 });
    await waitFor(() => running.size === 3, undefined, 'all three running');
    await publishCancel({ jobId: a, stageJobId: `${a}_download_g7`, reason: 'other generation' });
    await publishCancel({ jobId: marker, stageJobId: `${marker}_download_g0`, reason: 'marker' });
    await waitFor(async () => (await t.prod.state(`${marker}_download_g0`)) === 'failed', undefined, 'marker failed');
    expect(w.activeCount()).toBe(2);
    expect(await t.prod.state(`${a}_download_g0`)).toBe('active');
    await publishCancel({ jobId: a, stageJobId: `${a}_download_g0`, reason: 'this one' });
    await waitFor(async () => (await t.prod.state(`${a}_download_g0`)) === 'failed', undefined, 'a failed');
    expect(await t.prod.state(`${b}_download_g0`)).toBe('active');
    expect(w.worker.cancelJob(`${b}_download_g0`, 'by BullMQ')).toBe(true);
    await waitFor(async () => (await t.prod.state(`${b}_download_g0`)) === 'failed', undefined, 'b failed');
    expect((await t.prod.job(`${b}_download_g0`))?.failedReason).toBe('PERMANENT: canceled');
  });

  it('refuses a job that a cancel reached before a worker took it', async () => {
    const t = await setup('download');
    const jobId = jobIdOf();
    // Keeps the worker (concurrency 1) busy, so it can only take the job after the cancel was
    // handled: the blocker's own cancel, published after the job's, is received after it.
    const blocker = jobIdOf();
    let blockerStarted = false;
    let calls = 0;
    await t.worker(async (ctx) => {
      if (ctx.payload.jobId === blocker) {
        blockerStarted = true;
        await new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('aborted'))));
      }
      calls++;
      return { mediaPath: t.file(jobId, 'source.mp4'), sizeBytes: 1 };
    });
    await t.prod.add(`${blocker}_download_g0`, downloadPayload(blocker), { attempts: 3 });
    await waitFor(() => blockerStarted, undefined, 'blocker running');
    await t.prod.add(`${jobId}_download_g0`, downloadPayload(jobId), { attempts: 3 });
    await publishCancel({ jobId, reason: 'canceled while queued' });
    await publishCancel({ jobId: blocker, reason: 'frees the worker' });
    await waitFor(async () => (await t.prod.state(`${jobId}_download_g0`)) === 'failed', undefined, 'failed');
    expect(await t.prod.state(`${blocker}_download_g0`)).toBe('failed');
    expect(calls).toBe(0);
    expect((await t.prod.job(`${jobId}_download_g0`))?.failedReason).toBe('PERMANENT: canceled');
  });
});

describe('shutdown', () => {
  it('lets a running job finish within the timeout', async () => {
    const t = await setup('download');
    const jobId = jobIdOf();
    let started = false;
    const w = await t.worker(
      async (ctx) => {
        started = true;
        await sleep(400);
        return { mediaPath: t.file(ctx.payload.jobId, 'source.mp4'), sizeBytes: 1 };
      },
      { shutdownTimeoutMs: 5_000 },
    );
    await t.prod.add(`${jobId}_download_g0`, downloadPayload(jobId));
    await waitFor(() => started, undefined, 'started');
    await w.close();
    expect(await t.prod.state(`${jobId}_download_g0`)).toBe('completed');
  });

  it('hands a job that outlasts the timeout back to the queue; another worker completes it without losing an attempt', async () => {
    const t = await setup('download');
    const jobId = jobIdOf();
    const id = `${jobId}_download_g0`;
    let startedA = false;
    let reasonA: unknown;
    const a = await t.worker(
      async (ctx) => {
        startedA = true;
        await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
        reasonA = ctx.signal.reason;
        throw new Error('aborted');
      },
      { shutdownTimeoutMs: 300 },
    );
    await t.prod.add(id, downloadPayload(jobId), { attempts: 2 });
    await waitFor(() => startedA, undefined, 'started on A');
    const t0 = Date.now();
    await a.close();
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect(reasonA).toBe('shutdown');
    const handedBack = await t.prod.job(id);
    expect(['delayed', 'waiting']).toContain(await handedBack?.getState());
    expect(handedBack?.attemptsMade).toBe(0);

    const attemptsOnB: number[] = [];
    await t.worker(async (ctx) => {
      attemptsOnB.push(ctx.attempt);
      return { mediaPath: t.file(ctx.payload.jobId, 'source.mp4'), sizeBytes: 1 };
    });
    await waitFor(async () => (await t.prod.state(id)) === 'completed', undefined, 'completed on B');
    expect(attemptsOnB).toEqual([1]);
    const done = await t.prod.job(id);
    // BullMQ counts the finished run; the handed-back one counted nothing.
    expect(done?.attemptsMade).toBe(1);
    expect(done?.returnvalue).toEqual({ mediaPath: `${jobId}/source.mp4`, sizeBytes: 1 });
  });

  it('close() is safe to call twice and without start()', async () => {
    const media = tempDir('idle');
    cleanups.push(() => media.cleanup());
    const w = createStageWorker({
      stage: 'mux',
      redisUrl: redisUrl(),
      queuePrefix: uniquePrefix(),
      mediaRoot: media.dir,
      processor: async () => ({ outputPath: 'x', container: 'mp4', sizeBytes: 0 }),
      logger: testLogger(),
    });
    await Promise.all([w.close(), w.close()]);
    await w.close();
  });
});

describe('metrics', () => {
  it('counts jobs by outcome, their duration, and the jobs running', async () => {
    const t = await setup('download');
    const metrics = createMetrics({ service: 'worker-test', defaultMetrics: false });
    const ok = jobIdOf();
    const bad = jobIdOf();
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    await t.worker(
      async (ctx) => {
        if (ctx.payload.jobId === bad) throw new PermanentError('nope');
        await gate;
        return { mediaPath: t.file(ok, 'source.mp4'), sizeBytes: 1 };
      },
      { metrics },
    );
    await t.prod.add(`${ok}_download_g0`, downloadPayload(ok));
    // BullMQ marks the job active before the processor (which counts it) runs: wait for the gauge.
    const activeJobs = async () => metricValue((await metrics.render()).body, 'dubgate_worker_active_jobs', { stage: 'download' });
    await waitFor(async () => (await activeJobs()) === 1, undefined, 'active gauge at 1');
    expect(await activeJobs()).toBe(1);
    release();
    await waitFor(async () => (await t.prod.state(`${ok}_download_g0`)) === 'completed');
    await t.prod.add(`${bad}_download_g0`, downloadPayload(bad));
    await waitFor(async () => (await t.prod.state(`${bad}_download_g0`)) === 'failed');
    const text = (await metrics.render()).body;
    expect(metricValue(text, 'dubgate_worker_jobs_total', { stage: 'download', outcome: 'completed' })).toBe(1);
    expect(metricValue(text, 'dubgate_worker_jobs_total', { stage: 'download', outcome: 'failed_permanent' })).toBe(1);
    expect(metricValue(text, 'dubgate_worker_job_duration_seconds_count', { stage: 'download' })).toBe(2);
    expect(metricValue(text, 'dubgate_worker_active_jobs', { stage: 'download' })).toBe(0);
  });
});
