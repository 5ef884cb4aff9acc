import type { Redis } from 'ioredis';
import type { Database } from '@dubgate/db/open';
import { createJobsRepository } from '@dubgate/db/jobs';
import { createEventsRepository } from '@dubgate/db/events';
import { createOutboxRepository, groupCommittedOutbox, type OutboxRecord } from '@dubgate/db/outbox';
import { createAuthRepository } from '@dubgate/db/auth';
import { mergeSearchIndex, optimizeDatabase } from '@dubgate/db/maintenance';
import { createGroupCommit } from '@dubgate/db/group-commit';
import { createStageQueues, type StageQueues } from '@dubgate/queues/stage-queues';
import { createEventPublisher } from '@dubgate/queues/publisher';
import { createOutboxDelivery, type OutboxItem } from '@dubgate/queues/outbox-delivery';
import { gatewayKeys } from '@dubgate/queues/names';
import { groupCommitMetrics, type Metrics } from '@dubgate/runtime/metrics';
import { STAGES, nextStage, type Stage } from '@dubgate/contracts/states';
import { parseStageJobId } from '@dubgate/contracts/stages';
import { createLeaderLock, type LeaderLock } from './leader-lock.js';
import { createStageEventReader, type StageEvent, type StageEventReader } from './stage-event-reader.js';
import { createOutcomeHandler } from './outcomes.js';
import { createBatchJobCache } from './batch-job-cache.js';
import { createBackpressure, type FreeSpaceProbe } from './backpressure.js';
import { createReconciler } from './reconciler.js';
import { createSchedulerMetrics } from './metrics.js';

export interface SchedulerOptions {
  db: Database;
  /** Connections with distinct roles: commands, the blocking stream read, and the lock. */
  redis: { commands: Redis; blocking: Redis };
  metrics: Metrics;
  mediaRoot: string;
  minFreeBytes: number;
  maxDownloadDepth: number;
  retries: Record<Stage, number>;
  backoffDelayMs?: number;
  queuePrefix?: string;
  gatewayKeyPrefix?: string;
  lockTtlMs?: number;
  reconcileIntervalMs?: number;
  backpressureIntervalMs?: number;
  drainIntervalMs?: number;
  /** Search-index merge and purge of expired sessions. Default 5 minutes. */
  maintenanceIntervalMs?: number;
  /** Outbox rows younger than this are left to the process that wrote them (default 5000). */
  outboxGraceMs?: number;
  /** Jobs changed more recently than this are left alone by the reconciler (default 10000). */
  reconcileGraceMs?: number;
  /** How long one read of the event streams blocks; bounds how long stop() waits (default 1000). */
  eventBlockMs?: number;
  /** Parallel jobs while handling a batch of events (events of one job stay in order). */
  concurrency?: number;
  freeSpaceProbe?: FreeSpaceProbe;
  log: { info(o: object, m?: string): void; warn(o: object, m?: string): void; error(o: object, m?: string): void; debug(o: object, m?: string): void };
}

export interface Scheduler {
  start(): void;
  /** Stops acting: finishes the batch in hand, releases the lock, closes its queues. */
  stop(): Promise<void>;
  isLeader(): boolean;
  /** For tests and health: run one pass of each loop now. */
  reconcileNow(): Promise<unknown>;
  checkBackpressureNow(): Promise<unknown>;
  /**
   * For tests and health: resolves once every stage event already in the streams when called
   * has been handled by this leader — transitions committed, metrics counted, outbox rows
   * delivered (or left to the drainer) and the cursor moved past it. Rejects when not leading.
   */
  settled(): Promise<void>;
  stageQueues: StageQueues;
}

