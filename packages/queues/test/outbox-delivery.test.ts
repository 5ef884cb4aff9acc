import { afterEach, describe, expect, it, vi } from 'vitest';
import { createRedisConnection, closeRedis, waitForReady } from '../src/connections.js';
import { createStageQueues } from '../src/stage-queues.js';
import { createEventPublisher } from '../src/publisher.js';
import { createOutboxDelivery, type OutboxItem, type OutboxStore } from '../src/outbox-delivery.js';
import { closedPort, deleteKeysUnder, redisUrl, uniqueJobId, uniquePrefix } from './helpers.js';

/** An in-memory outbox with the same contract as the db package's (due rows, delivered, failed). */
function memoryStore(items: OutboxItem[], now = () => Date.now()) {
  // Like the SQLite outbox: a row is available from the moment it is written.
  const rows = items.map((item) => ({ item, delivered: false, availableAt: now(), errors: [] as string[] }));
  const store: OutboxStore = {
    listDue: (limit, at = new Date(now())) =>
      rows.filter((r) => !r.delivered && r.availableAt <= at.getTime()).slice(0, limit).map((r) => r.item),
    removeDelivered: (ids) => rows.forEach((r) => ids.includes(r.item.id) && (r.delivered = true)),
    markFailed: (id, error, retryAt) => {
      const row = rows.find((r) => r.item.id === id)!;
      row.errors.push(error);
      row.availableAt = retryAt.getTime();
    },
  };
  return { store, rows };
}

function downloadItem(id: number, jobId: string): OutboxItem {
  return {
    id,
    kind: 'enqueue',
    payload: {
      stage: 'download',
      queueJobId: `${jobId}_download_g0`,
      payload: { jobId, generation: 0, workDir: jobId, url: 'https://example.com/v.mp4', formatPreset: 'best', wantSubtitles: false },
    },
  };
}

// Above the sum of a test's waits (generous deadlines that return as soon as the condition holds).
vi.setConfig({ testTimeout: 90_000 });

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A producer and a subscriber on the test Redis (both ready), stage queues under a fresh prefix; all cleaned up. */
async function liveRedis() {
  const prefix = uniquePrefix();
  const redis = createRedisConnection(redisUrl(), 'producer');
  const sub = createRedisConnection(redisUrl(), 'subscriber');
  await waitForReady(redis); // a producer fails fast until connected
  await waitForReady(sub); // subscribing during the handshake can be lost to its ready check
  const queues = createStageQueues({ connection: redis, prefix, retries: { download: 1, dub: 1, mux: 1 } });
  cleanups.push(async () => {
    await queues.close();
    await deleteKeysUnder(redis, prefix);
    await closeRedis(sub);
    await closeRedis(redis);
  });
  return { prefix, redis, sub, queues };
}

