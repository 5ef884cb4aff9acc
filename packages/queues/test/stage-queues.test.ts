import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { closeRedis, createRedisConnection, waitForReady } from '../src/connections.js';
import { createStageQueues, type StageQueues } from '../src/stage-queues.js';
import { stageJobId } from '../src/names.js';
import { ContractValidationError } from '../src/validation.js';
import {
  capturingLogger,
  deleteKeysUnder,
  downloadPayload,
  dubPayload,
  keysUnder,
  muxPayload,
  redisUrl,
  uniqueJobId,
  uniquePrefix,
  waitFor,
} from './helpers.js';

// Above the sum of a test's waits (generous deadlines that return as soon as the condition holds).
vi.setConfig({ testTimeout: 90_000, hookTimeout: 60_000 });

let prefix: string;
let producer: Redis;
let admin: Redis;
let queues: StageQueues;
const workers: Worker[] = [];
const workerConnections: Redis[] = [];

function startWorker(stage: 'download' | 'dub' | 'mux', processor: (job: Job) => Promise<unknown>): Worker {
  const conn = createRedisConnection(redisUrl(), 'worker', { logger: capturingLogger() });
  workerConnections.push(conn);
  const w = new Worker(stage, processor, { connection: conn, prefix, concurrency: 1 });
  w.on('error', () => {});
  workers.push(w);
  return w;
}

beforeEach(async () => {
  prefix = uniquePrefix();
  producer = createRedisConnection(redisUrl(), 'producer', { logger: capturingLogger() });
  admin = createRedisConnection(redisUrl(), 'worker', { logger: capturingLogger() });
  await Promise.all([waitForReady(producer), waitForReady(admin)]);
  queues = createStageQueues({
    connection: producer,
    prefix,
    retries: { download: 2, dub: 1, mux: 0 },
    backoffDelayMs: 50,
    logger: capturingLogger(),
  });
});

afterEach(async () => {
  await Promise.allSettled(workers.splice(0).map((w) => w.close()));
  await Promise.allSettled(workerConnections.splice(0).map((c) => closeRedis(c)));
  await queues.close();
  await deleteKeysUnder(admin, prefix);
  expect(await keysUnder(admin, prefix)).toEqual([]);
  await Promise.all([closeRedis(producer), closeRedis(admin)]);
});

