/**
 * Starts the system as production does (private redis-server, the BUILT api, scheduler, relay and
 * realtime), the dashboard's serve.mjs in front of them, and test stage workers played by plain
 * BullMQ workers that publish progress on events:progress like real workers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker, type Job as BullJob } from 'bullmq';
import { Redis } from 'ioredis';
import { freePort, waitFor as pollUntil } from '@dubgate/test-support/net';
import { startRedisServer } from '@dubgate/test-support/redis-server';

export const ROOT = new URL('../../../', import.meta.url).pathname;
export const WEB = new URL('../', import.meta.url).pathname;

export { freePort };

/** The shared poller, with this harness's default timeout. */
export function waitFor<T>(what: string, fn: Parameters<typeof pollUntil<T>>[1], timeoutMs = 60_000, everyMs = 100): Promise<T> {
  return pollUntil(what, fn, timeoutMs, everyMs);
}

type AppName = 'api' | 'scheduler' | 'relay' | 'realtime' | 'web';
const PORT_VAR: Record<AppName, string> = { api: 'API_PORT', scheduler: 'SCHEDULER_PORT', relay: 'RELAY_PORT', realtime: 'REALTIME_PORT', web: 'PORT' };

export interface TestSystem {
  dir: string;
  webUrl: string;
  apiUrl: string;
  adminPassword: string;
  api<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  /** Publish a message on a Redis channel (events:notification and the like). */
  publish(channel: string, message: unknown): Promise<number>;
  kill(app: AppName): Promise<void>;
  start(app: AppName): Promise<void>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startSystem(): Promise<TestSystem> {
  const dir = mkdtempSync(join(tmpdir(), 'dubgate-web-'));
  const mediaRoot = join(dir, 'media');
  mkdirSync(mediaRoot, { recursive: true });
  mkdirSync(join(dir, 'logs'));
  const redis = await startRedisServer({ dir, args: ['--maxmemory-policy', 'noeviction'] });
  const redisUrl = redis.url;

  const ports = {} as Record<AppName, number>;
  for (const app of Object.keys(PORT_VAR) as AppName[]) ports[app] = await freePort();
  const webUrl = `http://127.0.0.1:${ports.web}`;
  const apiUrl = `http://127.0.0.1:${ports.api}`;
  const adminPassword = 'web-admin-password-0123456789';
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    REDIS_URL: redisUrl,
    DB_PATH: join(dir, 'gateway.db'),
    MEDIA_ROOT: mediaRoot,
    JWT_SECRET: 'web-test-secret-0123456789-0123456789-0123456789',
    ADMIN_USERNAME: 'admin',
    ADMIN_PASSWORD: adminPassword,
    ALLOW_PRIVATE_URLS: 'true',
    REALTIME_ALLOWED_ORIGINS: webUrl,
    API_URL: apiUrl,
    REALTIME_URL: `http://127.0.0.1:${ports.realtime}`,
    LOG_LEVEL: 'info',
    NODE_ENV: 'test',
    SHUTDOWN_TIMEOUT_MS: '5000',
    STAGE_BACKOFF_MS: '200',
    RECONCILE_INTERVAL_MS: '2000',
    SCHEDULER_LOCK_TTL_MS: '2000',
  };
  const children = new Map<AppName, ChildProcess>();

