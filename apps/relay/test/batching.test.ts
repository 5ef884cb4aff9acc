import { afterEach, describe, expect, it } from 'vitest';
import { rooms } from '@dubgate/contracts/ws';
import { EVENT_CHANNELS } from '@dubgate/contracts/events';
import { createHarness, errorMsg, logMsg, type Harness, usePrivateRedis } from './helpers.js';

// The relay listens on global Pub/Sub channels: other packages' tests must not reach it.
usePrivateRedis();

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('relay: logs and errors are written to job_events in batches', () => {
  it('writes 500 fast log messages in far fewer transactions, all rows in order, each delivered with its id', async () => {
    h = await createHarness({ flushIntervalMs: 100 });
    const owner = h.createUser();
    const { job } = h.createJob(owner);
    const c = await h.node.client([rooms.job(job.id)]);

    const pipeline = h.producer.pipeline();
    for (let i = 0; i < 500; i++) {
      const msg = i % 50 === 49 ? errorMsg(job.id, 'E_TEST', `line ${i}`) : logMsg(job.id, `line ${i}`);
      pipeline.publish(msg.type === 'error' ? EVENT_CHANNELS.error : EVENT_CHANNELS.log, JSON.stringify(msg));
    }
    await pipeline.exec();

    await c.waitFor((r) => r.length === 500, '500 events delivered');

    // Far fewer transactions than messages (one per tick while the burst lasted).
    expect(h.calls.insertEvents).toBeGreaterThanOrEqual(1);
    expect(h.calls.insertEvents).toBeLessThanOrEqual(25);
    expect(h.calls.eventRows.reduce((a, b) => a + b, 0)).toBe(500);
    expect(await h.metricValue('dubgate_relay_batch_size', { kind: 'events' }, '_count')).toBe(h.calls.insertEvents);
    expect(await h.metricValue('dubgate_relay_batch_size', { kind: 'events' }, '_sum')).toBe(500);

    // Every row exists, in the order published.
    const rows = h.events.listEvents(job.id, { limit: 1000 }).items.filter((e) => e.type === 'log' || e.type === 'error');
    expect(rows.map((r) => r.message)).toEqual(Array.from({ length: 500 }, (_, i) => `line ${i}`));
    expect(rows.filter((r) => r.type === 'error')).toHaveLength(10);

    // The client got them in the same order, each carrying the id of its row.
    expect(c.received.map((r) => r.data.message)).toEqual(rows.map((r) => r.message));
    expect(c.received.map((r) => r.data.eventId)).toEqual(rows.map((r) => r.id));
    expect(c.received.map((r) => r.event)).toEqual(rows.map((r) => r.type));
  });

  it('drops (and counts) logs of jobs that no longer exist, storing the rest of the batch', async () => {
    h = await createHarness({ flushIntervalMs: 100 });
    const owner = h.createUser();
    const kept = h.createJob(owner).job;
    const gone = h.createJob(owner).job;
    h.jobs.deleteJob(gone.id);
    const keptRoom = await h.node.client([rooms.job(kept.id)]);
    const goneRoom = await h.node.client([rooms.job(gone.id)]);

    const pipeline = h.producer.pipeline();
    for (let i = 0; i < 10; i++) {
      pipeline.publish(EVENT_CHANNELS.log, JSON.stringify(logMsg(gone.id, `late ${i}`)));
      pipeline.publish(EVENT_CHANNELS.log, JSON.stringify(logMsg(kept.id, `kept ${i}`)));
    }
    pipeline.publish(EVENT_CHANNELS.error, JSON.stringify(errorMsg(gone.id, 'E', 'late error')));
    await pipeline.exec();

    await keptRoom.waitFor((r) => r.length === 10, 'kept logs delivered');
    await h.relay.stop(); // nothing left pending
    expect(goneRoom.received).toEqual([]);
    expect(h.events.listEvents(kept.id, { limit: 100 }).items.filter((e) => e.type === 'log')).toHaveLength(10);
    expect(h.events.listEvents(gone.id, { limit: 100 }).items).toEqual([]);
    expect(await h.metricValue('dubgate_relay_messages_dropped_total', { channel: 'events:log', reason: 'job_missing' })).toBe(10);
    expect(await h.metricValue('dubgate_relay_messages_dropped_total', { channel: 'events:error', reason: 'job_missing' })).toBe(1);
  });

  it('keeps events pending while SQLite fails, retries on the next tick, and gives up after three attempts', async () => {
    let failuresLeft = 2;
    h = await createHarness({
      flushIntervalMs: 50,
      wrapRepositories: (real) => ({
        insertEvents: (b) => {
          if (failuresLeft > 0) {
            failuresLeft--;
            throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
          }
          return real.insertEvents(b);
        },
      }),
    });
    const owner = h.createUser();
    const { job } = h.createJob(owner);
    const c = await h.node.client([rooms.job(job.id)]);
    await h.publish('events:log', logMsg(job.id, 'survives two failed writes'));
    await c.waitFor((r) => r.length === 1, 'log delivered after retries');
    expect(c.received[0]!.data.eventId).toBe(h.events.listEvents(job.id, { limit: 10 }).items.at(-1)!.id);
    expect(await h.metricValue('dubgate_relay_flush_failures_total', { kind: 'events' })).toBe(2);

    // Three failures in a row: the event still goes out live, without an eventId, and is counted.
    failuresLeft = 3;
    await h.publish('events:log', logMsg(job.id, 'never stored'));
    await c.waitFor((r) => r.length === 2, 'unstored log delivered');
    expect(c.received[1]!.data).not.toHaveProperty('eventId');
    expect(await h.metricValue('dubgate_relay_messages_dropped_total', { reason: 'not_stored' })).toBe(1);
    expect(h.relay.pendingEvents).toBe(0);
  });
});
