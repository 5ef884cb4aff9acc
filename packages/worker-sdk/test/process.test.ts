// runStageWorkerProcess as a real process on the built code: config errors, readiness over IPC,
// /healthz and /metrics, and SIGTERM draining (a short job finishes, a long one is handed back).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { deleteKeys, downloadPayload, producer, rand, redisUrl, tempDir, uniquePrefix, waitFor } from './helpers.js';

// Above the sum of a test's waits (generous deadlines; they return as soon as the condition holds).
vi.setConfig({ testTimeout: 90_000 });

const dist = fileURLToPath(new URL('../dist/', import.meta.url));
const built = existsSync(join(dist, 'process.js'));

// The stage: waits `payload.url`'s `ms` query parameter (honouring its signal), then writes the file.
const SCRIPT = `
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as wait } from 'node:timers/promises';
const { runStageWorkerProcess } = await import(${JSON.stringify(join(dist, 'process.js'))});
await runStageWorkerProcess({
  stage: 'download',
  defaultPort: 0,
  processor: async (ctx) => {
    const ms = Number(new URL(ctx.payload.url).searchParams.get('ms'));
    await wait(ms, undefined, { signal: ctx.signal });
    const file = join(ctx.workDir, 'source.mp4');
    await writeFile(file, 'media');
    return { mediaPath: ctx.relativePath(file), sizeBytes: 5 };
  },
});
`;

interface Running {
  child: ChildProcess;
  out: string[];
  exited: Promise<number | null>;
  port(): number;
}

let cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.reverse()) await fn();
  cleanups = [];
});

function start(env: Record<string, string>): Running {
  const dir = tempDir('proc');
  const script = join(dir.dir, 'worker.mjs');
  writeFileSync(script, SCRIPT);
  const child = spawn(process.execPath, [script], {
    cwd: dir.dir,
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const out: string[] = [];
  let buf = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => {
    buf += c;
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    out.push(...lines);
  });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => out.push(c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    dir.cleanup();
  });
  return {
    child,
    out,
    exited,
    port() {
      for (const l of out) {
        try {
          const j = JSON.parse(l) as { msg?: string; port?: number };
          if (j.msg === 'worker-download ready' && j.port) return j.port;
        } catch {
          // not JSON
        }
      }
      throw new Error(`no ready line in:\n${out.join('\n')}`);
    },
  };
}

async function ready(r: Running): Promise<void> {
  await Promise.race([
    new Promise<void>((resolve) => r.child.on('message', (m) => m === 'ready' && resolve())),
    r.exited.then((code) => {
      throw new Error(`exited with ${code} before it was ready:\n${r.out.join('\n')}`);
    }),
  ]);
}

describe.skipIf(!built)('a worker process', () => {
  it('reports every configuration problem at once and exits 2', async () => {
    const r = start({ WORKER_CONCURRENCY: '0', REDIS_URL: 'http://nope' });
    expect(await r.exited).toBe(2);
    const text = r.out.join('');
    expect(text).toContain('WORKER_CONCURRENCY');
    expect(text).toContain('REDIS_URL');
  });

  it('says ready, serves /healthz and /metrics, and drains a running job on SIGTERM', async () => {
    const prefix = uniquePrefix();
    const media = tempDir('proc-media');
    const prod = producer('download', prefix);
    cleanups.push(async () => {
      await prod.close();
      await deleteKeys(prefix);
      media.cleanup();
    });
    const r = start({ REDIS_URL: redisUrl(), MEDIA_ROOT: media.dir, QUEUE_PREFIX: prefix, WORKER_PORT: '0', SHUTDOWN_TIMEOUT_MS: '20000' });
    await ready(r);
    const base = `http://127.0.0.1:${r.port()}`;
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', dependencies: { redis: 'up', filesystem: 'up' } });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    for (const name of ['dubgate_worker_jobs_total', 'dubgate_worker_job_duration_seconds', 'dubgate_worker_active_jobs']) {
      expect(metrics).toContain(`# TYPE ${name} `);
    }

    const jobId = `job-${rand()}`;
    const id = `${jobId}_download_g0`;
    await prod.add(id, { ...downloadPayload(jobId), url: 'https://videos.example.com/v.mp4?ms=1000' });
    await waitFor(async () => (await prod.state(id)) === 'active', undefined, 'active');
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(0);
    expect(await prod.state(id)).toBe('completed');
    expect(existsSync(join(media.dir, jobId, 'source.mp4'))).toBe(true);
  });

  it('hands a job that outlasts SHUTDOWN_TIMEOUT_MS back to the queue and still exits in time', async () => {
    const prefix = uniquePrefix();
    const media = tempDir('proc-media');
    const prod = producer('download', prefix);
    cleanups.push(async () => {
      await prod.close();
      await deleteKeys(prefix);
      media.cleanup();
    });
    // A budget of 6 s: the job gets 3 s, then 1.5 s of abort grace and 1.5 s to hand it back and
    // close (shutdownBudget). With 2 s the reserve was 0.5 s, too little on a loaded machine.
    const shutdownTimeoutMs = 6_000;
    const r = start({ REDIS_URL: redisUrl(), MEDIA_ROOT: media.dir, QUEUE_PREFIX: prefix, WORKER_PORT: '0', SHUTDOWN_TIMEOUT_MS: String(shutdownTimeoutMs) });
    await ready(r);
    const jobId = `job-${rand()}`;
    const id = `${jobId}_download_g0`;
    await prod.add(id, { ...downloadPayload(jobId), url: 'https://videos.example.com/v.mp4?ms=60000' }, { attempts: 2 });
    await waitFor(async () => (await prod.state(id)) === 'active', undefined, 'active');
    const t0 = Date.now();
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(0);
    // Within its budget, plus the second the original 2 s case allowed for the process to end.
    expect(Date.now() - t0).toBeLessThan(shutdownTimeoutMs + 1_000);
    const job = await prod.job(id);
    expect(['delayed', 'waiting']).toContain(await job?.getState());
    expect(job?.attemptsMade).toBe(0);
  });
});