export function createScheduler(opts: SchedulerOptions): Scheduler {
  const { db, log } = opts;
  const keys = gatewayKeys(opts.gatewayKeyPrefix);
  const queuePrefix = opts.queuePrefix ?? 'q';
  const metrics = createSchedulerMetrics(opts.metrics);
  const jobs = createJobsRepository(db);
  const events = createEventsRepository(db);
  const outbox = createOutboxRepository(db);
  const stageQueues = createStageQueues({
    connection: opts.redis.commands,
    prefix: queuePrefix,
    retries: opts.retries,
    ...(opts.backoffDelayMs !== undefined ? { backoffDelayMs: opts.backoffDelayMs } : {}),
    logger: log,
  });
  const publisher = createEventPublisher(opts.redis.commands);
  const groupCommit = createGroupCommit(db, { onCommit: groupCommitMetrics(opts.metrics) });
  const delivery = createOutboxDelivery({
    store: groupCommittedOutbox(outbox, groupCommit),
    stageQueues,
    publisher,
    pipeline: () => opts.redis.commands.pipeline(),
    logger: log,
    ownership: { redis: opts.redis.commands, ownerKey: keys.jobOwnerKey },
  });
  const jobCache = createBatchJobCache(jobs);
  const handle = createOutcomeHandler({ db, jobs, events, stageQueues, delivery, commit: (write) => groupCommit.run(write), metrics, log, jobCache });
  const backpressure = createBackpressure({
    redis: opts.redis.commands,
    holdKey: keys.downloadsHeldKey,
    stageQueues,
    jobs,
    publisher,
    metrics,
    mediaRoot: opts.mediaRoot,
    minFreeBytes: opts.minFreeBytes,
    maxDownloadDepth: opts.maxDownloadDepth,
    ...(opts.freeSpaceProbe ? { probe: opts.freeSpaceProbe } : {}),
    log,
  });
  const downloadsHeld = () => backpressure.current() !== null;
  const reconciler = createReconciler({
    db,
    jobs,
    outbox,
    stageQueues,
    delivery,
    handle,
    downloadsHeld,
    metrics,
    log,
    ...(opts.reconcileGraceMs !== undefined ? { graceMs: opts.reconcileGraceMs } : {}),
  });
  // Jobs handled at once. Their transitions share group commits and delivery pipelines, so more
  // lanes mean bigger batches: 128 drained ~30% faster than 32 in bench/run.mjs (drain).
  const concurrency = opts.concurrency ?? 128;

  let acting = false;
  let loops: Promise<void>[] = [];
  // Where the event loop has handled each stream up to, and who waits for it to move (settled()).
  const handledUpTo = {} as Record<Stage, string>;
  let progressed: Array<() => void> = [];
  function noteProgress() {
    const waiting = progressed;
    progressed = [];
    waiting.forEach((wake) => wake());
  }

  /** Handles a batch: events of one job in order, different jobs in parallel. */
  async function handleBatch(batch: StageEvent[]) {
    // Three streams merged: order by time so a job's download events precede its dub events.
    const ordered = [...batch].sort((a, b) => compareStreamIds(a.id, b.id));
    const byJob = new Map<string, StageEvent[]>();
    for (const e of ordered) {
      const key = parseStageJobId(e.jobId)?.jobId ?? e.jobId;
      const list = byJob.get(key);
      if (list) list.push(e);
      else byJob.set(key, [e]);
    }
    const groups = [...byJob.values()];
    // The jobs that starts and completions will read (most entries are 'added', 'waiting'...).
    jobCache.load([...byJob].filter(([, list]) => list.some((e) => e.event === 'active' || e.event === 'completed')).map(([id]) => id));
    let next = 0;
    async function lane() {
      // A scheduler that lost the lock stops at once; its successor reads these events again.
      while (next < groups.length && acting) {
        const group = groups[next++]!;
        for (const [i, e] of group.entries()) {
          try {
            const outcome = await handle(e, { superseded: e.event === 'active' && completesNext(group, i) });
            metrics.events.inc({ event: e.event || 'unknown', outcome });
          } catch (err) {
            // One bad event must not stop the stream; the reconciler repairs what this missed.
            metrics.events.inc({ event: e.event || 'unknown', outcome: 'error' });
            log.error({ err, event: e }, 'handling a stage event failed');
          }
        }
      }
    }
    try {
      await Promise.all(Array.from({ length: Math.min(concurrency, groups.length) }, lane));
    } finally {
      jobCache.clear();
    }
  }

  async function eventLoop() {
    let reader: StageEventReader | null = null;
    while (acting) {
      try {
        // Created here, not before the loop: reading the cursors can fail too, and must be retried.
        if (!reader) {
          reader = await createStageEventReader({
            redis: opts.redis.blocking,
            cursorRedis: opts.redis.commands,
            queuePrefix,
            cursorKey: keys.schedulerCursorKey,
            ...(opts.eventBlockMs !== undefined ? { blockMs: opts.eventBlockMs } : {}),
          });
          Object.assign(handledUpTo, reader.cursors());
          noteProgress();
        }
        const batch = await reader.read();
        if (batch.length === 0 || !acting) continue;
        await handleBatch(batch);
        // A batch cut short by a lost lock is not committed: the successor reads it again.
        if (!acting) break;
        await reader.commit(batch);
        Object.assign(handledUpTo, reader.cursors());
        noteProgress();
      } catch (err) {
        if (!acting) break;
        log.warn({ err }, 'reading stage events failed; retrying');
        await sleep(1_000, () => !acting);
      }
    }
  }

  /** Runs `fn` every `ms` while acting, never two at once. */
  async function every(ms: number, name: string, fn: () => Promise<unknown>) {
    while (acting) {
      try {
        await fn();
      } catch (err) {
        log.warn({ err, loop: name }, `${name} failed; will try again`);
      }
      await sleep(ms, () => !acting);
    }
  }

  /** False when an enqueue row no longer matches its job: canceled, deleted, retried, moved on. */
  function stillWanted(row: OutboxRecord): boolean {
    if (row.kind !== 'enqueue') return true;
    const job = row.jobId ? jobs.getJob(row.jobId) : null;
    if (!job) return false;
    return job.generation === row.payload.payload.generation && nextStage({ state: job.status, requestedDubbing: job.requestedDubbing }) === row.payload.stage;
  }

  function drainOutbox() {
    return async () => {
      const pending = outbox.pendingCount();
      metrics.outboxPending.set(pending);
      const held = downloadsHeld();
      // While downloads are held their enqueue rows wait here, in order; look past them so
      // they do not starve the rows behind them.
      const window = held ? Math.min(Math.max(pending, 500), 50_000) : 500;
      const rows = outbox
        .listDue(window, new Date(Date.now() - (opts.outboxGraceMs ?? 5_000)))
        .filter((row) => !(held && row.kind === 'enqueue' && row.payload.stage === 'download'))
        .slice(0, 500);
      // A row that waited (a hold, Redis down) may have been overtaken by a cancel or a retry:
      // enqueueing it then would run a stage nobody wants any more.
      const stale = rows.filter((row) => !stillWanted(row));
      if (stale.length > 0) {
        outbox.removeDelivered(stale.map((r) => r.id));
        log.info({ outboxIds: stale.map((r) => r.id) }, 'skipped outbox rows of jobs that moved on');
      }
      const due = rows.filter((row) => !stale.includes(row));
      if (due.length > 0) await delivery.deliver(due as OutboxItem[]);
    };
  }

  const auth = createAuthRepository(db);
  /** Housekeeping that keeps a long-running install fast: the leader does it, a little at a time. */
  function maintenance() {
    let merges = 0;
    // Incremental FTS merge: every insert and state change adds a small segment to the search index.
    while (merges < 20 && mergeSearchIndex(db, 200)) merges++;
    const sessions = auth.purgeExpiredSessions();
    optimizeDatabase(db);
    if (merges || sessions) log.info({ merges, sessionsPurged: sessions }, 'maintenance pass');
  }

  const lock: LeaderLock = createLeaderLock({
    redis: opts.redis.commands,
    key: keys.schedulerLockKey,
    ttlMs: opts.lockTtlMs ?? 5_000,
    logger: log,
    onAcquired: () => {
      acting = true;
      metrics.leader.set(1);
      // Know whether downloads are held before the drainer or the reconciler releases any.
      const firstCheck = backpressure.check().catch((err: unknown) => log.warn({ err }, 'first backpressure check failed'));
      loops = [
        eventLoop(),
        firstCheck.then(() => every(opts.drainIntervalMs ?? 1_000, 'outbox drain', drainOutbox())),
        firstCheck.then(() => every(opts.backpressureIntervalMs ?? 2_000, 'backpressure', () => backpressure.check())),
        firstCheck.then(() =>
          every(opts.reconcileIntervalMs ?? 30_000, 'reconciler', async () => {
            const report = await reconciler.run();
            if (Object.keys(report.repairs).length > 0) log.info({ report }, 'reconciliation pass');
          }),
        ),
        every(opts.maintenanceIntervalMs ?? 5 * 60_000, 'maintenance', async () => maintenance()),
      ];
    },
    onLost: async () => {
      acting = false;
      metrics.leader.set(0);
      noteProgress(); // settled() waiters learn that nothing more will be handled
      await Promise.allSettled(loops);
      loops = [];
    },
  });

  return {
    stageQueues,
    isLeader: () => lock.isLeader(),
    start: () => lock.start(),
    async stop() {
      await lock.stop();
      acting = false;
      noteProgress();
      await Promise.allSettled(loops);
      groupCommit.flush();
      await stageQueues.close().catch((err: unknown) => log.warn({ err }, 'closing queues failed'));
    },
    reconcileNow: () => reconciler.run(),
    checkBackpressureNow: () => backpressure.check(),
    async settled() {
      // The newest entry of each stream now: everything up to it must be handled.
      const target = {} as Partial<Record<Stage, string>>;
      for (const stage of STAGES) {
        const [last] = await opts.redis.commands.xrevrange(`${queuePrefix}:${stage}:events`, '+', '-', 'COUNT', 1);
        if (last) target[stage] = last[0];
      }
      const caughtUp = () => STAGES.every((st) => target[st] === undefined || (handledUpTo[st] !== undefined && compareStreamIds(handledUpTo[st], target[st]) >= 0));
      while (!caughtUp()) {
        if (!acting) throw new Error(`not leading: stage events up to ${JSON.stringify(target)} are not being handled`);
        await new Promise<void>((wake) => progressed.push(wake));
      }
    },
  };
}

function sleep(ms: number, cancelled?: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const started = Date.now();
    const tick = () => {
      if (cancelled?.() || Date.now() - started >= ms) return resolve();
      setTimeout(tick, Math.min(100, ms));
    };
    setTimeout(tick, Math.min(100, ms));
  });
}

/**
 * True when the next event of the same stage job after position i is its completion: a start
 * and a finish read in one batch become one transaction (the completion applies the start).
 */
function completesNext(group: readonly StageEvent[], i: number): boolean {
  const e = group[i]!;
  for (let k = i + 1; k < group.length; k++) {
    const later = group[k]!;
    if (later.stage === e.stage && later.jobId === e.jobId) return later.event === 'completed';
  }
  return false;
}

function compareStreamIds(a: string, b: string): number {
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return am - bm || as - bs;
}
