// Disk backpressure (injected probe, and a real tmpfs when running as root) and queue depth:
// downloads wait in QUEUED with a visible reason, one notification, released in order.
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Job as BullJob } from 'bullmq';
import type { DownloadPayload } from '@dubgate/contracts/stages';
import { createHarness, results, sleep, usePrivateRedis, WAIT_MS, waitFor, type Harness } from './helpers.js';

// These tests count every message on events:notification, a channel other suites publish on.
usePrivateRedis();

let h: Harness;
afterEach(async () => {
  await h?.close();
});

/** A download worker (one at a time) that records the order it sees jobs in. */
function orderedDownloads(harness: Harness) {
  const order: string[] = [];
  harness.worker(
    'download',
    async (job: BullJob) => {
      order.push((job.data as DownloadPayload).jobId);
      return results.download(job.data as DownloadPayload);
    },
    { concurrency: 1 },
  );
  return order;
}

describe('disk backpressure', () => {
  it('holds downloads while free space is below the threshold, notifies once, and releases them in order', async () => {
    h = await createHarness('disk');
    const notes = await h.subscribe('events:notification');
    let free = 50 * 2 ** 30;
    const s = h.scheduler({ minFreeBytes: 2 ** 30, freeSpaceProbe: async () => free });
    s.scheduler.start();
    await waitFor(() => s.scheduler.isLeader(), WAIT_MS, 'leadership');

    // Two jobs reach the download queue before the disk fills up; no download worker yet.
    const early = [await h.createJob(), await h.createJob()];
    await Promise.all(early.map((j) => h.delivered(j.id)));
    free = 100 * 2 ** 20;
    await waitFor(async () => (await h.redis.exists(h.keys.downloadsHeldKey)) === 1, WAIT_MS, 'hold key');
    // The key is written before the queue is paused: checks run one at a time, so one asked for
    // now returns after the one that wrote it has paused the queue too.
    await s.scheduler.checkBackpressureNow();
    await sleep(600); // real time must pass: the api caches the hold key for 500 ms
    // Three more while held: their download enqueue stays in the outbox.
    const late = [await h.createJob(), await h.createJob({ requestedDubbing: true }), await h.createJob()];
    const all = [...early, ...late];
    const order = orderedDownloads(h);
    h.worker('dub');
    h.worker('mux');

    await waitFor(() => all.every((j) => h.job(j.id).holdReason !== null), WAIT_MS, 'hold reasons');
    await sleep(500); // a negative (no download runs while held): no event to wait for
    expect(order).toEqual([]);
    for (const j of all) {
      const job = h.job(j.id);
      expect(job.status).toBe('QUEUED');
      expect(job.holdReason).toMatch(/disk space/);
    }
    expect(late.every((j) => h.job(j.id).holdReason)).toBe(true);
    expect(await s.scheduler.stageQueues.isPaused('download')).toBe(true);
    const held = JSON.parse((await h.redis.get(`${h.gwPrefix}:downloads-held`))!) as { kind: string; message: string };
    expect(held.kind).toBe('disk');
    const pendingDownloads = h.db.prepare("SELECT count(*) FROM outbox WHERE json_extract(payload, '$.stage') = 'download'").pluck().get();
    expect(pendingDownloads).toBe(3);
    // Many checks during the hold, exactly one notification (all published ones have arrived).
    await s.scheduler.checkBackpressureNow();
    await s.scheduler.checkBackpressureNow();
    await notes.sync();
    expect(notes.messages).toHaveLength(1);
    expect(notes.messages[0]).toMatchObject({ jobId: 'system', type: 'notification', payload: { type: 'disk_space_low', severity: 'warning' } });
    expect((await s.metrics.render()).body).toMatch(/dubgate_jobs_held\{[^}]*reason="disk"[^}]*\} 5/);

    // Space returns: released, first in first out, reasons cleared.
    free = 50 * 2 ** 30;
    for (const j of all) await h.waitForState(j.id, 'COMPLETE');
    expect(order).toEqual(all.map((j) => j.id));
    expect(all.every((j) => h.job(j.id).holdReason === null)).toBe(true);
    expect(await h.redis.exists(h.keys.downloadsHeldKey)).toBe(0);
    expect(await s.scheduler.stageQueues.isPaused('download')).toBe(false);
    await notes.sync();
    expect(notes.messages.filter((m) => m.payload.type === 'disk_space_low')).toHaveLength(1);
    expect(notes.messages.at(-1)!.payload.type).toBe('downloads_resumed');
  });

  it('checks that overlap (the loop and checkBackpressureNow) still notify once', async () => {
    h = await createHarness('disk-overlap');
    const notes = await h.subscribe('events:notification');
    let probes = 0;
    const s = h.scheduler({
      minFreeBytes: 1_000,
      freeSpaceProbe: async () => {
        probes++;
        await sleep(20);
        return 10;
      },
    });
    await Promise.all([s.scheduler.checkBackpressureNow(), s.scheduler.checkBackpressureNow(), s.scheduler.checkBackpressureNow()]);
    await notes.sync(); // what the checks published has arrived
    expect(probes).toBeGreaterThan(0);
    expect(notes.messages).toHaveLength(1);
  });

  it('a successor continues the hold without a second notification; the reasons clear when space returns', async () => {
    h = await createHarness('disk-clear');
    const notes = await h.subscribe('events:notification');
    let free = 0;
    const first = h.scheduler({ minFreeBytes: 1_000, freeSpaceProbe: async () => free });
    first.scheduler.start();
    await waitFor(async () => (await h.redis.exists(h.keys.downloadsHeldKey)) === 1, WAIT_MS, 'hold key');
    await sleep(600); // real time must pass: the api caches the hold key for 500 ms
    const job = await h.createJob();
    expect(job.holdReason).toMatch(/disk space/); // the api shows the reason at once
    await first.stop();
    const s = h.scheduler({ minFreeBytes: 1_000, freeSpaceProbe: async () => free });
    s.scheduler.start();
    await waitFor(() => s.scheduler.isLeader(), WAIT_MS, 'successor leads');
    // A check queued now runs after the successor's first one (checks run one at a time); then
    // everything either published has arrived.
    await s.scheduler.checkBackpressureNow();
    await notes.sync();
    expect(notes.messages).toHaveLength(1);
    expect(h.job(job.id).holdReason).toMatch(/disk space: 0 B free under MEDIA_ROOT, 1000 B needed/);
    free = 10_000;
    await waitFor(() => h.job(job.id).holdReason === null, WAIT_MS, 'reason cleared');
    expect(h.job(job.id).status).toBe('QUEUED');
  });

  it('a held job canceled meanwhile is not downloaded on release; other rows are not starved by many held ones', async () => {
    h = await createHarness('disk-cancel');
    const state = await h.subscribe('events:state');
    let free = 0;
    const s = h.scheduler({ minFreeBytes: 1_000, freeSpaceProbe: async () => free });
    s.scheduler.start();
    await waitFor(async () => (await h.redis.exists(h.keys.downloadsHeldKey)) === 1, WAIT_MS, 'hold key');
    await sleep(600); // real time must pass: the api caches the hold key for 500 ms
    const canceled = await h.createJob();
    const kept = await h.createJob();
    expect((await h.control(canceled.id, 'cancel')).statusCode).toBe(200);

    // More than a drain page of held downloads (written as the api would, undelivered)...
    const ownerId = canceled.ownerId;
    const many = h.db.transaction(() =>
      Array.from({ length: 520 }, (_, i) => {
        const r = h.jobs.insertJob({ ownerId, url: `https://videos.example.com/watch/bulk-${i}`, requestedDubbing: false, targetLang: null, formatPreset: 'best', outputContainer: 'mp4' });
        if (!r.ok || !r.created) throw new Error('insert failed');
        // The api delivered its publish row; the download waits.
        h.outbox.removeDelivered(r.outboxIds.slice(1));
        return r.job.id;
      }),
    )();
    // ...and behind them a row whose delivery failed: it must still go out during the hold.
    const [late] = h.outbox.add([
      { kind: 'publish', jobId: kept.id, payload: { channel: 'events:state', message: { jobId: kept.id, type: 'job_removed', timestamp: new Date().toISOString(), payload: { ownerId } } } },
    ]);
    await waitFor(() => state.messages.some((m) => m.jobId === kept.id && m.type === 'job_removed'), WAIT_MS, 'the row behind the held ones');
    expect(h.outbox.get(late!)).toBeNull(); // delivered rows are deleted
    expect(many).toHaveLength(520);

    const seen: string[] = [];
    h.worker('download', async (job: BullJob) => {
      seen.push((job.data as DownloadPayload).jobId);
      return results.download(job.data as DownloadPayload);
    }, { concurrency: 20 });
    h.worker('mux');
    free = 10_000;
    await h.waitForState(kept.id, 'COMPLETE');
    // Wait for the drainer to deal with the canceled job's held row: skipped, it is deleted;
    // delivered (the bug), its stage job would be in BullMQ, which is asserted below.
    await h.delivered(canceled.id);
    expect(seen).not.toContain(canceled.id);
    expect(h.job(canceled.id).status).toBe('CANCELED');
    expect(await s.scheduler.stageQueues.queues.download.getJob(`${canceled.id}_download_g0`)).toBeUndefined();
  });

  it('on a real, small filesystem (tmpfs) when running as root', async (ctx) => {
    if (process.getuid?.() !== 0) return ctx.skip('needs root to mount a tmpfs');
    h = await createHarness('tmpfs');
    mkdirSync(h.mediaRoot, { recursive: true });
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', h.mediaRoot], { stdio: 'pipe' });
    } catch (err) {
      return ctx.skip(`mount -t tmpfs failed: ${(err as Error).message.split('\n')[0]}`);
    }
    try {
      const filler = join(h.mediaRoot, 'filler.bin');
      writeFileSync(filler, Buffer.alloc(3 * 2 ** 20)); // 1 MiB left
      // The real statfs probe: at least 2 MiB must be free.
      const s = h.scheduler({ minFreeBytes: 2 * 2 ** 20 });
      s.scheduler.start();
      await waitFor(async () => (await h.redis.exists(h.keys.downloadsHeldKey)) === 1, WAIT_MS, 'hold key');
      // The key is written before the queue is paused: a check queued now returns after the one
      // that wrote it is complete.
      await s.scheduler.checkBackpressureNow();
      await sleep(600); // real time must pass: the api caches the hold key for 500 ms
      const order = orderedDownloads(h);
      h.worker('mux');
      const jobs = [await h.createJob(), await h.createJob()];
      await sleep(400); // a negative (no download runs while held): no event to wait for
      expect(order).toEqual([]);
      for (const j of jobs) expect(h.job(j.id)).toMatchObject({ status: 'QUEUED', holdReason: expect.stringMatching(/disk space/) });
      expect(await s.scheduler.stageQueues.isPaused('download')).toBe(true);
      expect((await s.metrics.render()).body).toMatch(/dubgate_media_root_free_bytes\{[^}]*\} 1\d{6}\b/);

      rmSync(filler);
      for (const j of jobs) await h.waitForState(j.id, 'COMPLETE');
      expect(order).toEqual(jobs.map((j) => j.id));
    } finally {
      // Always unmount (lazily if something still holds it), before the harness removes the dir.
      try {
        execFileSync('umount', [h.mediaRoot], { stdio: 'pipe' });
      } catch {
        execFileSync('umount', ['-l', h.mediaRoot], { stdio: 'pipe' });
      }
    }
  });
});

