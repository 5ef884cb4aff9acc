import { describe, expect, it } from 'vitest';
import { createOutboxRepository, type OutboxInput } from '../src/outbox-repository.js';
import { migrate, MIGRATIONS } from '../src/migrate.js';
import { manualClock, testDb } from './helpers.js';

const publish = (n: number): OutboxInput => ({
  kind: 'publish',
  jobId: `job-${n}`,
  payload: { channel: 'events:state', message: { jobId: `job-${n}`, type: 'job_removed', timestamp: '2025-01-01T00:00:00.000Z', payload: { ownerId: 'u' } } },
});

describe('outbox repository', () => {
  it('lists due rows in order and deletes them once delivered', () => {
    const { db } = testDb();
    const time = manualClock();
    const outbox = createOutboxRepository(db, { clock: time.clock });
    const ids = outbox.add([publish(1), publish(2), { ...publish(3), availableAt: '2025-01-01T00:01:00.000Z' }]);
    expect(ids).toHaveLength(3);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    expect(outbox.add([])).toEqual([]);
    expect(outbox.pendingCount()).toBe(3);
    expect(outbox.oldestPendingAt()).toBe('2025-01-01T00:00:00.000Z');

    const due = outbox.listDue(10);
    expect(due.map((r) => r.id)).toEqual(ids.slice(0, 2));
    expect(due[0]).toMatchObject({ kind: 'publish', jobId: 'job-1', attempts: 0, lastError: null, createdAt: '2025-01-01T00:00:00.000Z' });
    expect(due[0]!.payload).toEqual(publish(1).payload);
    expect(outbox.listDue(1).map((r) => r.id)).toEqual([ids[0]]);
    expect(outbox.listDue(10, '2025-01-01T00:01:00.000Z').map((r) => r.id)).toEqual(ids);

    time.advance(1000);
    expect(outbox.removeDelivered([ids[0]!, ids[1]!, 999])).toBe(2);
    expect(outbox.removeDelivered([ids[0]!])).toBe(0); // already delivered
    expect(outbox.get(ids[0]!)).toBeNull();
    expect(outbox.get(ids[2]!)).not.toBeNull();
    expect(outbox.pendingCount()).toBe(1);
    expect(outbox.listDue(10)).toEqual([]);
    expect(outbox.listDue(10, '2025-01-01T00:01:00.000Z').map((r) => r.id)).toEqual([ids[2]]);
  });

  it('removeDelivered joins the caller transaction', () => {
    const { db } = testDb();
    const outbox = createOutboxRepository(db);
    const ids = outbox.add([publish(1), publish(2)]);
    const tx = db.transaction(() => {
      outbox.removeDelivered(ids);
      throw new Error('rollback');
    });
    expect(() => tx()).toThrow('rollback');
    expect(outbox.pendingCount()).toBe(2);
  });

  it('markFailed counts attempts and delays the retry', () => {
    const { db } = testDb();
    const time = manualClock();
    const outbox = createOutboxRepository(db, { clock: time.clock });
    const [id] = outbox.add([
      { kind: 'enqueue', jobId: 'j', payload: { stage: 'download', queueJobId: 'j_download_g0', payload: { jobId: 'j', generation: 0, workDir: 'j', url: 'https://e.org/v', formatPreset: 'best', wantSubtitles: false } } },
    ]);
    expect(outbox.markFailed(id!, 'redis down', '2025-01-01T00:00:05.000Z')).toBe(true);
    expect(outbox.listDue(10)).toEqual([]);
    expect(outbox.markFailed(id!, 'x'.repeat(5000), '2025-01-01T00:00:10.000Z')).toBe(true);
    const row = outbox.listDue(10, '2025-01-01T00:00:10.000Z')[0]!;
    expect(row).toMatchObject({ id, kind: 'enqueue', attempts: 2, availableAt: '2025-01-01T00:00:10.000Z' });
    expect(row.lastError!.length).toBe(2000);
    outbox.removeDelivered([id!]);
    expect(outbox.markFailed(id!, 'late', '2025-01-01T00:00:20.000Z')).toBe(false);
    expect(outbox.markFailed(12345, 'missing', '2025-01-01T00:00:20.000Z')).toBe(false);
  });

  it('migrating to version 3 keeps pending rows and drops delivered ones', () => {
    const { db } = testDb({ migrate: false });
    migrate(db, MIGRATIONS.filter((m) => m.version < 3));
    const insert = db.prepare(`INSERT INTO outbox (job_id, kind, payload, created_at, available_at, delivered_at) VALUES (?, 'publish', ?, ?, ?, ?)`);
    const at = '2025-01-01T00:00:00.000Z';
    insert.run('delivered', JSON.stringify(publish(1).payload), at, at, at);
    insert.run('pending', JSON.stringify(publish(2).payload), at, at, null);
    migrate(db);
    const outbox = createOutboxRepository(db);
    expect(outbox.listDue(10, '2030-01-01T00:00:00.000Z').map((r) => [r.jobId, r.payload])).toEqual([['pending', publish(2).payload]]);
    const columns = (db.prepare(`SELECT name FROM pragma_table_info('outbox')`).pluck().all() as string[]);
    expect(columns).not.toContain('delivered_at');
  });

  it('add joins the caller transaction', () => {
    const { db } = testDb();
    const outbox = createOutboxRepository(db);
    const tx = db.transaction(() => {
      outbox.add([publish(1)]);
      throw new Error('rollback');
    });
    expect(() => tx()).toThrow('rollback');
    expect(outbox.pendingCount()).toBe(0);
  });
});
