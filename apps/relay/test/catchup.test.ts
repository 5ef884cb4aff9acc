import { afterEach, describe, expect, it } from 'vitest';
import { rooms } from '@dubgate/contracts/ws';
import type { JobEventRecord } from '@dubgate/contracts/jobs';
import { createHarness, errorMsg, logMsg, sleep, type Harness, usePrivateRedis } from './helpers.js';

// The relay listens on global Pub/Sub channels: other packages' tests must not reach it.
usePrivateRedis();

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('relay: a client that was away catches up from job_events', () => {
  it('sees every stored event exactly once: live ids + listEvents(after: last seen) with no gap and no duplicate', async () => {
    h = await createHarness({ flushIntervalMs: 30 });
    const owner = h.createUser();
    const { job } = h.createJob(owner);
    const harness = h;

    /** What a client keeps: every stored event id it has seen, in arrival order. */
    const seen: number[] = [];
    const idOf = (data: { eventId?: number }) => data.eventId;

    // Phase 1: online; logs, errors and state changes stream in.
    let c = await h.node.client([rooms.job(job.id)]);
    let n = 0;
    const emitSome = async (count: number) => {
      for (let i = 0; i < count; i++, n++) {
        if (n % 17 === 5) await harness.publish('events:error', errorMsg(job.id, 'E_RETRY', `error ${n}`));
        else await harness.publish('events:log', logMsg(job.id, `line ${n}`));
        if (n % 10 === 9) await sleep(5);
      }
    };
    await emitSome(60);
    const s1 = h.transition(job.id, 'QUEUED', 'DOWNLOADING');
    await h.publish('events:state', s1);
    await c.waitFor((r) => r.length === 61, 'phase 1 delivered');
    for (const r of c.received) seen.push(idOf(r.data)!);

    // Phase 2: the client is away while more happens.
    c.close();
    await emitSome(80);
    const s2 = h.transition(job.id, 'DOWNLOADING', 'DOWNLOADED');
    await h.publish('events:state', s2);
    await sleep(100);

    // Phase 3: back. Join the room first (buffering live events), keep the stream going while it
    // pages through what it missed, then merge: live events above the last fetched id are new.
    c = await h.node.client([rooms.job(job.id)]);
    const streaming = emitSome(60);
    const lastSeen = Math.max(...seen);
    const fetched: JobEventRecord[] = [];
    let after: number | null = lastSeen;
    while (after !== null) {
      const page = h.events.listEvents(job.id, { after, limit: 25 });
      fetched.push(...page.items);
      after = page.nextAfter;
      await sleep(5); // pages interleave with live traffic
    }
    await streaming;
    const s3 = h.transition(job.id, 'DOWNLOADED', 'MUXING');
    await h.publish('events:state', s3);
    await c.waitFor((r) => r.some((x) => x.event === 'state_change' && x.data.to === 'MUXING'), 'phase 3 live tail');

    const lastFetched = fetched.length > 0 ? fetched.at(-1)!.id : lastSeen;
    for (const e of fetched) seen.push(e.id);
    for (const r of c.received) {
      const id = idOf(r.data);
      if (id !== undefined && id > lastFetched) seen.push(id);
    }

    const stored = h.events
      .listEvents(job.id, { after: 0, limit: 10_000 })
      .items.filter((e) => e.type !== 'created')
      .map((e) => e.id);
    expect(new Set(seen).size).toBe(seen.length); // no duplicate
    expect([...seen].sort((a, b) => a - b)).toEqual(stored); // no gap
    expect(stored.length).toBe(60 + 1 + 80 + 1 + 60 + 1);
    // Every live event the client got carried an id of a stored row.
    for (const r of c.received) expect(stored).toContain(idOf(r.data));
  });
});