describe('outbox delivery', () => {
  it('enqueues and publishes due rows once, even when drained twice', async () => {
    const { prefix, redis, sub, queues } = await liveRedis();
    const jobId = uniqueJobId();
    const channel = `events:test-${prefix}`;
    const received: string[] = [];
    await sub.subscribe(channel);
    sub.on('message', (_c, text) => received.push(text));

    const { store, rows } = memoryStore([
      downloadItem(1, jobId),
      downloadItem(2, jobId), // the same stage twice: still one BullMQ job
      { id: 3, kind: 'publish', payload: { channel, message: { hello: 'world' } } },
    ]);
    const delivery = createOutboxDelivery({ store, stageQueues: queues, publisher: createEventPublisher(redis) });

    const first = await delivery.drain(10, 0);
    expect(first.delivered).toEqual([1, 2, 3]);
    expect(rows.every((r) => r.delivered)).toBe(true);
    expect((await delivery.drain(10, 0)).delivered).toEqual([]);

    // Delivering the same rows again (a crash after enqueue, before removeDelivered) adds nothing.
    await delivery.deliver([downloadItem(1, jobId)]);
    expect(await queues.queues.download.getJobCountByTypes('waiting', 'prioritized', 'delayed')).toBe(1);
    // A marker published last on the same connection: once it is received, every publish the
    // drains made has been received too (one connection, delivered in order).
    await redis.publish(channel, 'marker');
    await expect.poll(() => received.includes('marker'), { timeout: 30_000 }).toBe(true);
    expect(received).toEqual([JSON.stringify({ hello: 'world' }), 'marker']);
  });

  it('leaves rows younger than the grace period to their writer', async () => {
    const redis = createRedisConnection(redisUrl(), 'producer');
    cleanups.push(() => closeRedis(redis));
    // A producer fails fast until connected; the outbox would simply keep the row.
    await waitForReady(redis);
    let now = 1_000_000;
    const { store } = memoryStore([{ id: 1, kind: 'publish', payload: { channel: 'events:x', message: {} } }], () => now);
    const queues = createStageQueues({ connection: redis, prefix: uniquePrefix(), retries: { download: 1, dub: 1, mux: 1 } });
    cleanups.push(() => queues.close());
    const delivery = createOutboxDelivery({ store, stageQueues: queues, publisher: createEventPublisher(redis), clock: () => now });
    expect((await delivery.drain(10, 5_000)).delivered).toEqual([]);
    now += 5_000;
    expect((await delivery.drain(10, 5_000)).delivered).toEqual([1]);
  });

  it('marks rows failed with a growing retry time when Redis is unreachable, and never throws', async () => {
    const redis = createRedisConnection(`redis://127.0.0.1:${await closedPort()}`, 'producer');
    cleanups.push(() => closeRedis(redis));
    const queues = createStageQueues({ connection: redis, prefix: uniquePrefix(), retries: { download: 1, dub: 1, mux: 1 } });
    cleanups.push(() => queues.close().catch(() => undefined));
    const now = 5_000_000;
    const { store, rows } = memoryStore([downloadItem(1, uniqueJobId())], () => now);
    const delivery = createOutboxDelivery({ store, stageQueues: queues, publisher: createEventPublisher(redis), clock: () => now });

    const report = await delivery.deliver(store.listDue(10));
    expect(report.delivered).toEqual([]);
    expect(report.failed).toHaveLength(1);
    const firstRetry = rows[0]!.availableAt;
    expect(firstRetry).toBeGreaterThan(now);
    await delivery.deliver([rows[0]!.item]);
    expect(rows[0]!.availableAt).toBeGreaterThan(firstRetry);
    expect(rows[0]!.delivered).toBe(false);
  });

  it('pipelined batches: every row of many callers delivered once, publishes in row order, owner key set before job_added, a bad row fails alone', async () => {
    const { prefix, redis, sub, queues } = await liveRedis();
    const channel = `events:test-${prefix}`;
    const ownerKey = (jobId: string) => `${prefix}:owner:${jobId}`;
    const received: Array<{ type: string; jobId: string; n: number; ownerKnown: string | null }> = [];
    const checks: Promise<void>[] = [];
    await sub.subscribe(channel);
    sub.on('message', (_c, text) => {
      const m = JSON.parse(text) as { type: string; jobId: string; n: number };
      // The owner key must already be there when job_added is seen.
      checks.push(redis.get(ownerKey(m.jobId)).then((owner) => void received.push({ ...m, ownerKnown: owner })));
    });

    const jobIds = Array.from({ length: 30 }, () => uniqueJobId());
    let id = 0;
    const callerRows = jobIds.map((jobId, i) => {
      const rows: OutboxItem[] = [
        { ...downloadItem(++id, jobId) },
        { id: ++id, kind: 'publish', payload: { channel, message: { type: 'job_added', jobId, n: 0, payload: { ownerId: `user-${i}` } } } },
        { id: ++id, kind: 'publish', payload: { channel, message: { type: 'state_change', jobId, n: 1 } } },
      ];
      return rows;
    });
    // One caller's enqueue row is invalid: it fails alone.
    const bad: OutboxItem = { id: ++id, kind: 'enqueue', payload: { stage: 'download', queueJobId: 'bad_download_g0', payload: { jobId: 'bad' } } };
    callerRows[3]!.push(bad);
    const { store, rows } = memoryStore(callerRows.flat());
    const delivery = createOutboxDelivery({
      store,
      stageQueues: queues,
      publisher: createEventPublisher(redis),
      pipeline: () => redis.pipeline(),
      ownership: { redis, ownerKey },
    });

    const reports = await Promise.all(callerRows.map((r) => delivery.deliverSoon(r)));
    // Each caller hears about its own rows only.
    reports.forEach((report, i) => {
      const mine = callerRows[i]!.map((r) => r.id);
      expect([...report.delivered, ...report.failed.map((f) => f.id)].sort((a, b) => a - b)).toEqual(mine);
    });
    expect(reports[3]!.failed.map((f) => f.id)).toEqual([bad.id]);
    expect(rows.filter((r) => !r.delivered).map((r) => r.item.id)).toEqual([bad.id]);
    expect(rows.find((r) => r.item.id === bad.id)!.errors).toHaveLength(1);

    expect(await queues.queues.download.getJobCountByTypes('waiting', 'prioritized', 'delayed')).toBe(30);
    await expect.poll(() => received.length, { timeout: 30_000 }).toBe(60);
    await Promise.all(checks);
    for (const jobId of jobIds) {
      const mine = received.filter((m) => m.jobId === jobId);
      expect(mine.map((m) => m.n)).toEqual([0, 1]);
      expect(mine[0]!.ownerKnown).toMatch(/^user-/);
    }
    // Delivered again (a crash before removeDelivered): nothing new is enqueued.
    await delivery.deliver(callerRows.flat().filter((r) => r.kind === 'enqueue' && r !== bad));
    expect(await queues.queues.download.getJobCountByTypes('waiting', 'prioritized', 'delayed')).toBe(30);
  });

  it('pipelined batches with Redis unreachable: every row is marked for retry, nothing throws', async () => {
    const redis = createRedisConnection(`redis://127.0.0.1:${await closedPort()}`, 'producer');
    cleanups.push(() => closeRedis(redis));
    const queues = createStageQueues({ connection: redis, prefix: uniquePrefix(), retries: { download: 1, dub: 1, mux: 1 } });
    cleanups.push(() => queues.close().catch(() => undefined));
    const now = 5_000_000;
    const items: OutboxItem[] = [downloadItem(1, uniqueJobId()), { id: 2, kind: 'publish', payload: { channel: 'events:x', message: {} } }];
    const { store, rows } = memoryStore(items, () => now);
    const delivery = createOutboxDelivery({
      store,
      stageQueues: queues,
      publisher: createEventPublisher(redis),
      pipeline: () => redis.pipeline(),
      clock: () => now,
    });
    const report = await delivery.deliverSoon(items);
    expect(report.delivered).toEqual([]);
    expect(report.failed.map((f) => f.id)).toEqual([1, 2]);
    expect(rows.every((r) => !r.delivered && r.availableAt > now)).toBe(true);
  });
});
