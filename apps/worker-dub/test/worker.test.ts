/** The dub processor run by the SDK's createStageWorker against real Redis (REDIS_URL). */
import { randomBytes } from 'node:crypto';
import { rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DubPayload } from '@dubgate/contracts/stages';
import { createLogger } from '@dubgate/runtime/logger';
import { createStageWorker, type StageWorker } from '@dubgate/worker-sdk/worker';
import { createDubProcessor } from '../src/dub.js';
import { TEST_SRT, makeMediaRoot, makeTestVideo } from './helpers.js';

const redisUrl = process.env.REDIS_URL;

describe.skipIf(!redisUrl)('dub worker on Redis', () => {
  const prefix = `q-dubtest-${randomBytes(4).toString('hex')}`;
  let root: string;
  let worker: StageWorker;
  let connection: Redis;
  let queue: Queue;
  let events: QueueEvents;

  beforeAll(async () => {
    root = await makeMediaRoot();
    worker = createStageWorker({
      stage: 'dub',
      redisUrl: redisUrl!,
      queuePrefix: prefix,
      mediaRoot: root,
      processor: createDubProcessor(),
      logger: createLogger({ name: 'worker-dub-test', level: process.env.TEST_LOG ? 'debug' : 'silent' }),
      shutdownTimeoutMs: 5_000,
    });
    await worker.start();
    connection = new Redis(redisUrl!, { maxRetriesPerRequest: null });
    queue = new Queue('dub', { connection, prefix });
    events = new QueueEvents('dub', { connection: { url: redisUrl! }, prefix });
    await events.waitUntilReady();
  });

  afterAll(async () => {
    await worker?.close();
    await events?.close();
    if (queue) {
      await queue.obliterate({ force: true }).catch(() => {});
      await queue.close();
    }
    connection?.disconnect();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('completes a dub job and stores the checkpoint of every cue in the job', async () => {
    const mediaPath = await makeTestVideo(root, 'rjob1', { subs: 'none' });
    await writeFile(join(root, 'rjob1', 'subs.srt'), TEST_SRT);
    const data: DubPayload = { jobId: 'rjob1', generation: 0, workDir: 'rjob1', mediaPath, subtitlePath: 'rjob1/subs.srt', targetLang: 'es' };
    const job = await queue.add('dub', data, { jobId: 'rjob1_dub_g0', attempts: 1 });
    const result = await job.waitUntilFinished(events, 60_000);
    expect(result).toEqual({ audioPath: 'rjob1/dub.es.wav', language: 'es', cues: 4, durationSec: expect.closeTo(4, 1) });
    expect((await stat(join(root, 'rjob1', 'dub.es.wav'))).size).toBeGreaterThan(44);
    const stored = await queue.getJob('rjob1_dub_g0');
    expect(stored?.data.checkpoint).toMatchObject({ cuesDone: 4, cuesTotal: 4 });
  });

  it('fails a job without subtitles permanently: no retry', async () => {
    const mediaPath = await makeTestVideo(root, 'rjob2', { subs: 'none' });
    const data: DubPayload = { jobId: 'rjob2', generation: 0, workDir: 'rjob2', mediaPath, targetLang: 'es' };
    const job = await queue.add('dub', data, { jobId: 'rjob2_dub_g0', attempts: 3, backoff: { type: 'fixed', delay: 0 } });
    await expect(job.waitUntilFinished(events, 60_000)).rejects.toThrow(/^PERMANENT: NO_SUBTITLES/);
    const stored = await queue.getJob('rjob2_dub_g0');
    expect(stored?.attemptsMade).toBe(1);
    expect(await stored?.getState()).toBe('failed');
  });
});
