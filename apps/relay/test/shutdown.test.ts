import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { rooms } from '@dubgate/contracts/ws';
import { EVENT_CHANNELS } from '@dubgate/contracts/events';
import { openDatabase, closeDatabase } from '@dubgate/db/open';
import { createJobsRepository } from '@dubgate/db/jobs';
import { createEventsRepository } from '@dubgate/db/events';
import { createAuthRepository } from '@dubgate/db/auth';
import { WAIT_MS, createHarness, logMsg, progressMsg, rand, redisUrl, sleep, startSocketNode, waitFor, type Harness, usePrivateRedis } from './helpers.js';

// Counts every message the relay receives: other test runs must not publish on the same Redis.
usePrivateRedis();

const here = dirname(fileURLToPath(import.meta.url));
const serverJs = join(here, '..', 'dist', 'server.js');

describe('relay: graceful stop', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('stop() writes pending events and snapshots and sends held progress before returning', async () => {
    // A tick so long that nothing is written before stop().
    h = await createHarness({ flushIntervalMs: 60_000, snapshotIntervalMs: 60_000, progressPerSecond: 1 });
    const owner = h.createUser();
    const { job } = h.createJob(owner);
    const c = await h.node.client([rooms.job(job.id)]);

    for (let i = 0; i < 20; i++) await h.publish('events:log', logMsg(job.id, `pending ${i}`));
    await h.publish('events:progress', progressMsg(job.id, 10));
    await h.publish('events:progress', progressMsg(job.id, 20)); // held by the rate limit
    await waitFor(async () => (await h!.metricValue('dubgate_relay_messages_total')) === 22, WAIT_MS, 'relay received all');
    expect(h.relay.pendingEvents).toBe(20);
    expect(h.events.listEvents(job.id, { limit: 100 }).items).toHaveLength(1); // just 'created'

    await h.relay.stop();
    expect(h.relay.pendingEvents).toBe(0);
    const rows = h.events.listEvents(job.id, { limit: 100 }).items.filter((e) => e.type === 'log');
    expect(rows.map((r) => r.message)).toEqual(Array.from({ length: 20 }, (_, i) => `pending ${i}`));
    expect(h.jobs.getJob(job.id)!.progress).toMatchObject({ percent: 20 });

    await c.waitFor((r) => r.length === 22, 'everything delivered after stop');
    expect(c.of('log').map((l) => l.eventId)).toEqual(rows.map((r) => r.id));
    // In order: the logs, the progress that waited behind them, then the one the rate limit held.
    expect(c.received.slice(20).map((r) => `${r.event}:${r.data.percent}`)).toEqual(['progress:10', 'progress:20']);

    // Stopped means stopped: later messages are ignored.
    await h.publish('events:log', logMsg(job.id, 'after stop'));
    await sleep(100); // proves nothing is written: nothing to wait for
    expect(h.events.listEvents(job.id, { limit: 100 }).items.filter((e) => e.type === 'log')).toHaveLength(20);
  });
});

describe('relay process (dist/server.js)', () => {
  let child: ChildProcess | undefined;
  let cleanup: Array<() => unknown> = [];
  afterEach(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    for (const f of cleanup.reverse()) await f();
    cleanup = [];
    child = undefined;
  });

  it('serves /healthz and /metrics, and on SIGTERM writes and delivers pending events, then exits 0', async () => {
    expect(existsSync(serverJs), 'build the relay first (tsc -p tsconfig.build.json)').toBe(true);
    const dir = mkdtempSync(join(tmpdir(), 'relay-proc-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const dbPath = join(dir, 'gateway.db');
    const db = openDatabase(dbPath);
    cleanup.push(() => closeDatabase(db));
    const user = createAuthRepository(db).createUser({ username: `u-${rand()}`, passwordHash: 'x', role: 'user' });
    if (!user.ok) throw new Error('no user');
    const created = createJobsRepository(db).insertJob({
      ownerId: user.user.id,
      url: 'https://example.com/v',
      requestedDubbing: false,
      targetLang: null,
      formatPreset: 'best',
      outputContainer: 'mp4',
    });
    if (!created.ok) throw new Error('no job');
    const jobId = created.job.id;

    const key = `relay-proc-${rand()}`;
    const node = await startSocketNode(key);
    cleanup.push(() => node.close());
    const c = await node.client([rooms.job(jobId)]);
    const producer = new Redis(redisUrl());
    cleanup.push(() => producer.quit());

    let stdout = '';
    let stderr = '';
    child = spawn(process.execPath, [serverJs], {
      cwd: dir,
      env: {
        PATH: process.env.PATH,
        DB_PATH: dbPath,
        REDIS_URL: redisUrl(),
        RELAY_PORT: '0',
        REALTIME_ADAPTER_KEY: key,
        RELAY_FLUSH_INTERVAL_MS: '60000',
        SHUTDOWN_TIMEOUT_MS: '10000',
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`relay not ready within 30 s: ${stdout} ${stderr}`)), 30_000);
      child!.once('message', (m) => {
        if (m === 'ready') {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const started = stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { msg?: string; port?: number })
      .find((l) => l.msg === 'relay started');
    const base = `http://127.0.0.1:${started!.port}`;

    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', dependencies: { redis: 'up', sqlite: 'up' } });

    for (let i = 0; i < 15; i++) await producer.publish(EVENT_CHANNELS.log, JSON.stringify(logMsg(jobId, `in flight ${i}`)));
    await producer.publish(EVENT_CHANNELS.log, '{broken');
    await waitFor(
      async () => (await (await fetch(`${base}/metrics`)).text()).includes('dubgate_relay_messages_total{channel="events:log",service="relay"} 16'),
      WAIT_MS,
      'relay counted the messages',
    );
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain('dubgate_relay_messages_refused_total{channel="events:log",reason="invalid_json",service="relay"} 1');
    expect(metrics).toContain('dubgate_relay_pending_events{service="relay"} 15');
    expect(metrics).toContain('# TYPE dubgate_relay_batch_size histogram');
    expect(createEventsRepository(db).listEvents(jobId, { limit: 100 }).items.filter((e) => e.type === 'log')).toHaveLength(0);

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const rows = createEventsRepository(db).listEvents(jobId, { limit: 100 }).items.filter((e) => e.type === 'log');
    expect(rows.map((r) => r.message)).toEqual(Array.from({ length: 15 }, (_, i) => `in flight ${i}`));
    await c.waitFor((r) => r.length === 15, 'client got the drained logs');
    expect(c.of('log').map((l) => l.eventId)).toEqual(rows.map((r) => r.id));
    expect(stdout).toContain('shutdown complete');
  });
});
