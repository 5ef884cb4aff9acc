import type { Redis } from 'ioredis';
import type { Database } from '@dubgate/db/open';
import { createEventsRepository, type NewJobEvent } from '@dubgate/db/events';
import { createJobsRepository } from '@dubgate/db/jobs';
import {
  ALL_EVENT_CHANNELS,
  EVENT_CHANNELS,
  type ErrorMessage,
  type EventChannel,
  type LogMessage,
  type NotificationMessage,
  type ProgressMessage,
  type StateChannelMessage,
} from '@dubgate/contracts/events';
import type { ProgressSnapshot } from '@dubgate/contracts/jobs';
import { isTerminal } from '@dubgate/contracts/states';
import { rooms, type WsNotification, type WsProgress, type WsStateChange } from '@dubgate/contracts/ws';
import { createEventSubscriber, type EventSubscriber, type SubscriberEvent } from '@dubgate/queues/publisher';
import type { Metrics } from '@dubgate/runtime/metrics';
import { createRelayMetrics, type RelayMetrics } from './metrics.js';
import { createProgressCoalescer, type ProgressCoalescer } from './progress-coalescer.js';
import { createFanoutPublisher, type FanoutPublisher } from '@dubgate/queues/fanout';

/** What the relay writes; tests wrap these to count transactions. */
export interface RelayRepositories {
  /** One transaction; ids aligned with the input, null where the job no longer exists. */
  insertEvents(batch: readonly NewJobEvent[]): Array<number | null>;
  /** One transaction; returns rows changed. */
  updateProgressMany(batch: ReadonlyArray<{ jobId: string; progress: ProgressSnapshot }>): number;
}

export interface RelayLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface RelayDeps {
  /** Connections with one role each: 'subscriber' (Pub/Sub, events:*) and 'publisher' (the fan-out). */
  redis: { subscriber: Redis; publisher: Redis };
  db: Database;
  /** Override the writes (default: repositories on `db`). */
  repositories?: Partial<RelayRepositories>;
  metrics: Metrics;
  log: RelayLogger;
  /** Socket.IO redis-adapter key of the realtime nodes (names the fan-out channel). Default "socket.io". */
  socketIoKey?: string;
  /** Progress updates per second per job that reach clients. Default 4. */
  progressPerSecond?: number;
  /** Tick: one job_events transaction and one snapshot transaction at most per tick. Default 250. */
  flushIntervalMs?: number;
  /** At most one snapshot write per job per this many ms. Default 1000. */
  snapshotIntervalMs?: number;
  /** Most job_events rows per transaction. Default 1000. */
  maxBatch?: number;
  /** Logs/errors held unwritten before new ones are dropped. Default 50000. */
  maxPending?: number;
  /** Failed writes of one event before it is sent without an eventId. Default 3. */
  maxWriteAttempts?: number;
  /** Monotonic clock in ms (rate limits). */
  now?: () => number;
  /** Wall clock (snapshot updatedAt). */
  clock?: () => Date;
}

export interface Relay {
  /** Subscribes and starts ticking; resolves once Redis confirmed the subscriptions. */
  start(): Promise<void>;
  /**
   * Stops subscribing, writes what is pending (events, then snapshots), sends held and final
   * progress and waits until Redis took every emitted event. Does not close the connections or
   * the database (the caller owns them). Safe to call twice.
   */
  stop(): Promise<void>;
  /** Runs one tick now (tests). */
  flushNow(): void;
  /** What reaches the realtime nodes: batches of room events (see @dubgate/queues/fanout). */
  readonly emitter: FanoutPublisher;
  readonly metrics: RelayMetrics;
  /** Logs and errors not yet written. */
  readonly pendingEvents: number;
}

