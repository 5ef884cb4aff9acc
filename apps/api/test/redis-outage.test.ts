// Invariant 2 with Redis down: POST /api/jobs still answers 201 quickly, the job and its pending
// outbox rows are in SQLite, and once Redis is back the scheduler's drain enqueues it exactly
// once. /healthz reports the outage as 503 without hanging. Uses a redis-server of its own.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Redis } from 'ioredis';
import { createOutboxRepository } from '@dubgate/db/outbox';
import { createRedisConnection, closeRedis } from '@dubgate/queues/connections';
import { createStageQueues } from '@dubgate/queues/stage-queues';
import { createEventPublisher } from '@dubgate/queues/publisher';
import { createOutboxDelivery } from '@dubgate/queues/outbox-delivery';
import {
  bearer,
  collectMessages,
  createJob,
  createTestApp,
  freePort,
  loginAdmin,
  postJob,
  startHungRedis,
  startRedis,
  videoUrl,
  waitFor,
  type JobJson,
  type OwnRedis,
  type TestApp,
} from './helpers.js';

// Above the sum of a test's waits (generous deadlines that return as soon as the condition holds).
vi.setConfig({ testTimeout: 90_000, hookTimeout: 60_000 });

let redis: OwnRedis;
let t: TestApp;
let token: string;
let port: number;

beforeAll(async () => {
  port = await freePort();
  redis = await startRedis(port);
  t = await createTestApp({ name: 'outage', redisUrl: redis.url });
  token = (await loginAdmin(t.app)).token;
});
afterAll(async () => {
  try {
    await t?.close();
  } finally {
    await redis?.stop();
  }
});

// Every row in the outbox is pending: delivered rows are deleted.
type OutboxRow = { id: number; kind: string; availableAt: string; attempts: number };
const outboxOf = (jobId: string) =>
  t
    .db()
    .prepare('SELECT id, kind, available_at AS availableAt, attempts FROM outbox WHERE job_id = ? ORDER BY id')
    .all(jobId) as OutboxRow[];

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - started };
}

