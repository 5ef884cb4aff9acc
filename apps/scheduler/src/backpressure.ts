import { statfs } from 'node:fs/promises';
import type { Redis } from 'ioredis';
import type { StageQueues } from '@dubgate/queues/stage-queues';
import type { JobsRepository } from '@dubgate/db/jobs';
import type { EventPublisher } from '@dubgate/queues/publisher';
import type { SchedulerMetrics } from './metrics.js';

/**
 * Holds downloads back while MEDIA_ROOT is short of space or the download queue is too deep.
 * Disk: the download queue is paused, so nothing waiting is released to workers; queued jobs
 * show the reason; one notification per episode; resumed in order when space returns.
 * Depth: new downloads stay in the outbox (the hold key tells the api and the drainer) and
 * are enqueued in order once the queue drains.
 */
export type FreeSpaceProbe = (dir: string) => Promise<number>;

export const statfsProbe: FreeSpaceProbe = async (dir) => {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
};

export interface BackpressureOptions {
  redis: Redis;
  /** Key the api reads before enqueueing a download: set while downloads are held. */
  holdKey: string;
  stageQueues: Pick<StageQueues, 'counts' | 'pause' | 'resume' | 'isPaused'>;
  jobs: Pick<JobsRepository, 'listJobsInStates' | 'setHoldReason'>;
  publisher: Pick<EventPublisher, 'publish'>;
  metrics: SchedulerMetrics;
  mediaRoot: string;
  minFreeBytes: number;
  maxDownloadDepth: number;
  probe?: FreeSpaceProbe;
  log: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
}

export type HoldReason = { kind: 'disk'; message: string } | { kind: 'depth'; message: string } | null;

export interface Backpressure {
  /** Checks disk and depth once and applies or lifts the hold. */
  check(): Promise<HoldReason>;
  current(): HoldReason;
}

/** Bytes for people: "1.50 GiB", "512.00 MiB", "900 B". */
function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(2)} ${units[i]}`;
}

export function createBackpressure(opts: BackpressureOptions): Backpressure {
  const probe = opts.probe ?? statfsProbe;
  let hold: HoldReason = null;

  async function evaluate(): Promise<HoldReason> {
    let free: number;
    try {
      free = await probe(opts.mediaRoot);
    } catch (err) {
      return { kind: 'disk', message: `cannot read free space under MEDIA_ROOT: ${(err as Error).message}` };
    }
    opts.metrics.freeDisk.set(free);
    if (free < opts.minFreeBytes) {
      return { kind: 'disk', message: `waiting for disk space: ${bytes(free)} free under MEDIA_ROOT, ${bytes(opts.minFreeBytes)} needed` };
    }
    const counts = await opts.stageQueues.counts();
    const d = counts.download;
    const depth = d.waiting + d.prioritized + d.paused + d.delayed;
    if (depth >= opts.maxDownloadDepth) {
      return { kind: 'depth', message: `waiting for the download queue: ${depth} downloads queued (limit ${opts.maxDownloadDepth})` };
    }
    return null;
  }

  function markQueued(reason: string | null) {
    let after: string | null = null;
    let n = 0;
    for (;;) {
      const page = opts.jobs.listJobsInStates(['QUEUED'], 500, after);
      if (page.length === 0) break;
      for (const job of page) {
        if (job.holdReason !== reason) opts.jobs.setHoldReason(job.id, reason);
        n += 1;
      }
      after = page[page.length - 1]!.id;
    }
    return n;
  }

  let resumed = false;
  async function checkOnce(): Promise<HoldReason> {
    if (!resumed) {
      resumed = true;
      // A predecessor that died or handed over while holding: continue its episode, so the
      // notification is not sent again.
      const raw = await opts.redis.get(opts.holdKey).catch(() => null);
      try {
        const previous = raw ? (JSON.parse(raw) as HoldReason) : null;
        if (previous?.kind === 'disk' || previous?.kind === 'depth') hold = previous;
      } catch {
        // Not ours to understand: the check below overwrites it.
      }
    }
    const next = await evaluate();
    const ttlSeconds = 30; // the key expires if the scheduler dies, so nothing stays held forever
    if (next) {
      await opts.redis.set(opts.holdKey, JSON.stringify(next), 'EX', ttlSeconds);
      if (next.kind === 'disk' && !(await opts.stageQueues.isPaused('download'))) await opts.stageQueues.pause('download');
      if (next.kind === 'depth' && (await opts.stageQueues.isPaused('download')) && hold?.kind === 'disk') {
        await opts.stageQueues.resume('download');
      }
      const n = markQueued(next.message);
      opts.metrics.held.reset();
      opts.metrics.held.set({ reason: next.kind }, n);
      if (hold?.kind !== next.kind) {
        opts.log.warn({ hold: next }, 'holding downloads');
        await opts.publisher
          .publish('events:notification', {
            jobId: 'system',
            type: 'notification',
            timestamp: new Date().toISOString(),
            payload: {
              type: next.kind === 'disk' ? 'disk_space_low' : 'queue_depth_high',
              title: next.kind === 'disk' ? 'Downloads on hold: disk space low' : 'Downloads on hold: queue full',
              message: next.message,
              severity: 'warning',
            },
          })
          .catch((err: unknown) => opts.log.warn({ err }, 'could not publish the hold notification'));
      }
    } else if (hold) {
      await opts.redis.del(opts.holdKey);
      if (await opts.stageQueues.isPaused('download')) await opts.stageQueues.resume('download');
      markQueued(null);
      opts.metrics.held.reset();
      opts.log.info({ previous: hold }, 'released held downloads');
      await opts.publisher
        .publish('events:notification', {
          jobId: 'system',
          type: 'notification',
          timestamp: new Date().toISOString(),
          payload: { type: 'downloads_resumed', title: 'Downloads resumed', message: 'Held downloads are being released in order', severity: 'info' },
        })
        .catch(() => undefined);
    } else if (await opts.stageQueues.isPaused('download')) {
      // A pause left behind by a scheduler that died while holding.
      await opts.stageQueues.resume('download');
    }
    hold = next;
    return next;
  }

  // One check at a time: the loop and checkBackpressureNow() overlapping would each see the
  // old state and publish the notification twice.
  let queue: Promise<unknown> = Promise.resolve();
  return {
    current: () => hold,
    check() {
      const run = queue.then(checkOnce);
      queue = run.catch(() => undefined);
      return run;
    },
  };
}