/** A log or error waiting for its job_events row. */
interface StoredItem {
  kind: 'stored';
  channel: EventChannel;
  row: NewJobEvent;
  /** Emits the event with the row id (or without one if it could not be written). */
  deliver: (eventId: number | undefined) => void;
  /** undefined: not written yet; null: job gone; number: the row id; 'failed': gave up writing. */
  result: number | null | 'failed' | undefined;
  attempts: number;
}
interface DirectItem {
  kind: 'direct';
  deliver: () => void;
}
type Outbound = StoredItem | DirectItem;

interface SnapshotEntry {
  /** The latest update and when it arrived; made into a ProgressSnapshot only when written. */
  latest: ProgressMessage['payload'];
  receivedAt: Date;
  dirty: boolean;
  writtenAt: number;
}

function toSnapshot(s: SnapshotEntry): ProgressSnapshot {
  const p = s.latest;
  return { stage: p.stage, percent: p.percent, speed: p.speed ?? null, eta: p.eta ?? null, step: p.step ?? null, updatedAt: s.receivedAt.toISOString() };
}

export function createRelay(deps: RelayDeps): Relay {
  const { log } = deps;
  const m = createRelayMetrics(deps.metrics);
  const now = deps.now ?? (() => performance.now());
  const clock = deps.clock ?? (() => new Date());
  const flushIntervalMs = deps.flushIntervalMs ?? 250;
  const snapshotIntervalMs = deps.snapshotIntervalMs ?? 1000;
  const maxBatch = Math.max(1, deps.maxBatch ?? 1000);
  const maxPending = Math.max(1, deps.maxPending ?? 50_000);
  const maxWriteAttempts = Math.max(1, deps.maxWriteAttempts ?? 3);

  const eventsRepo = deps.repositories?.insertEvents ? undefined : createEventsRepository(deps.db);
  const jobsRepo = deps.repositories?.updateProgressMany ? undefined : createJobsRepository(deps.db);
  const repos: RelayRepositories = {
    insertEvents: deps.repositories?.insertEvents ?? ((b) => eventsRepo!.insertEvents(b)),
    updateProgressMany: deps.repositories?.updateProgressMany ?? ((b) => jobsRepo!.updateProgressMany(b)),
  };

  const emitter = createFanoutPublisher(deps.redis.publisher, {
    ...(deps.socketIoKey !== undefined ? { key: deps.socketIoKey } : {}),
    onEmitted: (event) => m.emitted.inc({ event }),
    onError: (err, events) => {
      m.emitFailures.inc(events);
      log.warn({ err, events }, 'fan-out publish failed; those events are lost (Pub/Sub is at most once)');
    },
  });

  // --- progress: coalesced to clients, snapshot to the job row -----------------------------------

  /** True while a terminal state change sends the job's held progress ahead of itself. */
  let inline = false;
  const coalescer: ProgressCoalescer = createProgressCoalescer({
    perSecond: deps.progressPerSecond ?? 4,
    now,
    onCoalesced: () => m.coalesced.inc(),
    // Progress also waits behind a job's unwritten logs, so a stage's progress never overtakes the
    // state change that started it; the terminal flush below sends it inline instead.
    emit: (msg) => (inline ? sendProgress(msg) : enqueueDirect(msg.jobId, () => sendProgress(msg))),
  });

  function sendProgress(msg: ProgressMessage) {
    const p = msg.payload;
    const out: WsProgress = {
      jobId: msg.jobId,
      type: p.stage,
      percent: p.percent,
      speed: p.speed ?? null,
      eta: p.eta ?? null,
      stage: p.step ?? null,
      timestamp: msg.timestamp,
    };
    if (p.seq !== undefined) out.seq = p.seq;
    emitter.emit([rooms.job(msg.jobId)], 'progress', out);
  }

  const snapshots = new Map<string, SnapshotEntry>();

  function onProgress(msg: ProgressMessage) {
    const s = snapshots.get(msg.jobId);
    if (s) {
      s.latest = msg.payload;
      s.receivedAt = clock();
      s.dirty = true;
    } else {
      snapshots.set(msg.jobId, { latest: msg.payload, receivedAt: clock(), dirty: true, writtenAt: Number.NEGATIVE_INFINITY });
    }
    coalescer.push(msg);
  }

  function flushSnapshots(force: boolean) {
    const t = now();
    const batch: Array<{ jobId: string; progress: ProgressSnapshot }> = [];
    const taken: SnapshotEntry[] = [];
    for (const [jobId, s] of snapshots) {
      if (s.dirty && (force || t - s.writtenAt >= snapshotIntervalMs)) {
        batch.push({ jobId, progress: toSnapshot(s) });
        taken.push(s);
      } else if (!s.dirty && t - s.writtenAt >= snapshotIntervalMs) {
        snapshots.delete(jobId);
      }
    }
    if (batch.length === 0) return;
    const end = m.flushDuration.startTimer({ kind: 'snapshots' });
    try {
      repos.updateProgressMany(batch);
      m.batchSize.observe({ kind: 'snapshots' }, batch.length);
      for (const s of taken) {
        s.dirty = false;
        s.writtenAt = t;
      }
    } catch (err) {
      m.flushFailures.inc({ kind: 'snapshots' });
      log.error({ err, jobs: batch.length }, 'writing progress snapshots failed; retrying next tick');
    } finally {
      end();
    }
  }

  // --- per-job ordering ---------------------------------------------------------------------------
  // A job's outbound events leave in the order received. Logs and errors wait for their row id;
  // anything after them for the same job waits behind them. Jobs with nothing waiting send at once.

  const queues = new Map<string, Outbound[]>();
  let unwritten: StoredItem[] = [];

  function enqueueDirect(jobId: string, deliver: () => void) {
    const q = queues.get(jobId);
    if (q && q.length > 0) q.push({ kind: 'direct', deliver });
    else deliver();
  }

  function drain(jobId: string) {
    const q = queues.get(jobId);
    if (!q) return;
    while (q.length > 0) {
      const head = q[0]!;
      if (head.kind === 'stored' && head.result === undefined) break;
      q.shift();
      try {
        if (head.kind === 'direct') head.deliver();
        else if (typeof head.result === 'number') head.deliver(head.result);
        else if (head.result === 'failed') head.deliver(undefined);
        else m.dropped.inc({ channel: head.channel, reason: 'job_missing' });
      } catch (err) {
        log.error({ err, jobId }, 'delivering an event failed');
      }
    }
    if (q.length === 0) queues.delete(jobId);
  }

  function enqueueStored(channel: EventChannel, row: NewJobEvent, deliver: (eventId: number | undefined) => void) {
    if (unwritten.length >= maxPending) {
      m.dropped.inc({ channel, reason: 'backlog_full' });
      return;
    }
    const item: StoredItem = { kind: 'stored', channel, row, deliver, result: undefined, attempts: 0 };
    unwritten.push(item);
    let q = queues.get(row.jobId);
    if (!q) {
      q = [];
      queues.set(row.jobId, q);
    }
    q.push(item);
    m.pending.set(unwritten.length);
    if (unwritten.length >= maxBatch) scheduleSoon();
  }

  /** Writes up to maxBatch pending rows in one transaction; returns false when the write failed. */
  function writeBatch(): boolean {
    if (unwritten.length === 0) return true;
    const batch = unwritten.slice(0, maxBatch);
    const end = m.flushDuration.startTimer({ kind: 'events' });
    let ids: Array<number | null>;
    try {
      ids = repos.insertEvents(batch.map((b) => b.row));
    } catch (err) {
      end();
      m.flushFailures.inc({ kind: 'events' });
      log.error({ err, rows: batch.length }, 'writing job events failed; retrying next tick');
      const jobs = new Set<string>();
      for (const b of batch) {
        b.attempts++;
        if (b.attempts >= maxWriteAttempts) {
          b.result = 'failed';
          m.dropped.inc({ channel: b.channel, reason: 'not_stored' });
          jobs.add(b.row.jobId);
        }
      }
      if (jobs.size > 0) {
        unwritten = unwritten.filter((b) => b.result === undefined);
        m.pending.set(unwritten.length);
        for (const j of jobs) drain(j);
      }
      return false;
    }
    end();
    m.batchSize.observe({ kind: 'events' }, batch.length);
    unwritten = unwritten.slice(batch.length);
    m.pending.set(unwritten.length);
    const jobs = new Set<string>();
    batch.forEach((b, i) => {
      b.result = ids[i] ?? null;
      jobs.add(b.row.jobId);
    });
    for (const j of jobs) drain(j);
    return true;
  }

  /** The worker's timestamp for the row; our clock if it does not parse (one bad row must not fail a batch). */
  function rowTime(timestamp: string): Date {
    const d = new Date(timestamp);
    return Number.isNaN(d.getTime()) ? clock() : d;
  }

  // --- channel handlers ---------------------------------------------------------------------------

  function onLog(msg: LogMessage) {
    const p = msg.payload;
    enqueueStored(
      EVENT_CHANNELS.log,
      {
        jobId: msg.jobId,
        type: 'log',
        level: p.level,
        message: p.message,
        payload: p.stage !== undefined ? { stage: p.stage } : null,
        createdAt: rowTime(msg.timestamp),
      },
      (eventId) =>
        emitter.emit([rooms.job(msg.jobId)], 'log', {
          jobId: msg.jobId,
          level: p.level,
          message: p.message,
          timestamp: msg.timestamp,
          ...(eventId !== undefined ? { eventId } : {}),
        }),
    );
  }

  function onError(msg: ErrorMessage) {
    const p = msg.payload;
    enqueueStored(
      EVENT_CHANNELS.error,
      {
        jobId: msg.jobId,
        type: 'error',
        level: 'error',
        message: p.message,
        payload: { code: p.code, stage: p.stage ?? null, permanent: p.permanent ?? null },
        createdAt: rowTime(msg.timestamp),
      },
      (eventId) =>
        emitter.emit([rooms.job(msg.jobId)], 'error', {
          jobId: msg.jobId,
          code: p.code,
          message: p.message,
          timestamp: msg.timestamp,
          ...(eventId !== undefined ? { eventId } : {}),
        }),
    );
  }

  function onState(msg: StateChannelMessage) {
    const jobId = msg.jobId;
    switch (msg.type) {
      case 'state_change': {
        const p = msg.payload;
        const out: WsStateChange = { jobId, from: p.from, to: p.to, timestamp: msg.timestamp, eventId: p.eventId };
        if (p.reason !== undefined) out.reason = p.reason;
        enqueueDirect(jobId, () => {
          // Progress first, then the state that ends the job.
          if (isTerminal(p.to)) {
            inline = true;
            try {
              coalescer.flushJob(jobId);
            } finally {
              inline = false;
            }
          }
          // Also to the owner and admins: a job list follows every job's state without subscribing
          // to each, and a client sees the first transitions of a job it has not subscribed to yet.
          emitter.emit([rooms.job(jobId), rooms.user(p.ownerId), rooms.admins], 'state_change', out);
        });
        return;
      }
      case 'job_added': {
        const p = msg.payload;
        enqueueDirect(jobId, () =>
          emitter.emit([rooms.user(p.ownerId), rooms.admins], 'job_added', {
            jobId,
            url: p.url,
            status: p.status,
            eventId: p.eventId,
          }),
        );
        return;
      }
      case 'job_removed': {
        const p = msg.payload;
        enqueueDirect(jobId, () => {
          coalescer.forget(jobId);
          snapshots.delete(jobId);
          emitter.emit([rooms.user(p.ownerId), rooms.admins], 'job_removed', { jobId });
        });
        return;
      }
    }
  }

  function onNotification(msg: NotificationMessage) {
    const p = msg.payload;
    const targets = p.userIds === undefined ? [rooms.admins] : [...new Set(p.userIds)].map((id) => rooms.user(id));
    if (targets.length === 0) {
      m.dropped.inc({ channel: EVENT_CHANNELS.notification, reason: 'no_recipients' });
      return;
    }
    const out: WsNotification = {
      type: p.type,
      title: p.title,
      message: p.message,
      severity: p.severity,
      timestamp: msg.timestamp,
    };
    if (msg.jobId !== 'system') out.jobId = msg.jobId;
    emitter.emit(targets, 'notification', out);
  }

  function onMessage(event: SubscriberEvent<EventChannel>) {
    m.messages.inc({ channel: event.channel });
    const sent = Date.parse(event.message.timestamp);
    // Clocks of other hosts may run a little ahead: that counts as no lag.
    if (Number.isFinite(sent)) m.lag.observe({ channel: event.channel }, Math.max(0, Date.now() - sent) / 1000);
    if (stopping) return;
    switch (event.channel) {
      case 'events:progress':
        return onProgress(event.message);
      case 'events:log':
        return onLog(event.message);
      case 'events:error':
        return onError(event.message);
      case 'events:state':
        return onState(event.message);
      case 'events:notification':
        return onNotification(event.message);
    }
  }

  // --- ticking ------------------------------------------------------------------------------------

  let tickTimer: NodeJS.Timeout | undefined;
  let soon: NodeJS.Immediate | undefined;
  let started = false;
  let stopping = false;
  let subscriber: EventSubscriber | undefined;

  function tick() {
    try {
      writeBatch();
      flushSnapshots(false);
    } catch (err) {
      log.error({ err }, 'relay tick failed');
    }
  }

  /** A full batch is waiting: write it now rather than at the next tick (bounds memory in a burst). */
  function scheduleSoon() {
    if (soon || stopping || !started) return;
    soon = setImmediate(() => {
      soon = undefined;
      try {
        if (unwritten.length >= maxBatch && writeBatch() && unwritten.length >= maxBatch) scheduleSoon();
      } catch (err) {
        log.error({ err }, 'relay batch write failed');
      }
    });
  }

  let stopPromise: Promise<void> | undefined;

  return {
    emitter,
    metrics: m,
    get pendingEvents() {
      return unwritten.length;
    },
    flushNow: tick,
    async start() {
      if (started) return subscriber?.ready;
      started = true;
      subscriber = createEventSubscriber(deps.redis.subscriber, ALL_EVENT_CHANNELS, onMessage, {
        logger: log,
        onInvalid: (inv) => {
          m.messages.inc({ channel: inv.channel });
          m.refused.inc({ channel: inv.channel, reason: inv.reason });
          log.debug({ channel: inv.channel, reason: inv.reason, errors: inv.errors, excerpt: inv.excerpt.slice(0, 200) }, 'message refused');
        },
        onError: (err, ev) => {
          m.dropped.inc({ channel: ev.channel, reason: 'handler_error' });
          log.error({ err, channel: ev.channel }, 'handling a message failed');
        },
      });
      tickTimer = setInterval(tick, flushIntervalMs);
      tickTimer.unref?.();
      await subscriber.ready;
      log.info({ channels: subscriber.channels, fanout: emitter.channel, flushIntervalMs }, 'relay subscribed');
    },
    stop() {
      stopPromise ??= (async () => {
        stopping = true;
        try {
          await subscriber?.close();
        } catch (err) {
          log.warn({ err }, 'unsubscribing failed');
        }
        if (tickTimer) clearInterval(tickTimer);
        if (soon) clearImmediate(soon);
        soon = undefined;
        // Everything pending: rows (a failing database gives up after maxWriteAttempts per row).
        let guard = 0;
        while (unwritten.length > 0 && guard++ < 10_000) writeBatch();
        for (const jobId of [...queues.keys()]) drain(jobId);
        coalescer.flushAll();
        coalescer.close();
        try {
          flushSnapshots(true);
        } catch (err) {
          log.error({ err }, 'final snapshot write failed');
        }
        await emitter.flushed(2_000);
        log.info({ unwritten: unwritten.length }, 'relay stopped');
      })();
      return stopPromise;
    },
  };
}