  async function start(app: AppName) {
    const out = createWriteStream(join(dir, 'logs', `${app}.log`), { flags: 'a' });
    const script = app === 'web' ? join(WEB, 'serve.mjs') : join(ROOT, 'apps', app, 'dist', 'server.js');
    const child = spawn(process.execPath, [script], { env: { ...env, [PORT_VAR[app]]: String(ports[app]) }, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    child.stdout!.pipe(out);
    child.stderr!.pipe(out);
    children.set(app, child);
    await new Promise<void>((resolve, reject) => {
      // Generous: a cold start of a built process on a loaded 2-core machine takes seconds.
      const timer = setTimeout(() => reject(new Error(`${app} did not report ready; see ${dir}/logs/${app}.log`)), 60_000);
      child.on('message', (m) => {
        if (m === 'ready') {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${app} exited with ${code} before ready; see ${dir}/logs/${app}.log`));
      });
    });
  }

  async function kill(app: AppName, signal: NodeJS.Signals = 'SIGKILL') {
    const child = children.get(app);
    children.delete(app);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
  }

  // --- test stage workers ---
  const connection = { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null };
  const pub = new Redis(redisUrl);
  const sub = new Redis(redisUrl);
  const canceled = new Set<string>();
  await sub.subscribe('control:cancel');
  sub.on('message', (_ch, text: string) => {
    try {
      canceled.add((JSON.parse(text) as { jobId: string }).jobId);
    } catch {
      // ignore
    }
  });
  let seq = 0;
  const progress = (jobId: string, stage: string, percent: number, step: string) =>
    pub.publish('events:progress', JSON.stringify({
      jobId,
      type: 'progress',
      timestamp: new Date().toISOString(),
      payload: { stage, percent, speed: 1_500_000 + percent * 10_000, eta: Math.max(0, (100 - percent) / 10), step, seq: ++seq },
    }));
  /** Runs `steps` progress steps; URLs with "hold" keep going until canceled (60 s at most). */
  async function work(job: BullJob, stage: string, steps: number, everyMs: number) {
    const data = job.data as { jobId: string; url?: string };
    const hold = stage === 'download' && (data.url ?? '').includes('hold');
    const total = hold ? 240 : steps;
    for (let i = 1; i <= total; i++) {
      if (canceled.has(data.jobId)) throw new Error('canceled');
      await progress(data.jobId, stage, Math.min(99, Math.round((i / total) * 100)), `step ${i}/${total}`);
      await sleep(everyMs);
    }
  }
  const workers = [
    new Worker('download', async (job) => {
      const d = job.data as { jobId: string; workDir: string };
      await work(job, 'download', 14, 300);
      mkdirSync(join(mediaRoot, d.workDir), { recursive: true });
      writeFileSync(join(mediaRoot, d.workDir, 'source.mp4'), 'x'.repeat(2048));
      return { mediaPath: `${d.workDir}/source.mp4`, sizeBytes: 2048, title: 'Test clip', durationSec: 12.5, width: 1280, height: 720, videoCodec: 'h264', audioCodec: 'aac' };
    }, { connection, prefix: 'q', concurrency: 4, lockDuration: 5000 }),
    new Worker('dub', async (job) => {
      const d = job.data as { jobId: string; workDir: string; targetLang: string };
      await work(job, 'dub', 3, 200);
      writeFileSync(join(mediaRoot, d.workDir, 'dub.m4a'), 'y'.repeat(512));
      return { audioPath: `${d.workDir}/dub.m4a`, language: d.targetLang, cues: 3, durationSec: 12.5 };
    }, { connection, prefix: 'q', concurrency: 4, lockDuration: 5000 }),
    new Worker('mux', async (job) => {
      const d = job.data as { jobId: string; workDir: string; outputContainer: string };
      await work(job, 'mux', 3, 200);
      writeFileSync(join(mediaRoot, d.workDir, `output.${d.outputContainer}`), 'z'.repeat(4096));
      return { outputPath: `${d.workDir}/output.${d.outputContainer}`, container: d.outputContainer, sizeBytes: 4096, durationSec: 12.5 };
    }, { connection, prefix: 'q', concurrency: 4, lockDuration: 5000 }),
  ];
  for (const w of workers) w.on('error', () => {});

  for (const app of ['api', 'scheduler', 'relay', 'realtime', 'web'] as AppName[]) await start(app);

  let token: string | null = null;
  async function api<T>(method: string, path: string, body?: unknown) {
    if (!token) {
      const r = await fetch(`${apiUrl}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: adminPassword }) });
      token = ((await r.json()) as { token: string }).token;
    }
    const res = await fetch(`${apiUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
  }

  let stopped = false;
  return {
    dir,
    webUrl,
    apiUrl,
    adminPassword,
    api,
    publish: (channel, message) => pub.publish(channel, JSON.stringify(message)),
    kill,
    start,
    async stop() {
      if (stopped) return;
      stopped = true;
      await Promise.allSettled(workers.map((w) => w.close(true)));
      for (const app of ['web', 'realtime', 'relay', 'scheduler', 'api'] as AppName[]) await kill(app, 'SIGTERM').catch(() => {});
      pub.disconnect();
      sub.disconnect();
      await redis.stop();
      if (!process.env.WEB_TEST_KEEP) rmSync(dir, { recursive: true, force: true });
      else console.log(`kept ${dir}`);
    },
  };
}
