/**
 * Test harness for the scheduler: a temp dir with a real SQLite file and media root, its own
 * BullMQ and gateway key prefixes on the Redis at REDIS_URL, the api (built) on the same file and
 * prefixes, stage workers played by plain BullMQ workers, and cleanup of all of it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker, type Job as BullJob, type Processor } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { openDatabase, closeDatabase, type Database } from '@dubgate/db/open';
import { createJobsRepository } from '@dubgate/db/jobs';
import { createOutboxRepository } from '@dubgate/db/outbox';
import { createRedisConnection, closeRedis } from '@dubgate/queues/connections';
import { gatewayKeys, type GatewayKeys } from '@dubgate/queues/names';
import { createMetrics, type Metrics } from '@dubgate/runtime/metrics';
import type { Stage } from '@dubgate/contracts/states';
import type { Job } from '@dubgate/contracts/jobs';
import type { DownloadPayload, DubPayload, MuxPayload } from '@dubgate/contracts/stages';
// The api as built (a devDependency, so Turborepo builds it first): the scheduler never imports it.
import { buildApp } from '../../api/dist/app.js';
import { loadApiConfig } from '../../api/dist/config.js';

type FastifyInstance = Awaited<ReturnType<typeof buildApp>>;
import { createScheduler, type Scheduler, type SchedulerOptions } from '../src/scheduler.js';

export const ADMIN_PASSWORD = 'admin-password-for-scheduler-tests';
export const rand = (): string => randomBytes(4).toString('hex');

export function redisUrl(): string {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error('REDIS_URL must point at a disposable Redis for these tests');
  return url;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * How long a wait for something that must happen may take. Generous on purpose: a wait returns
 * as soon as its condition holds, and a loaded 2-core machine (two suites at once) is slow.
 */
export const WAIT_MS = 30_000;

/** Polls `cond` until it holds; `what` may be a function, to say what was last seen on failure. */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = WAIT_MS, what: string | (() => string) = 'condition', stepMs = 20): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`${typeof what === 'function' ? what() : what} not met within ${timeoutMs} ms`);
    await sleep(stepMs);
  }
}

export interface LogLine {
  /** Date.now() when written: when a thing happened, without the delay of polling for it. */
  at: number;
  level: string;
  obj: object;
  msg: string | undefined;
}

/** A logger that keeps what it is given, for assertions and for debugging a failed test. */
export function memoryLogger() {
  const lines: LogLine[] = [];
  const at = (level: string) => (obj: object, msg?: string) => {
    lines.push({ at: Date.now(), level, obj, msg });
    if (process.env.TEST_LOG) console.log(level, msg, obj);
  };
  return { lines, info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') };
}

/** Results that satisfy contracts/stages.ts. */
export const results = {
  download: (d: DownloadPayload) => ({ mediaPath: `${d.jobId}/source.mp4`, sizeBytes: 4096, title: 'a video', durationSec: 12.5 }),
  dub: (d: DubPayload) => ({ audioPath: `${d.jobId}/dub-${d.targetLang}.wav`, language: d.targetLang, cues: 5, durationSec: 12.5 }),
  mux: (d: MuxPayload) => ({ outputPath: `${d.jobId}/output.${d.outputContainer}`, container: d.outputContainer, sizeBytes: 8192 }),
};

export const PIPELINE_WITH_DUB = [
  'QUEUED>DOWNLOADING',
  'DOWNLOADING>DOWNLOADED',
  'DOWNLOADED>DUBBING',
  'DUBBING>DUBBED',
  'DUBBED>MUXING',
  'MUXING>COMPLETE',
];
export const PIPELINE_WITHOUT_DUB = ['QUEUED>DOWNLOADING', 'DOWNLOADING>DOWNLOADED', 'DOWNLOADED>MUXING', 'MUXING>COMPLETE'];

export type StageProcessor = (job: BullJob) => Promise<unknown>;

export interface Harness {
  dir: string;
  dbPath: string;
  mediaRoot: string;
  queuePrefix: string;
  gwPrefix: string;
  keys: GatewayKeys;
  db: Database;
  redis: Redis;
  jobs: ReturnType<typeof createJobsRepository>;
  outbox: ReturnType<typeof createOutboxRepository>;
  /** A scheduler on its own connections and metrics; stopped by close(). */
  scheduler(overrides?: Partial<SchedulerOptions>): SchedulerHandle;
  /** A plain BullMQ worker for one stage under this test's prefix; default: valid results at once. */
  worker(stage: Stage, processor?: StageProcessor, opts?: { concurrency?: number }): Worker;
  /** The api on the same SQLite file and prefixes, with an admin logged in. */
  api(): Promise<{ app: FastifyInstance; token: string }>;
  createJob(body?: { requestedDubbing?: boolean; targetLang?: string; outputContainer?: string }): Promise<Job>;
  control(jobId: string, op: 'cancel' | 'retry' | 'resume'): Promise<{ statusCode: number; body: unknown }>;
  /**
   * Messages on a channel, as they arrive. sync() resolves once every message whose PUBLISH
   * completed before it was called has arrived.
   */
  subscribe(channel: string): Promise<{ messages: Array<Record<string, any>>; sync(): Promise<void>; close(): Promise<void> }>;
  /** Waits until the api (or whoever wrote them) has delivered every outbox row of the job. */
  delivered(jobId: string): Promise<void>;
  job(id: string): Job;
  /** The job's state_change rows as "FROM>TO", in order. */
  transitions(id: string): string[];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  events(id: string, type?: string): Array<{ type: string; level: string; message: string; payload: any }>;
  /** Default timeout: WAIT_MS. */
  waitForState(id: string, state: string, timeoutMs?: number): Promise<Job>;
  close(): Promise<void>;
}

export interface SchedulerHandle {
  scheduler: Scheduler;
  metrics: Metrics;
  log: ReturnType<typeof memoryLogger>;
  commands: Redis;
  blocking: Redis;
  /** Stops the scheduler gracefully and closes its connections. Safe twice. */
  stop(): Promise<void>;
  /** Like a killed process: its connections drop at once, the lock is left to expire. */
  kill(): Promise<void>;
}

function connectionOptions(url: string) {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 6379), ...(u.pathname.length > 1 ? { db: Number(u.pathname.slice(1)) } : {}), maxRetriesPerRequest: null };
}

