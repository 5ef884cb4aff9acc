import { afterEach, describe, expect, it, vi } from 'vitest';
import { rooms } from '@dubgate/contracts/ws';
import { EVENT_CHANNELS, type ProgressMessage } from '@dubgate/contracts/events';
import { createProgressCoalescer } from '../src/progress-coalescer.js';
import { WAIT_MS, createHarness, progressMsg, sleep, waitFor, type Harness, usePrivateRedis } from './helpers.js';

// The relay listens on global Pub/Sub channels: other packages' tests must not reach it.
usePrivateRedis();

describe('progress coalescer (fake time)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  function setup(perSecond = 4) {
    vi.useFakeTimers();
    const sent: ProgressMessage[] = [];
    let coalesced = 0;
    const c = createProgressCoalescer({ perSecond, now: () => Date.now(), emit: (m) => sent.push(m), onCoalesced: () => coalesced++ });
    return { c, sent, coalesced: () => coalesced };
  }

  it('sends the first update at once, holds the rest of the gap, and the latest held one wins', () => {
    const { c, sent, coalesced } = setup(4); // gap 250 ms
    c.push(progressMsg('j', 1));
    expect(sent.map((m) => m.payload.percent)).toEqual([1]);
    c.push(progressMsg('j', 2));
    c.push(progressMsg('j', 3));
    c.push(progressMsg('j', 4));
    expect(sent).toHaveLength(1);
    vi.advanceTimersByTime(250);
    expect(sent.map((m) => m.payload.percent)).toEqual([1, 4]);
    expect(coalesced()).toBe(2);
    // Quiet for a whole gap: the job is forgotten, the next update goes at once.
    vi.advanceTimersByTime(600);
    expect(c.size).toBe(0);
    c.push(progressMsg('j', 5));
    expect(sent.map((m) => m.payload.percent)).toEqual([1, 4, 5]);
    c.close();
  });

  it('never sends more than perSecond updates per second per job under a steady stream', () => {
    const { c, sent } = setup(4);
    for (let t = 0; t < 5000; t += 10) {
      c.push(progressMsg('j', t / 100));
      vi.advanceTimersByTime(10);
    }
    // 5 s at 4/s: 20 updates (+1 for the first one at t=0).
    expect(sent.length).toBeLessThanOrEqual(21);
    expect(sent.length).toBeGreaterThanOrEqual(19);
    const times: number[] = [];
    // Gaps between sends are never under 250 ms: replay the stream recording send times.
    const c2 = createProgressCoalescer({ perSecond: 4, now: () => Date.now(), emit: () => times.push(Date.now()) });
    for (let t = 0; t < 2000; t += 7) {
      c2.push(progressMsg('k', 1));
      vi.advanceTimersByTime(7);
    }
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(250);
    c.close();
    c2.close();
  });

  it('sends a final update (final: true or percent 100) at once, replacing the held one', () => {
    const { c, sent, coalesced } = setup(1);
    c.push(progressMsg('j', 10));
    c.push(progressMsg('j', 50));
    c.push(progressMsg('j', 99.9, { final: true }));
    expect(sent.map((m) => m.payload.percent)).toEqual([10, 99.9]);
    expect(coalesced()).toBe(1);
    c.push(progressMsg('j', 100, { stage: 'mux' }));
    expect(sent.map((m) => m.payload.percent)).toEqual([10, 99.9, 100]);
    vi.advanceTimersByTime(5000);
    expect(sent).toHaveLength(3);
    c.close();
  });

  it('keeps jobs apart, and flushJob sends a held update now', () => {
    const { c, sent } = setup(2);
    c.push(progressMsg('a', 1));
    c.push(progressMsg('b', 1));
    c.push(progressMsg('a', 2));
    c.push(progressMsg('b', 2));
    expect(sent.map((m) => `${m.jobId}${m.payload.percent}`)).toEqual(['a1', 'b1']);
    c.flushJob('a');
    expect(sent.map((m) => `${m.jobId}${m.payload.percent}`)).toEqual(['a1', 'b1', 'a2']);
    c.flushAll();
    expect(sent.map((m) => `${m.jobId}${m.payload.percent}`)).toEqual(['a1', 'b1', 'a2', 'b2']);
    c.close();
  });
});