describe('queue depth backpressure', () => {
  it('past the configured depth, new downloads wait in the outbox and are released in order', async () => {
    h = await createHarness('depth');
    const notes = await h.subscribe('events:notification');
    const s = h.scheduler({ maxDownloadDepth: 3 });
    s.scheduler.start();
    await waitFor(() => s.scheduler.isLeader(), WAIT_MS, 'leadership');
    const first = [await h.createJob(), await h.createJob(), await h.createJob()];
    await waitFor(async () => (await h.redis.exists(h.keys.downloadsHeldKey)) === 1, WAIT_MS, 'hold key');
    await sleep(600); // real time must pass: the api caches the hold key for 500 ms
    const more = [await h.createJob(), await h.createJob()];
    const all = [...first, ...more];
    await waitFor(() => all.every((j) => h.job(j.id).holdReason !== null), WAIT_MS, 'hold reasons');
    await sleep(300); // a negative (held rows stay in the outbox): no event to wait for
    // The notification was published by the check that wrote the key: make sure it has arrived.
    await s.scheduler.checkBackpressureNow();
    await notes.sync();

    const counts = await s.scheduler.stageQueues.counts();
    expect(counts.download.waiting).toBe(3);
    expect(await s.scheduler.stageQueues.isPaused('download')).toBe(false);
    for (const j of more) expect(h.job(j.id)).toMatchObject({ status: 'QUEUED', holdReason: expect.stringMatching(/download queue/) });
    const pending = h.db.prepare("SELECT job_id FROM outbox WHERE json_extract(payload, '$.stage') = 'download' ORDER BY id").pluck().all();
    expect(pending).toEqual(more.map((j) => j.id));
    expect(notes.messages.map((m) => `${m.payload.type}: ${m.payload.message}`)).toEqual([expect.stringMatching(/^queue_depth_high/)]);

    // Workers drain the queue; the held downloads follow, in order.
    const order = orderedDownloads(h);
    h.worker('mux');
    for (const j of all) await h.waitForState(j.id, 'COMPLETE');
    expect(order).toEqual(all.map((j) => j.id));
    expect(await h.redis.exists(h.keys.downloadsHeldKey)).toBe(0);
    // The last transition's publish is marked delivered just after its commit.
    await expect.poll(() => h.db.prepare('SELECT count(*) FROM outbox').pluck().get(), { timeout: WAIT_MS }).toBe(0);
  });
});
