/**
 * Test harness for the relay: a temp SQLite file, a relay on the Redis at REDIS_URL with its own
 * Socket.IO key prefix, and (since realtime nodes are built elsewhere) a bare Socket.IO server that
 * does what a realtime node does with the relay's fan-out batches (@dubgate/queues/fanout): emit
 * each event to its rooms. Clients join rooms directly through a test-only `join` event. Clients
 * are the official socket.io-client.
 */
import { afterAll, beforeAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { io as connectClient, type Socket as ClientSocket } from 'socket.io-client';
import { openDatabase, closeDatabase, type Database } from '@dubgate/db/open';
import { createJobsRepository } from '@dubgate/db/jobs';
import { createEventsRepository } from '@dubgate/db/events';
import { createAuthRepository } from '@dubgate/db/auth';
import { createRedisConnection, closeRedis } from '@dubgate/queues/connections';
import { createEventPublisher } from '@dubgate/queues/publisher';
import { fanoutChannel, parseFanoutMessage } from '@dubgate/queues/fanout';
import type { ChannelMessages, EventChannel, ProgressMessage } from '@dubgate/contracts/events';
import type { JobState } from '@dubgate/contracts/states';
import { createMetrics, type Metrics } from '@dubgate/runtime/metrics';
import { createRelay, type Relay, type RelayDeps, type RelayRepositories } from '../src/relay.js';

export const rand = (): string => randomBytes(4).toString('hex');
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function redisUrl(): string {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error('REDIS_URL must point at a disposable Redis for these tests');
  return url;
}

// Deadlines of the waits are generous on purpose: a wait returns as soon as its condition holds,
// and a loaded 2-core machine (two suites in parallel) can stall an event loop for seconds.
export const WAIT_MS = 20_000;

export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = WAIT_MS, what = 'condition', stepMs = 10): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await sleep(stepMs);
  }
}