describe('relay: progress burst', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('coalesces a burst of 10,000 progress messages for one job and delivers the last one; the snapshot is the last one', async () => {
    h = await createHarness({ progressPerSecond: 4, flushIntervalMs: 100, snapshotIntervalMs: 1000 });
    const owner = h.createUser();
    const { job } = h.createJob(owner);
    const c = await h.node.client([rooms.job(job.id)]);

    const started = Date.now();
    const N = 10_000;
    for (let chunk = 0; chunk < N; chunk += 1000) {
      const pipeline = h.producer.pipeline();
      for (let i = chunk; i < chunk + 1000; i++) {
        const last = i === N - 1;
        const msg = progressMsg(job.id, last ? 100 : Math.floor((i * 10000) / N) / 100, {
          seq: i,
          speed: 1000 + i,
          eta: N - i,
          step: `part ${i}`,
          ...(last ? { final: true } : {}),
        });
        pipeline.publish(EVENT_CHANNELS.progress, JSON.stringify(msg));
      }
      await pipeline.exec();
      await sleep(120); // spread the burst over ~1.3 s so the rate limit shows
    }
    await c.waitFor((r) => r.some((x) => x.event === 'progress' && x.data.percent === 100), 'final progress delivered');
    const seconds = (Date.now() - started) / 1000;
    await sleep(400); // anything still held would come now
    const got = c.of('progress');
    if (process.env.TEST_LOG) console.log('burst', { delivered: got.length, seconds });

    expect(await h.metricValue('dubgate_relay_messages_total', { channel: 'events:progress' })).toBe(N);
    expect(got.length).toBeLessThan(N);
    expect(got.length).toBeLessThanOrEqual(Math.ceil(seconds * 4) + 2);
    // ...and updates did flow during the burst, not just the first and the last.
    expect(got.length).toBeGreaterThanOrEqual(3);
    const lastGot = got.at(-1);
    expect(lastGot).toMatchObject({ jobId: job.id, type: 'download', percent: 100, seq: N - 1, stage: `part ${N - 1}` });
    // The latest wins: what gets through only moves forward.
    const seqs = got.map((p) => p.seq as number);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    expect(await h.metricValue('dubgate_relay_progress_coalesced_total')).toBe(N - got.length);

    // The snapshot on the job row is the last update.
    await waitFor(() => h!.jobs.getJob(job.id)?.progress?.percent === 100, WAIT_MS, 'snapshot written');
    expect(h.jobs.getJob(job.id)!.progress).toMatchObject({ stage: 'download', percent: 100, speed: 1000 + N - 1, eta: 1, step: `part ${N - 1}` });
    // At a bounded rate: at most one write per job per second (plus the first).
    expect(h.calls.updateProgressMany).toBeLessThanOrEqual(Math.ceil(seconds) + 3);
  });

  it('writes snapshots of many jobs in one transaction per tick, at most once per job per interval', async () => {
    h = await createHarness({ flushIntervalMs: 50, snapshotIntervalMs: 500 });
    const owner = h.createUser();
    const ids = [h.createJob(owner).job.id, h.createJob(owner).job.id, h.createJob(owner).job.id];
    const started = Date.now();
    for (let round = 0; round < 12; round++) {
      const pipeline = h.producer.pipeline();
      for (const id of ids) pipeline.publish(EVENT_CHANNELS.progress, JSON.stringify(progressMsg(id, round * 5, { stage: 'dub' })));
      await pipeline.exec();
      await sleep(100);
    }
    const elapsed = Date.now() - started;
    await waitFor(() => ids.every((id) => h!.jobs.getJob(id)?.progress?.percent === 55), WAIT_MS, 'last snapshots written');
    // Each transaction carried the jobs due at that tick; no job more than once per 500 ms.
    const perJob = ids.map((id) => h!.calls.snapshotBatches.filter((b) => b.includes(id)).length);
    for (const n of perJob) expect(n).toBeLessThanOrEqual(Math.ceil((elapsed + 1000) / 500) + 1);
    expect(h.calls.updateProgressMany).toBeLessThan(36);
    expect(h.calls.snapshotBatches.some((b) => b.length === 3)).toBe(true);
    expect(h.jobs.getJob(ids[0]!)!.progress).toMatchObject({ stage: 'dub', percent: 55, speed: null, eta: null, step: null });
  });
});