export async function createHarness(name: string, env: Record<string, string> = {}): Promise<Harness> {
  const url = redisUrl();
  const dir = mkdtempSync(join(tmpdir(), `dubgate-sched-${name}-`));
  const dbPath = join(dir, 'data', 'gateway.db');
  const mediaRoot = join(dir, 'media');
  mkdirSync(mediaRoot, { recursive: true }); // as server.ts does at start
  const tag = `${name}-${rand()}`;
  const queuePrefix = `qs-${tag}`;
  const gwPrefix = `gws-${tag}`;
  const keys = gatewayKeys(gwPrefix);
  const db = openDatabase(dbPath);
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  const jobs = createJobsRepository(db);
  const outbox = createOutboxRepository(db);

  const handles: SchedulerHandle[] = [];
  const workers: Worker[] = [];
  const subscribers: Redis[] = [];
  let apiApp: { app: FastifyInstance; token: string } | null = null;

  function scheduler(overrides: Partial<SchedulerOptions> = {}): SchedulerHandle {
    const log = memoryLogger();
    const commands = createRedisConnection(url, 'worker', { logger: log, connectionName: 'test:scheduler' });
    const blocking = createRedisConnection(url, 'worker', { logger: log, connectionName: 'test:scheduler-events' });
    const metrics = createMetrics({ service: 'scheduler', defaultMetrics: false });
    const s = createScheduler({
      db,
      redis: { commands, blocking },
      metrics,
      mediaRoot,
      minFreeBytes: 1,
      maxDownloadDepth: 10_000,
      retries: { download: 3, dub: 3, mux: 3 },
      backoffDelayMs: 100,
      queuePrefix,
      gatewayKeyPrefix: gwPrefix,
      lockTtlMs: 1_000,
      reconcileIntervalMs: 500,
      reconcileGraceMs: 300,
      backpressureIntervalMs: 100,
      drainIntervalMs: 100,
      outboxGraceMs: 300,
      eventBlockMs: 200,
      log,
      ...overrides,
    });
    let stopped: Promise<void> | null = null;
    const handle: SchedulerHandle = {
      scheduler: s,
      metrics,
      log,
      commands,
      blocking,
      stop: () =>
        (stopped ??= (async () => {
          await s.stop();
          await Promise.all([closeRedis(commands), closeRedis(blocking)]);
        })()),
      kill: async () => {
        // No release, no goodbye: the lock stays until its TTL runs out.
        commands.disconnect();
        blocking.disconnect();
        await handle.stop();
      },
    };
    handles.push(handle);
    return handle;
  }

  function worker(stage: Stage, processor?: StageProcessor, opts: { concurrency?: number } = {}): Worker {
    const fn: Processor = processor ?? (async (job: BullJob) => (results[stage] as (d: unknown) => unknown)(job.data));
    const w = new Worker(stage, fn, {
      connection: connectionOptions(url),
      prefix: queuePrefix,
      concurrency: opts.concurrency ?? 4,
      // Short lock and stall checks, so a killed test worker's job comes back quickly.
      lockDuration: 5_000,
    });
    w.on('error', () => {});
    workers.push(w);
    return w;
  }

  async function api() {
    if (apiApp) return apiApp;
    const loaded = loadApiConfig({
      env: {
        DB_PATH: dbPath,
        MEDIA_ROOT: mediaRoot,
        REDIS_URL: url,
        JWT_SECRET: 'scheduler-test-jwt-secret-0123456789abcdef0123456789',
        ADMIN_USERNAME: 'admin',
        ADMIN_PASSWORD,
        LOG_LEVEL: 'silent',
        MAX_RETRIES: '3',
        LOGIN_MAX_PER_CLIENT: '100000',
        LOGIN_MAX_PER_USERNAME: '100000',
        ...env,
      },
      envFile: false,
    });
    const app = await buildApp({ config: { ...loaded, queuePrefix, gatewayKeyPrefix: gwPrefix } });
    const res = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'admin', password: ADMIN_PASSWORD } });
    if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`);
    apiApp = { app, token: res.json<{ token: string }>().token };
    return apiApp;
  }

  async function createJob(body: { requestedDubbing?: boolean; targetLang?: string; outputContainer?: string } = {}): Promise<Job> {
    const { app, token } = await api();
    const res = await app.inject({
      method: 'POST',
      url: '/api/jobs',
      headers: { authorization: `Bearer ${token}` },
      payload: { url: `https://videos.example.com/watch/${rand()}`, ...(body.requestedDubbing ? { targetLang: 'es' } : {}), ...body },
    });
    if (res.statusCode !== 201) throw new Error(`creating a job failed: ${res.statusCode} ${res.body}`);
    return res.json<{ job: Job }>().job;
  }

  async function control(jobId: string, op: 'cancel' | 'retry' | 'resume') {
    const { app, token } = await api();
    const res = await app.inject({ method: 'POST', url: `/api/jobs/${jobId}/${op}`, headers: { authorization: `Bearer ${token}` } });
    return { statusCode: res.statusCode, body: res.json() as unknown };
  }

  async function subscribe(channel: string) {
    const sub = new Redis(url, { maxRetriesPerRequest: null });
    subscribers.push(sub);
    const messages: Array<Record<string, any>> = [];
    sub.on('message', (ch: string, text: string) => {
      if (ch === channel) messages.push(JSON.parse(text) as Record<string, any>);
    });
    await sub.subscribe(channel);
    // Redis runs commands one at a time and writes a subscriber's messages and replies in that
    // order: the reply to a PING sent now comes after every message published before it.
    const sync = async () => void (await sub.ping());
    return { messages, sync, close: async () => void sub.disconnect() };
  }

  const outboxRowsOf = db.prepare<[string], number>('SELECT count(*) FROM outbox WHERE job_id = ?').pluck();
  async function delivered(jobId: string) {
    await waitFor(() => outboxRowsOf.get(jobId) === 0, WAIT_MS, () => `outbox rows of job ${jobId} delivered (${outboxRowsOf.get(jobId)} left)`);
  }

  const eventsOf = db.prepare<[string], { type: string; level: string; message: string; payload: string | null }>(
    'SELECT type, level, message, payload FROM job_events WHERE job_id = ? ORDER BY id',
  );
  function events(id: string, type?: string) {
    return eventsOf
      .all(id)
      .filter((e) => type === undefined || e.type === type)
      .map((e) => ({ ...e, payload: e.payload ? (JSON.parse(e.payload) as any) : null }));
  }
  function transitions(id: string): string[] {
    return events(id, 'state_change').map((e) => `${e.payload.from}>${e.payload.to}`);
  }
  function job(id: string): Job {
    const j = jobs.getJob(id);
    if (!j) throw new Error(`no job ${id}`);
    return j;
  }
  async function waitForState(id: string, state: string, timeoutMs = WAIT_MS): Promise<Job> {
    try {
      await waitFor(() => job(id).status === state, timeoutMs, `job ${id} reaching ${state}`);
    } catch (err) {
      const j = job(id);
      throw new Error(`${(err as Error).message}; it is ${j.status} (error ${JSON.stringify(j.error)}), transitions ${transitions(id).join(', ')}`);
    }
    return job(id);
  }

  let closing: Promise<void> | null = null;
  async function close() {
    await Promise.allSettled(workers.map((w) => w.close(true)));
    await Promise.allSettled(handles.map((h) => h.stop()));
    if (apiApp) await apiApp.app.close().catch(() => undefined);
    for (const s of subscribers) s.disconnect();
    try {
      await deleteKeysUnder(redis, queuePrefix);
      await deleteKeysUnder(redis, gwPrefix);
    } finally {
      redis.disconnect();
      closeDatabase(db);
      rmSync(dir, { recursive: true, force: true });
    }
  }

  // Built up front: building the api blocks the event loop for a few hundred ms (schema
  // compilation), which would otherwise land in the middle of a test's scheduler lock renewals.
  await api();

  return {
    dir,
    dbPath,
    mediaRoot,
    queuePrefix,
    gwPrefix,
    keys,
    db,
    redis,
    jobs,
    outbox,
    scheduler,
    worker,
    api,
    createJob,
    control,
    subscribe,
    delivered,
    job,
    transitions,
    events,
    waitForState,
    close: () => (closing ??= close()),
  };
}

export { usePrivateRedis } from '@dubgate/test-support/private-redis';

export async function deleteKeysUnder(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (batch.length) await redis.del(...batch);
  } while (cursor !== '0');
}

/** Duplicated "FROM>TO" entries of one generation: each must happen once. */
export function duplicates(transitions: string[]): string[] {
  const seen = new Set<string>();
  const dups: string[] = [];
  for (const t of transitions) {
    if (seen.has(t)) dups.push(t);
    seen.add(t);
  }
  return dups;
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Reads one sample of a metric from the exposition text (sum over matching series). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const lbl = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => lbl.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}