export function memoryLogger() {
  const lines: Array<{ level: string; obj: object; msg: string | undefined }> = [];
  const at = (level: string) => (obj: object, msg?: string) => {
    lines.push({ level, obj, msg });
    if (process.env.TEST_LOG) console.log(level, msg, obj);
  };
  return { lines, info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') };
}

export const iso = (d = new Date()) => d.toISOString();

export interface Received {
  event: string;
  data: any;
}

export interface TestClient {
  socket: ClientSocket;
  received: Received[];
  of(event: string): any[];
  join(rooms: string[]): Promise<void>;
  waitFor(pred: (r: Received[]) => boolean, what?: string, timeoutMs?: number): Promise<void>;
  close(): void;
}

/**
 * A bare Socket.IO node fed by the relay's fan-out channel for adapter key `key`; clients join
 * rooms with a test-only event. Counts the fan-out messages it refused.
 */
export async function startSocketNode(key: string) {
  const sub = new Redis(redisUrl(), { lazyConnect: false });
  const http: HttpServer = createServer();
  const io = new Server(http);
  const refused: string[] = [];
  sub.on('message', (_channel: string, message: string) => {
    const parsed = parseFanoutMessage(message);
    if (!parsed.ok) return void refused.push(parsed.reason);
    for (const e of parsed.events) (io.to(e.rooms) as unknown as { emit(ev: string, p: unknown): void }).emit(e.event, e.payload);
  });
  // Resolves once Redis confirmed the subscription: nothing published after it is missed.
  await sub.subscribe(fanoutChannel(key));
  io.on('connection', (socket) => {
    socket.on('join', (list: string[], ack?: () => void) => {
      socket.join(list);
      ack?.();
    });
    socket.on('leave', (list: string[], ack?: () => void) => {
      for (const r of list) socket.leave(r);
      ack?.();
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  const clients: TestClient[] = [];

  async function client(rooms: string[] = []): Promise<TestClient> {
    const socket = connectClient(url, { transports: ['websocket'], forceNew: true, reconnection: false });
    const received: Received[] = [];
    socket.onAny((event: string, data: unknown) => received.push({ event, data }));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    const c: TestClient = {
      socket,
      received,
      of: (event) => received.filter((r) => r.event === event).map((r) => r.data),
      join: (list) => socket.timeout(WAIT_MS).emitWithAck('join', list).then(() => undefined),
      waitFor: (pred, what = 'client condition', timeoutMs = WAIT_MS) => waitFor(() => pred(received), timeoutMs, what),
      close: () => {
        socket.disconnect();
      },
    };
    clients.push(c);
    if (rooms.length > 0) await c.join(rooms);
    return c;
  }

  return {
    io,
    url,
    client,
    refused,
    async close() {
      for (const c of clients) c.close();
      await new Promise<void>((resolve) => io.close(() => resolve()));
      await sub.quit().catch(() => {});
    },
  };
}

export interface HarnessOptions extends Partial<Pick<RelayDeps, 'progressPerSecond' | 'flushIntervalMs' | 'snapshotIntervalMs' | 'maxBatch' | 'maxPending'>> {
  /** Wrap the repositories (e.g. to make them fail). */
  wrapRepositories?: (real: RelayRepositories) => Partial<RelayRepositories>;
}

/** Everything one test needs; `close()` releases all of it. */
export async function createHarness(opts: HarnessOptions = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'relay-test-'));
  const dbPath = join(dir, 'gateway.db');
  const db: Database = openDatabase(dbPath);
  const jobs = createJobsRepository(db);
  const events = createEventsRepository(db);
  const auth = createAuthRepository(db);
  const key = `relay-test-${rand()}`;
  const log = memoryLogger();
  const metrics: Metrics = createMetrics({ service: 'relay-test', defaultMetrics: false });

  // Count transactions by spying on what the relay is given.
  const calls = { insertEvents: 0, updateProgressMany: 0, eventRows: [] as number[], snapshotBatches: [] as string[][] };
  const real: RelayRepositories = {
    insertEvents: (b) => {
      calls.insertEvents++;
      calls.eventRows.push(b.length);
      return events.insertEvents(b);
    },
    updateProgressMany: (b) => {
      calls.updateProgressMany++;
      calls.snapshotBatches.push(b.map((x) => x.jobId));
      return jobs.updateProgressMany(b);
    },
  };
  const repositories = { ...real, ...opts.wrapRepositories?.(real) };

  const subscriber = createRedisConnection(redisUrl(), 'subscriber', { logger: log, connectionName: 'relay-test-sub' });
  const publisherConn = createRedisConnection(redisUrl(), 'publisher', { logger: log, connectionName: 'relay-test-emit' });
  const producer = createRedisConnection(redisUrl(), 'producer', { logger: log, connectionName: 'relay-test-producer' });
  const publisher = createEventPublisher(producer);

  const relay: Relay = createRelay({
    db,
    redis: { subscriber, publisher: publisherConn },
    repositories,
    metrics,
    log,
    socketIoKey: key,
    ...(opts.progressPerSecond !== undefined ? { progressPerSecond: opts.progressPerSecond } : {}),
    ...(opts.flushIntervalMs !== undefined ? { flushIntervalMs: opts.flushIntervalMs } : {}),
    ...(opts.snapshotIntervalMs !== undefined ? { snapshotIntervalMs: opts.snapshotIntervalMs } : {}),
    ...(opts.maxBatch !== undefined ? { maxBatch: opts.maxBatch } : {}),
    ...(opts.maxPending !== undefined ? { maxPending: opts.maxPending } : {}),
  });
  const node = await startSocketNode(key);
  await relay.start();

  function createUser(role: 'admin' | 'user' = 'user'): string {
    const r = auth.createUser({ username: `u-${rand()}`, passwordHash: 'x', role });
    if (!r.ok) throw new Error('user not created');
    return r.user.id;
  }

  function createJob(ownerId: string) {
    const r = jobs.insertJob({
      ownerId,
      url: `https://example.com/v/${rand()}`,
      requestedDubbing: false,
      targetLang: null,
      formatPreset: 'best',
      outputContainer: 'mp4',
    });
    if (!r.ok || !r.created) throw new Error('job not created');
    return { job: r.job, eventId: r.eventId };
  }

  /** Moves the job along in SQLite (as the scheduler would) and returns the state_change message. */
  function transition(jobId: string, from: JobState, to: JobState, reason?: string): ChannelMessages['events:state'] {
    const r = jobs.updateJobState(jobId, { from, to, ...(reason ? { reason } : {}) });
    if (!r.ok) throw new Error(`transition ${from}>${to} refused: ${r.reason}`);
    return {
      jobId,
      type: 'state_change',
      timestamp: iso(),
      payload: { from, to, ownerId: r.job.ownerId, eventId: r.eventId, ...(reason ? { reason } : {}) },
    };
  }

  /** Sum of a metric's samples matching `labels`; `suffix` picks a histogram's _count or _sum. */
  async function metricValue(name: string, labels: Record<string, string> = {}, suffix = ''): Promise<number> {
    const metric = metrics.registry.getSingleMetric(name);
    if (!metric) throw new Error(`no metric ${name}`);
    const { values } = await metric.get();
    return values
      .filter((v) => ((v as { metricName?: string }).metricName ?? name) === name + suffix)
      .filter((v) => Object.entries(labels).every(([k, val]) => (v.labels as Record<string, unknown>)[k] === val))
      .reduce((sum, v) => sum + v.value, 0);
  }

  return {
    dir,
    dbPath,
    db,
    jobs,
    events,
    auth,
    key,
    log,
    metrics,
    relay,
    node,
    calls,
    producer,
    publish: <C extends EventChannel>(channel: C, message: ChannelMessages[C]) => publisher.publish(channel, message),
    publishRaw: (channel: string, text: string | Buffer) => producer.publish(channel, text),
    createUser,
    createJob,
    transition,
    metricValue,
    async close() {
      await relay.stop();
      await node.close();
      await Promise.all([closeRedis(subscriber), closeRedis(publisherConn), closeRedis(producer)]);
      closeDatabase(db);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export type Harness = Awaited<ReturnType<typeof createHarness>>;

export function progressMsg(jobId: string, percent: number, extra: Partial<ProgressMessage['payload']> = {}): ProgressMessage {
  return { jobId, type: 'progress', timestamp: iso(), payload: { stage: 'download', percent, ...extra } };
}

export function logMsg(jobId: string, message: string, level: 'debug' | 'info' | 'warn' | 'error' = 'info'): ChannelMessages['events:log'] {
  return { jobId, type: 'log', timestamp: iso(), payload: { level, message, stage: 'download' } };
}

export function errorMsg(jobId: string, code: string, message: string): ChannelMessages['events:error'] {
  return { jobId, type: 'error', timestamp: iso(), payload: { code, message, stage: 'download', permanent: false } };
}

export { usePrivateRedis } from '@dubgate/test-support/private-redis';
