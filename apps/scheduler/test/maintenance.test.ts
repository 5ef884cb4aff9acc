import { afterEach, describe, expect, it } from 'vitest';
import { createHarness, waitFor, type Harness } from './helpers.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('maintenance', () => {
  it('the leader purges old delivered outbox rows and merges the search index', async () => {
    h = await createHarness('maint');
    // A delivered row from two days ago, and a fresh one that must stay.
    const [oldId, freshId] = h.outbox.add([
      { kind: 'publish', jobId: null, payload: { channel: 'events:state', message: { jobId: 'gone', type: 'job_removed', timestamp: new Date().toISOString(), payload: { ownerId: 'u' } } } },
      { kind: 'publish', jobId: null, payload: { channel: 'events:state', message: { jobId: 'gone2', type: 'job_removed', timestamp: new Date().toISOString(), payload: { ownerId: 'u' } } } },
    ]) as [number, number];
    h.outbox.markDelivered([oldId], new Date(Date.now() - 2 * 24 * 3600_000));
    h.outbox.markDelivered([freshId]);

    const s = h.scheduler({ maintenanceIntervalMs: 200 });
    s.scheduler.start();
    await waitFor(() => s.log.lines.some((l) => l.msg === 'maintenance pass'), 10_000, 'a maintenance pass');
    expect(h.outbox.get(oldId)).toBeNull();
    expect(h.outbox.get(freshId)).not.toBeNull();
    expect(s.log.lines.find((l) => l.msg === 'maintenance pass')?.obj).toMatchObject({ outboxPurged: 1 });
  });
});