describe('createStageQueues', () => {
  it('adds the same stage of the same job once, however often it is enqueued', async () => {
    const jobId = uniqueJobId();
    const first = await queues.enqueue('download', downloadPayload(jobId));
    const second = await queues.enqueue('download', downloadPayload(jobId));
    expect(first.queueJobId).toBe(stageJobId(jobId, 'download', 0));
    expect(second.queueJobId).toBe(first.queueJobId);
    const jobs = await queues.queues.download.getJobs(['waiting', 'delayed', 'active']);
    expect(jobs.map((j) => j.id)).toEqual([first.queueJobId]);
    expect((await queues.counts()).download.waiting).toBe(1);
    // A new generation is a new run.
    await queues.enqueue('download', downloadPayload(jobId, 1));
    expect((await queues.counts()).download.waiting).toBe(2);
  });

  it('keeps its keys under <prefix>:download:', async () => {
    const jobId = uniqueJobId();
    const { queueJobId } = await queues.enqueue('download', downloadPayload(jobId));
    const keys = await keysUnder(admin, prefix);
    expect(keys).toContain(`${prefix}:download:${queueJobId}`);
    // Each queue writes its meta hash when created; everything else belongs to the download queue.
    const others = keys.filter((k) => !k.startsWith(`${prefix}:download:`));
    expect(others.sort()).toEqual([`${prefix}:dub:meta`, `${prefix}:mux:meta`]);
    expect(keys.length - others.length).toBeGreaterThan(2);
    expect(await admin.exists(`q:download:${queueJobId}`)).toBe(0);
  });

  it('refuses a payload that does not match the contract, adding nothing', async () => {
    const jobId = uniqueJobId();
    const bad = { ...downloadPayload(jobId), formatPreset: '8k-hdr', extra: true };
    const err = await queues.enqueue('download', bad as never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ContractValidationError);
    expect((err as ContractValidationError).code).toBe('PAYLOAD_INVALID');
    expect((err as ContractValidationError).errors.length).toBeGreaterThan(0);
    await expect(queues.enqueue('dub', { jobId } as never)).rejects.toBeInstanceOf(ContractValidationError);
    await expect(queues.enqueue('download', dubPayload(jobId) as never)).rejects.toBeInstanceOf(ContractValidationError);
    await expect(queues.enqueue('download', { ...downloadPayload(jobId), workDir: '../etc' })).rejects.toThrow(/workDir/);
    await expect(queues.enqueueRaw('mux', 'x_mux_g0', { nope: 1 })).rejects.toBeInstanceOf(ContractValidationError);
    await expect(queues.enqueue('upload' as never, downloadPayload(jobId) as never)).rejects.toThrow();
    // Only the meta hashes the queues write when created: no job, no id counter, no event.
    expect((await keysUnder(admin, prefix)).filter((k) => !k.endsWith(':meta'))).toEqual([]);
  });

  it('hands a plain BullMQ worker the job with its data and our retry options', async () => {
    const jobId = uniqueJobId();
    const payload = dubPayload(jobId, 3);
    const seen: Job[] = [];
    startWorker('dub', async (job) => {
      seen.push(job);
      return { audioPath: `${jobId}/dub.wav`, language: 'de', cues: 0 };
    });
    await queues.enqueue('dub', payload);
    await waitFor(() => seen.length === 1);
    const job = seen[0]!;
    expect(job.id).toBe(stageJobId(jobId, 'dub', 3));
    expect(job.name).toBe('dub');
    expect(job.data).toEqual(payload);
    expect(job.opts.attempts).toBe(2);
    expect(job.opts.backoff).toEqual({ type: 'exponential', delay: 50 });
    await waitFor(async () => (await queues.queues.dub.getJobState(job.id!)) === 'completed');
  });

  it('retries a failing stage `retries` times with exponential backoff, then fails it', async () => {
    const jobId = uniqueJobId();
    const attempts: number[] = [];
    startWorker('download', async () => {
      attempts.push(Date.now());
      throw new Error('network down');
    });
    const { queueJobId } = await queues.enqueue('download', downloadPayload(jobId));
    await waitFor(async () => (await queues.queues.download.getJobState(queueJobId)) === 'failed');
    expect(attempts).toHaveLength(3); // retries.download = 2
    // Delays 50 ms then 100 ms (exponential from the base).
    expect(attempts[1]! - attempts[0]!).toBeGreaterThanOrEqual(45);
    expect(attempts[2]! - attempts[1]!).toBeGreaterThanOrEqual(95);
    const [info] = await queues.findStageJobs(jobId, 0);
    expect(info).toMatchObject({ stage: 'download', generation: 0, state: 'failed', attemptsMade: 3, failedReason: 'network down' });

    // retries.mux = 0: one attempt only.
    const muxAttempts: number[] = [];
    startWorker('mux', async () => {
      muxAttempts.push(Date.now());
      throw new Error('ffmpeg crashed');
    });
    const mux = await queues.enqueue('mux', muxPayload(jobId));
    await waitFor(async () => (await queues.queues.mux.getJobState(mux.queueJobId)) === 'failed');
    expect(muxAttempts).toHaveLength(1);

    // Failed runs stay readable until removed on purpose.
    const removed = await queues.removeStageJobs(jobId, 0);
    expect(removed.removed.sort()).toEqual([queueJobId, mux.queueJobId].sort());
    expect(await queues.findStageJobs(jobId, 0)).toEqual([]);
  });

  it('lets a worker end retries early with UnrecoverableError', async () => {
    const jobId = uniqueJobId();
    let calls = 0;
    startWorker('download', async () => {
      calls++;
      throw new UnrecoverableError('PERMANENT: unsupported URL');
    });
    const { queueJobId } = await queues.enqueue('download', downloadPayload(jobId));
    await waitFor(async () => (await queues.queues.download.getJobState(queueJobId)) === 'failed');
    expect(calls).toBe(1);
  });

  it('removes waiting, delayed, failed and completed runs of a job, leaving an active one', async () => {
    const jobId = uniqueJobId();
    const other = uniqueJobId();
    const waiting = await queues.enqueue('download', downloadPayload(jobId, 0));
    const delayed = await queues.enqueue('dub', dubPayload(jobId, 1), { delay: 60_000 });
    const untouched = await queues.enqueue('download', downloadPayload(other, 0));

    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let started = false;
    startWorker('mux', async () => {
      started = true;
      await held;
      return { outputPath: `${jobId}/out.mp4`, container: 'mp4', sizeBytes: 1 };
    });
    const active = await queues.enqueue('mux', muxPayload(jobId, 2));
    await waitFor(() => started);

    const found = await queues.findStageJobs(jobId, 2);
    const states = Object.fromEntries(found.map((f) => [f.queueJobId, f.state]));
    expect(states).toEqual({
      [waiting.queueJobId]: 'waiting',
      [delayed.queueJobId]: 'delayed',
      [active.queueJobId]: 'active',
    });

    const result = await queues.removeStageJobs(jobId, 2);
    expect(result.removed.sort()).toEqual([waiting.queueJobId, delayed.queueJobId].sort());
    expect(result.active).toEqual([active.queueJobId]);
    expect(await queues.queues.download.getJob(waiting.queueJobId)).toBeUndefined();
    expect(await queues.queues.dub.getJob(delayed.queueJobId)).toBeUndefined();
    expect(await queues.queues.download.getJob(untouched.queueJobId)).toBeDefined();

    release();
    await waitFor(async () => (await queues.queues.mux.getJobState(active.queueJobId)) === 'completed');
    // Finished runs go too, and a second call finds nothing left.
    expect(await queues.removeStageJobs(jobId, 2)).toEqual({ removed: [active.queueJobId], active: [] });
    expect(await queues.removeStageJobs(jobId, 2)).toEqual({ removed: [], active: [] });
    expect(await queues.findStageJobs(jobId, 2)).toEqual([]);
    // The same id may now be enqueued afresh (e.g. after a delete and re-create).
    await queues.enqueue('download', downloadPayload(jobId, 0));
  });

  it('counts jobs per queue and state', async () => {
    const a = uniqueJobId();
    const b = uniqueJobId();
    await queues.enqueue('download', downloadPayload(a));
    await queues.enqueue('download', downloadPayload(b));
    await queues.enqueue('dub', dubPayload(a), { delay: 60_000 });
    const counts = await queues.counts();
    expect(Object.keys(counts).sort()).toEqual(['download', 'dub', 'mux']);
    expect(counts.download).toMatchObject({ waiting: 2, active: 0, delayed: 0, failed: 0, completed: 0 });
    expect(counts.dub).toMatchObject({ waiting: 0, delayed: 1 });
    expect(Object.values(counts.mux).every((n) => n === 0)).toBe(true);
  });

  it('pauses and resumes one stage', async () => {
    const jobId = uniqueJobId();
    await queues.pause('download');
    expect(await queues.isPaused('download')).toBe(true);
    expect(await queues.isPaused('dub')).toBe(false);
    let taken = 0;
    startWorker('download', async () => {
      taken++;
      return { mediaPath: `${jobId}/source.mp4`, sizeBytes: 1 };
    });
    await queues.enqueue('download', downloadPayload(jobId));
    // Proving that something does not happen: a paused queue emits nothing to wait for, so the
    // worker (up and polling, below) gets a fixed while to (wrongly) take the job.
    await workers.at(-1)!.waitUntilReady();
    await new Promise((r) => setTimeout(r, 300));
    expect(taken).toBe(0);
    await queues.resume('download');
    await waitFor(() => taken === 1);
  });

  it('enqueueRaw adds an outbox payload under the given id, once', async () => {
    const jobId = uniqueJobId();
    const id = stageJobId(jobId, 'mux', 7);
    const stored = JSON.parse(JSON.stringify(muxPayload(jobId, 7))) as unknown;
    await queues.enqueueRaw('mux', id, stored);
    await queues.enqueueRaw('mux', id, stored);
    const jobs = await queues.queues.mux.getJobs(['waiting']);
    expect(jobs.map((j) => j.id)).toEqual([id]);
    expect(jobs[0]!.opts.attempts).toBe(1);
  });

  it('close() is safe twice and refuses work afterwards; the shared connection stays open', async () => {
    await Promise.all([queues.close(), queues.close()]);
    await queues.close();
    await expect(queues.enqueue('download', downloadPayload(uniqueJobId()))).rejects.toThrow(/closed/);
    expect(producer.status).toBe('ready');
  });

  it('validates its options', () => {
    expect(() => createStageQueues({ connection: producer, prefix, retries: { download: -1, dub: 0, mux: 0 } })).toThrow(RangeError);
    expect(() => createStageQueues({ connection: producer, prefix, retries: { download: 1.5, dub: 0, mux: 0 } })).toThrow(RangeError);
  });
});
