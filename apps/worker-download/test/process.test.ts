// The built worker process (dist/server.js), configured through the environment as in production.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { makeFixture, payload, rand, redisUrl, serve, startServer, tempDir, waitFor, type Fixture, type TestServer } from './helpers.js';

// Above the sum of a test's waits (generous deadlines that return as soon as the condition holds).
vi.setConfig({ testTimeout: 120_000, hookTimeout: 60_000 });

const server = fileURLToPath(new URL('../dist/server.js', import.meta.url));

let fx: Fixture;
let srv: TestServer;
beforeAll(async () => {
  fx = makeFixture();
  srv = await startServer();
  srv.route('/v.mp4', serve(fx.video));
});
afterAll(async () => {
  await srv?.close();
  fx?.cleanup();
});

async function runWorker(env: Record<string, string>, jobs: Array<{ jobId: string; url: string }>) {
  const prefix = `q-dlp-${rand()}`;
  const media = tempDir('proc');
  const connection = new Redis(redisUrl(), { maxRetriesPerRequest: null });
  const queue = new Queue('download', { connection, prefix });
  const child = spawn(process.execPath, [server], {
    cwd: media.dir,
    env: { PATH: process.env.PATH ?? '', REDIS_URL: redisUrl(), MEDIA_ROOT: media.dir, QUEUE_PREFIX: prefix, WORKER_PORT: '0', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await Promise.race([
      new Promise<void>((resolve) => child.on('message', (m) => m === 'ready' && resolve())),
      exited.then((code) => {
        throw new Error(`exited with ${code}: ${output}`);
      }),
    ]);
    const results = [];
    for (const j of jobs) {
      const id = `${j.jobId}_download_g0`;
      await queue.add('download', payload(j.jobId, j.url), { jobId: id, attempts: 2 });
      await waitFor(async () => ['completed', 'failed'].includes((await (await queue.getJob(id))?.getState()) ?? ''), 30_000, `${id} settled`);
      const job = (await queue.getJob(id))!;
      results.push({ state: await job.getState(), returnvalue: job.returnvalue, failedReason: job.failedReason, attemptsMade: job.attemptsMade });
    }
    child.kill('SIGTERM');
    const code = await exited;
    return { code, results, media: media.dir, output };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close();
    connection.disconnect();
    media.cleanup();
  }
}

describe.skipIf(!existsSync(server))('the download worker process', () => {
  it('downloads with ALLOW_PRIVATE_URLS=true and exits 0 on SIGTERM', async () => {
    const jobId = `job-${rand()}`;
    const r = await runWorker({ ALLOW_PRIVATE_URLS: 'true' }, [{ jobId, url: `${srv.base}/v.mp4` }]);
    expect(r.results[0]).toMatchObject({ state: 'completed', returnvalue: { mediaPath: `${jobId}/source.mp4`, sizeBytes: fx.video.length } });
    expect(r.code).toBe(0);
  });

  it('refuses loopback URLs by default (ALLOW_PRIVATE_URLS=false), and DOWNLOAD_MAX_BYTES applies', async () => {
    const a = `job-${rand()}`;
    const r = await runWorker({}, [{ jobId: a, url: `${srv.base}/v.mp4` }]);
    expect(r.results[0]).toMatchObject({ state: 'failed', attemptsMade: 1 });
    expect(r.results[0]?.failedReason).toMatch(/^PERMANENT: URL not allowed .*loopback or private/);

    const b = `job-${rand()}`;
    const r2 = await runWorker({ ALLOW_PRIVATE_URLS: 'true', DOWNLOAD_MAX_BYTES: '1KB' }, [{ jobId: b, url: `${srv.base}/v.mp4` }]);
    expect(r2.results[0]?.failedReason).toMatch(/^PERMANENT: the file is \d+ bytes, more than the limit of 1000/);
  });

  it('reports a bad setting and exits 2', async () => {
    const child = spawn(process.execPath, [server], { env: { PATH: process.env.PATH ?? '', REDIS_URL: redisUrl(), DOWNLOAD_MAX_BYTES: 'lots' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(2);
    expect(err).toContain('DOWNLOAD_MAX_BYTES');
  });
});

