/** The mux processor run by the SDK's createStageWorker against real Redis (REDIS_URL). */
import { randomBytes } from 'node:crypto';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MuxPayload } from '@dubgate/contracts/stages';
import { createLogger } from '@dubgate/runtime/logger';
import { createStageWorker, type StageWorker } from '@dubgate/worker-sdk/worker';
import { createMuxProcessor } from '../src/mux.js';
import { makeMediaRoot, makeSources, probeJson } from './helpers.js';

const redisUrl = process.env.REDIS_URL;

describe.skipIf(!redisUrl)('mux worker on Redis', () => {
  const prefix = `q-muxtest-${randomBytes(4).toString('hex')}`;
  let root: string;
  let worker: StageWorker;
  let connection: Redis;
  let queue: Queue;
  let events: QueueEvents;

  beforeAll(async () => {
    root = await makeMediaRoot();
    worker = createStageWorker({
      stage: 'mux',
      redisUrl: redisUrl!,
      queuePrefix: prefix,
      mediaRoot: root,
      processor: createMuxProcessor(),
      logger: createLogger({ name: 'worker-mux-test', level: process.env.TEST_LOG ? 'debug' : 'silent' }),
      shutdownTimeoutMs: 5_000,
    });
    await worker.start();
    connection = new Redis(redisUrl!, { maxRetriesPerRequest: null });
    queue = new Queue('mux', { connection, prefix });
    events = new QueueEvents('mux', { connection: { url: redisUrl! }, prefix });
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

  it('completes a mux job with a dubbed track', async () => {
    const { mediaPath, dubPath } = await makeSources(root, 'mjob1');
    const data: MuxPayload = {
      jobId: 'mjob1',
      generation: 0,
      workDir: 'mjob1',
      mediaPath,
      dubbedAudioPath: dubPath,
      dubbedLanguage: 'es',
      outputContainer: 'mkv',
    };
    const job = await queue.add('mux', data, { jobId: 'mjob1_mux_g0', attempts: 1 });
    const result = await job.waitUntilFinished(events, 60_000);
    const size = (await stat(join(root, 'mjob1', 'output.mkv'))).size;
    expect(result).toEqual({ outputPath: 'mjob1/output.mkv', container: 'mkv', sizeBytes: size, durationSec: expect.closeTo(4, 0) });
    const p = await probeJson(join(root, 'mjob1', 'output.mkv'));
    expect(p.streams.map((s) => s.codec_type)).toEqual(['video', 'audio', 'audio']);
    expect(p.streams[2]!.tags?.language).toBe('spa');
  });
});
