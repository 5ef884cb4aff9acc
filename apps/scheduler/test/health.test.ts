// The health endpoint and metrics: through createScheduler + startHealthServer, and the built
// process (dist/server.js) on a private redis-server, since its key prefixes are the defaults.
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { openDatabase, closeDatabase } from '@dubgate/db/open';
import { createJobsRepository } from '@dubgate/db/jobs';
import { createAuthRepository } from '@dubgate/db/auth';
import { pingWithTimeout } from '@dubgate/queues/connections';
import { startHealthServer } from '@dubgate/runtime/health';
import { stageJobId } from '@dubgate/contracts/stages';
import { startRedisServer } from '@dubgate/test-support/redis-server';
import { createHarness, freePort, metricValue, sleep, WAIT_MS, waitFor, type Harness } from './helpers.js';

const REQUIRED_METRICS = [
  'dubgate_job_transitions_total',
  'dubgate_scheduler_leader',
  'dubgate_reconciler_repairs_total',
  'dubgate_stage_handoff_seconds',
  'dubgate_stage_duration_seconds',
  'dubgate_stage_retries_total',
  'dubgate_jobs_held',
];

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('health and metrics (in process)', () => {
  it('GET /healthz reports redis and sqlite; GET /metrics exposes the scheduler metrics', async () => {
    h = await createHarness('health');
    const s = h.scheduler();
    const health = await startHealthServer({
      port: 0,
      metrics: s.metrics,
      logger: s.log as never,
      checks: { redis: () => pingWithTimeout(s.commands, 1_000), sqlite: () => h!.db.prepare('SELECT 1').pluck().get() === 1 },
    });
    try {
      s.scheduler.start();
      h.worker('download');
      h.worker('mux');
      const job = await h.createJob();
      await h.waitForState(job.id, 'COMPLETE');
      // Metrics are counted after the commits waitForState sees: wait for the events to be handled.
      await s.scheduler.settled();

      const res = await fetch(`http://127.0.0.1:${health.port}/healthz`);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ status: 'ok', dependencies: { redis: 'up', sqlite: 'up' } });

      const text = await (await fetch(`http://127.0.0.1:${health.port}/metrics`)).text();
      for (const name of REQUIRED_METRICS) expect(text).toContain(`# TYPE ${name} `);
      expect(metricValue(text, 'dubgate_scheduler_leader')).toBe(1);
      expect(metricValue(text, 'dubgate_job_transitions_total', { from: 'QUEUED', to: 'DOWNLOADING' })).toBe(1);
      expect(metricValue(text, 'dubgate_job_transitions_total')).toBe(4);
      expect(metricValue(text, 'dubgate_stage_handoff_seconds_count')).toBe(1);
      expect(metricValue(text, 'dubgate_stage_duration_seconds_count', { stage: 'download' })).toBe(1);
    } finally {
      await health.close();
    }
  });
});

const here = fileURLToPath(new URL('.', import.meta.url));
const serverJs = join(here, '..', 'dist', 'server.js');

describe('the built process', () => {
  it('serves /healthz and /metrics, leads, drains the outbox, and exits 0 on SIGTERM', async (ctx) => {
    if (!existsSync(serverJs)) return ctx.skip('apps/scheduler/dist/server.js is missing: run the build first');
    const which = spawn('redis-server', ['--version'], { stdio: 'ignore' });
    const hasRedis = await new Promise<boolean>((resolve) => {
      which.once('error', () => resolve(false));
      which.once('exit', (code) => resolve(code === 0));
    });
    if (!hasRedis) return ctx.skip('redis-server is not installed: the process uses the default key prefixes, so it needs a Redis of its own');

    const dir = mkdtempSync(join(tmpdir(), 'dubgate-sched-proc-'));
    // The default prefixes (q, gw) are not configurable by env: this Redis is the test's alone.
    const redisServer = await startRedisServer({ dir });
    const redisUrl = redisServer.url;
    const port = await freePort();
    const dbPath = join(dir, 'gateway.db');
    let child: ChildProcess | undefined;
    const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    try {
      // A job whose enqueue was never delivered, older than the drainer's grace period.
      const db = openDatabase(dbPath);
      let jobId: string;
      try {
        createAuthRepository(db).createUser({ id: 'u1', username: 'owner', passwordHash: 'x', role: 'admin' });
        const r = createJobsRepository(db).insertJob({ ownerId: 'u1', url: 'https://videos.example.com/watch/p', requestedDubbing: false, targetLang: null, formatPreset: 'best', outputContainer: 'mp4' });
        if (!r.ok) throw new Error('insert failed');
        jobId = r.job.id;
        db.prepare("UPDATE outbox SET available_at = '2024-01-01T00:00:00.000Z'").run();
      } finally {
        closeDatabase(db);
      }

      let stderr = '';
      child = spawn(process.execPath, [serverJs], {
        env: {
          PATH: process.env.PATH,
          DB_PATH: dbPath,
          REDIS_URL: redisUrl,
          MEDIA_ROOT: join(dir, 'media'),
          SCHEDULER_PORT: String(port),
          LOG_LEVEL: 'warn',
          MIN_FREE_DISK_BYTES: '1',
          SCHEDULER_LOCK_TTL_MS: '1000',
          SHUTDOWN_TIMEOUT_MS: '5000',
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));

      await waitFor(async () => {
        try {
          return (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200;
        } catch {
          return false;
        }
      }, WAIT_MS, `scheduler /healthz (stderr: ${stderr})`);
      const health = (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { dependencies: Record<string, string> };
      expect(health.dependencies).toMatchObject({ redis: 'up', sqlite: 'up' });

      let text = '';
      await waitFor(async () => {
        text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        return metricValue(text, 'dubgate_scheduler_leader') === 1;
      }, WAIT_MS, 'leadership in /metrics');
      for (const name of REQUIRED_METRICS) expect(text).toContain(`# TYPE ${name} `);
      // It acts under the default names: the lock, and the drained download in q:download.
      expect(await redis.get('gw:scheduler:lock')).toMatch(/^\d+-/);
      await waitFor(async () => (await redis.exists(`q:download:${stageJobId(jobId, 'download', 0)}`)) === 1, WAIT_MS, 'drained download');

      child.kill('SIGTERM');
      // SHUTDOWN_TIMEOUT_MS is 5 s; a slow but clean exit must not count as a hang.
      const code = await Promise.race([exited, sleep(WAIT_MS).then(() => `timeout (stderr: ${stderr})` as const)]);
      expect(code).toBe(0);
      // It let go of the lock on the way out.
      expect(await redis.exists('gw:scheduler:lock')).toBe(0);
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      redis.disconnect();
      await redisServer.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