describe('Redis stopped and restarted', () => {
  let accepted: JobJson;
  let canceledDuringOutage: JobJson;

  it('works normally while Redis is up', async () => {
    const job = await createJob(t.app, token);
    const probe = new Redis(redis.url);
    try {
      expect(await probe.exists(`${t.queuePrefix}:download:${job.id}_download_g0`)).toBe(1);
    } finally {
      probe.disconnect();
    }
    canceledDuringOutage = await createJob(t.app, token);
    expect((await t.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
  });

  it('accepts POST /api/jobs with Redis stopped: 201 in under 3 s, job and pending outbox rows in SQLite', async () => {
    await redis.stop();
    const { value: res, ms } = await timed(() => postJob(t.app, token, { url: videoUrl('during-outage') }));
    expect(res.statusCode).toBe(201);
    expect(ms).toBeLessThan(3_000);
    accepted = res.json<{ job: JobJson }>().job;
    expect(accepted.status).toBe('QUEUED');
    expect(t.db().prepare('SELECT state FROM jobs WHERE id = ?').pluck().get(accepted.id)).toBe('QUEUED');
    const rows = outboxOf(accepted.id);
    expect(rows.map((r) => r.kind)).toEqual(['enqueue', 'publish']); // both pending
    // The api reads on without Redis.
    expect((await t.app.inject({ method: 'GET', url: `/api/jobs/${accepted.id}`, headers: bearer(token) })).statusCode).toBe(200);
  });

  it('answers /healthz with 503 and redis down within 1.5 s', async () => {
    for (let i = 0; i < 2; i++) {
      const { value: res, ms } = await timed(() => t.app.inject({ method: 'GET', url: '/healthz' }));
      expect(ms).toBeLessThan(1_500);
      expect(res.statusCode).toBe(503);
      expect(res.json()).toMatchObject({ status: 'degraded', dependencies: { redis: 'down', sqlite: 'up', filesystem: 'up' } });
    }
  });

  it('still serves /metrics and control requests without Redis, with no 5xx', async () => {
    const { value: metrics, ms } = await timed(() => t.app.inject({ method: 'GET', url: '/metrics' }));
    expect(metrics.statusCode).toBe(200);
    expect(ms).toBeLessThan(2_500);
    const { value: cancel, ms: cancelMs } = await timed(() =>
      t.app.inject({ method: 'POST', url: `/api/jobs/${canceledDuringOutage.id}/cancel`, headers: bearer(token) }),
    );
    expect(cancel.statusCode).toBe(200);
    expect(cancelMs).toBeLessThan(3_000);
    expect(t.db().prepare('SELECT state FROM jobs WHERE id = ?').pluck().get(canceledDuringOutage.id)).toBe('CANCELED');
  });

  it('enqueues the accepted job exactly once when the drain runs after Redis is back', async () => {
    redis = await startRedis(port);
    const conn = createRedisConnection(redis.url, 'producer');
    const stageQueues = createStageQueues({ connection: conn, prefix: t.queuePrefix, retries: { download: 3, dub: 3, mux: 3 } });
    const events = collectMessages(redis.url, 'events:state');
    try {
      await events.ready;
      const queueJobId = `${accepted.id}_download_g0`;
      // Nothing delivered it yet: the api does not redeliver by itself.
      expect(await conn.exists(`${t.queuePrefix}:download:${queueJobId}`)).toBe(0);

      // Failed rows wait for their retry time; the scheduler drains periodically.
      const pendingDueLater = () =>
        t.db().prepare('SELECT count(*) FROM outbox WHERE available_at > ?').pluck().get(new Date().toISOString()) as number;
      await waitFor(() => pendingDueLater() === 0, 30_000, 50);
      const store = createOutboxRepository(t.db());
      const delivery = createOutboxDelivery({ store, stageQueues, publisher: createEventPublisher(conn) });

      const ids = outboxOf(accepted.id).map((r) => r.id);
      expect(ids).toHaveLength(2);
      const records = ids.map((id) => store.get(id)!);
      const cancelRows = outboxOf(canceledDuringOutage.id).filter((r) => r.kind === 'publish');
      expect(cancelRows.length).toBeGreaterThanOrEqual(2);

      const first = await delivery.drain(100, 0);
      expect(first.failed).toEqual([]);
      expect(first.delivered).toEqual(expect.arrayContaining(ids));
      expect(outboxOf(accepted.id)).toEqual([]);

      const job = await stageQueues.queues.download.getJob(queueJobId);
      expect(job?.data).toMatchObject({ jobId: accepted.id, generation: 0, url: accepted.url });
      const waiting = async () => (await conn.lrange(`${t.queuePrefix}:download:wait`, 0, -1)).filter((id) => id === queueJobId).length;
      expect(await waiting()).toBe(1);
      await events.next((m) => m.jobId === accepted.id && m.type === 'job_added');

      // Draining again changes nothing, and so does delivering the same rows twice (a crash
      // between enqueue and deleting them).
      const second = await delivery.drain(100, 0);
      expect(second.delivered).not.toEqual(expect.arrayContaining(ids));
      const again = await delivery.deliver(records);
      expect(again.failed).toEqual([]);
      expect(await waiting()).toBe(1);
      expect((await stageQueues.counts()).download.waiting).toBe(await conn.llen(`${t.queuePrefix}:download:wait`));

      // The cancel made during the outage reached the outbox too; it is delivered, not lost.
      expect(first.delivered).toEqual(expect.arrayContaining(cancelRows.map((r) => r.id)));
      expect(outboxOf(canceledDuringOutage.id)).toEqual([]);
      await events.next((m) => m.jobId === canceledDuringOutage.id && m.type === 'state_change');
    } finally {
      await events.close();
      await stageQueues.close();
      await closeRedis(conn);
    }
  });

  it('reports healthy again once the api reconnects', async () => {
    await waitFor(async () => (await t.app.inject({ method: 'GET', url: '/healthz' })).statusCode === 200, 30_000, 100);
    // And enqueues directly again.
    const job = await createJob(t.app, token);
    expect(t.db().prepare('SELECT count(*) FROM outbox WHERE job_id = ?').pluck().get(job.id)).toBe(0);
  });
});

describe('Redis down from the start', () => {
  it('starts, answers /healthz 503 and POST /api/jobs 201 quickly, and closes quickly', async () => {
    const nothing = await freePort();
    const { value: app, ms: buildMs } = await timed(() => createTestApp({ name: 'no-redis', redisUrl: `redis://127.0.0.1:${nothing}` }));
    try {
      expect(buildMs).toBeLessThan(3_000);
      const admin = (await loginAdmin(app.app)).token;
      const health = await timed(() => app.app.inject({ method: 'GET', url: '/healthz' }));
      expect(health.ms).toBeLessThan(1_500);
      expect(health.value.statusCode).toBe(503);
      expect(health.value.json()).toMatchObject({ dependencies: { redis: 'down' } });
      const created = await timed(() => postJob(app.app, admin));
      expect(created.value.statusCode).toBe(201);
      expect(created.ms).toBeLessThan(3_000);
      const logout = await timed(() => app.app.inject({ method: 'POST', url: '/api/auth/logout', headers: bearer(admin) }));
      // Revocation in SQLite still holds without Redis.
      expect(logout.value.statusCode).toBe(204);
      expect(logout.ms).toBeLessThan(3_000);
      expect((await app.app.inject({ method: 'GET', url: '/api/jobs', headers: bearer(admin) })).statusCode).toBe(401);
    } finally {
      const closed = await timed(() => app.close());
      expect(closed.ms).toBeLessThan(5_000);
    }
  });
});

describe('a hung Redis (accepts connections, never answers)', () => {
  it('bounds /healthz, POST /api/jobs and close()', async () => {
    const hung = await startHungRedis();
    const app = await createTestApp({ name: 'hung', redisUrl: hung.url });
    try {
      const admin = (await loginAdmin(app.app)).token;
      const health = await timed(() => app.app.inject({ method: 'GET', url: '/healthz' }));
      expect(health.ms).toBeLessThan(1_500);
      expect(health.value.statusCode).toBe(503);
      expect(health.value.json()).toMatchObject({ dependencies: { redis: 'down', sqlite: 'up', filesystem: 'up' } });

      const created = await timed(() => postJob(app.app, admin));
      expect(created.value.statusCode).toBe(201);
      expect(created.ms).toBeLessThan(3_000);
      const job = created.value.json<{ job: JobJson }>().job;
      const pending = app.db().prepare('SELECT count(*) FROM outbox WHERE job_id = ?').pluck().get(job.id);
      expect(pending).toBe(2);

      const metrics = await timed(() => app.app.inject({ method: 'GET', url: '/metrics' }));
      expect(metrics.value.statusCode).toBe(200);
      expect(metrics.ms).toBeLessThan(2_500);
    } finally {
      const closed = await timed(() => app.close());
      await hung.close();
      expect(closed.ms).toBeLessThan(6_000);
    }
  });
});
