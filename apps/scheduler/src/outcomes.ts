import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Database } from '@dubgate/db/open';
import type { JobsRepository, StateChange } from '@dubgate/db/jobs';
import type { EventsRepository } from '@dubgate/db/events';
import type { StageQueues } from '@dubgate/queues/stage-queues';
import type { OutboxDelivery } from '@dubgate/queues/outbox-delivery';
import { STAGE_STATES, nextStage, transitionFor, type JobShape, type Stage, type JobEvent } from '@dubgate/contracts/states';
import { PERMANENT_ERROR_PREFIX, STAGE_RESULT_SCHEMAS, parseStageJobId, type StageResults } from '@dubgate/contracts/stages';
import { completeStage } from '@dubgate/contracts/stage-registry';
import type { Job } from '@dubgate/contracts/jobs';
import type { StageEvent } from './stage-event-reader.js';
import type { SchedulerMetrics } from './metrics.js';

/**
 * Turns BullMQ's record of what a worker did into job transitions. Everything is idempotent:
 * a duplicate, late or stale event (older generation, job canceled or deleted) changes nothing.
 */
export interface OutcomeDeps {
  db: Database;
  jobs: JobsRepository;
  events: EventsRepository;
  stageQueues: Pick<StageQueues, 'queues'>;
  delivery: OutboxDelivery;
  /** Group commit: transitions handled in the same tick share one transaction. */
  commit: <T>(write: () => T) => Promise<T>;
  metrics: SchedulerMetrics;
  log: { info(o: object, m?: string): void; warn(o: object, m?: string): void; debug(o: object, m?: string): void };
  clock?: () => number;
  /** Where starts and completions read their job (default: SQLite each time); told of every write. */
  jobCache?: JobCache;
}

/**
 * Jobs as this scheduler last read or wrote them. A stale entry is harmless: transitions are
 * compare-and-set on the state, and a refused one drops the entry.
 */
export interface JobCache {
  get(id: string): Job | null;
  remember(job: Job): void;
  forget(id: string): void;
}

/** 'superseded': a start whose completion is in the same batch, applied with it. */
export type OutcomeResult = 'applied' | 'ignored' | 'superseded';

export interface HandleOptions {
  /** The next event of this stage job in the batch is its completion, which applies the start too. */
  superseded?: boolean;
}

const resultChecks = {
  download: TypeCompiler.Compile(STAGE_RESULT_SCHEMAS.download),
  dub: TypeCompiler.Compile(STAGE_RESULT_SCHEMAS.dub),
  mux: TypeCompiler.Compile(STAGE_RESULT_SCHEMAS.mux),
};

interface BullJobView {
  data: Record<string, unknown>;
  attemptsMade: number;
  attemptsStarted: number;
  /** Attempts BullMQ allows (retries + 1). */
  attempts: number;
  /** Stack of each failed attempt, oldest first; starts with the error's name. */
  stacktrace: string[];
  failedReason: string | undefined;
  processedOn: number | undefined;
  finishedOn: number | undefined;
  remove(): Promise<void>;
}

function shapeOf(job: Job): JobShape {
  return { state: job.status, requestedDubbing: job.requestedDubbing, failedStage: job.failedStage };
}

/** The BullMQ events that can change a job; everything else in the streams is ignored. */
const HANDLED_EVENTS = new Set(['active', 'completed', 'failed', 'delayed', 'waiting', 'stalled']);

/** Milliseconds since epoch encoded in a Redis stream id. */
export function streamIdTime(id: string): number {
  return Number(id.split('-')[0]);
}

export function createOutcomeHandler(deps: OutcomeDeps) {
  const { db, jobs, events, log, metrics } = deps;
  const clock = deps.clock ?? Date.now;
  // When each running stage job started (stream time of its 'active' event), for the duration
  // metric. Bounded: a start whose outcome is never seen (job deleted) is dropped, oldest first.
  const activeSince = new Map<string, number>();
  const MAX_TRACKED_STARTS = 100_000;
  const { commit } = deps;
  const cache: JobCache = deps.jobCache ?? { get: (id) => jobs.getJob(id), remember: () => {}, forget: () => {} };

  async function bullJob(stage: Stage, id: string): Promise<BullJobView | null> {
    const job = await deps.stageQueues.queues[stage].getJob(id);
    if (!job) return null;
    return {
      data: (job.data ?? {}) as unknown as Record<string, unknown>,
      attemptsMade: job.attemptsMade ?? 0,
      attemptsStarted: (job as unknown as { attemptsStarted?: number }).attemptsStarted ?? job.attemptsMade ?? 0,
      attempts: job.opts?.attempts ?? 1,
      stacktrace: Array.isArray(job.stacktrace) ? job.stacktrace : [],
      failedReason: job.failedReason,
      processedOn: job.processedOn,
      finishedOn: job.finishedOn,
      remove: () => job.remove(),
    };
  }

  /**
   * Commits transitions in order in one transaction (with whatever goes with the last one), then
   * delivers their outbox rows. Stops at the first that does not apply: the job moved meanwhile.
   */
  async function apply(job: Job, changes: readonly StateChange[], extra?: () => void): Promise<Job | null> {
    const results = await commit(() => {
      const out = [];
      for (const [i, change] of changes.entries()) {
        if (i === changes.length - 1) extra?.();
        const r = jobs.updateJobState(job.id, change);
        out.push(r);
        if (!r.ok) break;
      }
      return out;
    });
    const applied = results.filter((r) => r.ok);
    const last = results[results.length - 1]!;
    if (last.ok) cache.remember(last.job);
    else cache.forget(job.id);
    applied.forEach((_, i) => metrics.transitions.inc({ from: changes[i]!.from, to: changes[i]!.to }));
    // Deliver now (with the rows of other transitions of this tick); if Redis fails, the rows
    // stay pending and the drainer retries them.
    const outboxItems = applied.flatMap((r) => r.outboxItems);
    if (outboxItems.length > 0) await deps.delivery.deliverSoon(outboxItems);
    if (!last.ok) {
      const change = changes[results.length - 1]!;
      log.debug({ jobId: job.id, from: change.from, to: change.to, reason: last.reason }, 'transition not applied');
      return null;
    }
    return last.job;
  }

  function transition(job: Job, event: JobEvent) {
    return transitionFor(shapeOf(job), event);
  }

  /** The transition for a worker taking the stage, or null when it changes no state. */
  function startChange(job: Job, stage: Stage, attempt: number): StateChange | null {
    const to = transition(job, { kind: 'stage_started', stage });
    return to === null ? null : { from: job.status, to, reason: `a worker took the ${stage} stage`, patch: { attempt, holdReason: null } };
  }

  /** A worker took the stage. */
  async function started(job: Job, stage: Stage, attempt: number): Promise<Job> {
    const change = startChange(job, stage, attempt);
    if (change === null) {
      // Count the attempt only for the stage that is due, never on a finished job.
      if (attempt > job.attempt && nextStage(shapeOf(job)) === stage) {
        jobs.setAttempt(job.id, attempt);
        cache.forget(job.id);
      }
      return job;
    }
    return (await apply(job, [change])) ?? job;
  }

  async function completed(job: Job, stage: Stage, e: StageEvent): Promise<OutcomeResult> {
    let raw: unknown;
    try {
      raw = JSON.parse(e.fields.returnvalue ?? 'null');
    } catch {
      raw = undefined;
    }
    // The start was not applied (its event missed, or in the same batch and skipped): it goes in
    // the same transaction, first, whatever the outcome.
    const changes: StateChange[] = [];
    if (job.status !== STAGE_STATES[stage].running) {
      const start = startChange(job, stage, Math.max(job.attempt, 1));
      if (start) {
        changes.push(start);
        job = { ...job, status: start.to, attempt: Math.max(job.attempt, 1), holdReason: null };
      }
    }
    if (!resultChecks[stage].Check(raw)) {
      const errors = [...resultChecks[stage].Errors(raw)].slice(0, 3).map((x) => `${x.path} ${x.message}`);
      return failed(job, stage, `PERMANENT: the ${stage} worker returned an invalid result (${errors.join('; ') || 'not JSON'})`, null, changes);
    }
    const to = transition(job, { kind: 'stage_completed', stage });
    if (to === null) return 'ignored';

    // The registry says which media rows the result records and which run comes next.
    const done = completeStage(stage, job, raw as StageResults[Stage], () => jobs.listMedia(job.id));
    if (!done) return failed(job, stage, 'PERMANENT: the downloaded media record is missing', null, changes);
    const recordMedia = () => {
      for (const row of done.media) jobs.upsertMedia(job.id, row.kind, row.fields);
    };
    const change: StateChange = { from: job.status, to, reason: done.summary };
    if (done.outputPath !== null) change.patch = { outputPath: done.outputPath };
    if (done.next !== null) change.outbox = [{ kind: 'enqueue', jobId: job.id, payload: done.next }];
    changes.push(change);
    const applied = await apply(job, changes, recordMedia);
    if (!applied) return 'ignored';
    if (done.next !== null) metrics.handoff.observe((clock() - streamIdTime(e.id)) / 1000);
    // From the stream's own times (the start event's id to this one's), not a read of the job.
    const startedAt = activeSince.get(e.jobId);
    activeSince.delete(e.jobId);
    if (startedAt !== undefined) metrics.stageDuration.observe({ stage }, Math.max(0, streamIdTime(e.id) - startedAt) / 1000);
    return 'applied';
  }

  /** `before`: transitions that go first in the same transaction (a start not applied yet). */
  async function failed(job: Job, stage: Stage, reason: string, bull: BullJobView | null, before: readonly StateChange[] = []): Promise<OutcomeResult> {
    const to = transition(job, { kind: 'stage_failed', stage });
    if (to === null) return 'ignored';
    // BullMQ stores only err.message as failedReason, so an UnrecoverableError shows in the
    // stack, and in a job that failed before its attempts ran out.
    const permanent =
      reason.startsWith(PERMANENT_ERROR_PREFIX) ||
      (bull !== null && (bull.stacktrace.at(-1)?.startsWith('UnrecoverableError') === true || bull.attemptsMade < bull.attempts));
    const checkpoint = stage === 'dub' ? (bull?.data.checkpoint as Record<string, unknown> | undefined) : undefined;
    const message = reason.replace(PERMANENT_ERROR_PREFIX, '').trim().slice(0, 2000) || `${stage} failed`;
    const applied = await apply(
      job,
      [...before, {
        from: job.status,
        to,
        reason: `${stage} failed: ${message}`,
        patch: {
          failedStage: stage,
          error: { code: permanent ? 'STAGE_FAILED_PERMANENTLY' : 'STAGE_FAILED', message },
          attempt: Math.max(job.attempt, bull?.attemptsMade ?? 0),
          holdReason: null,
        },
        eventPayload: { stage, permanent, attempts: bull?.attemptsMade ?? null },
      }],
      () => {
        if (checkpoint) jobs.saveCheckpoint(job.id, checkpoint);
      },
    );
    return applied ? 'applied' : 'ignored';
  }

  /** Retries of this stage run already recorded in job_events (one warn line each). */
  function retriesRecorded(jobId: string, stage: Stage, generation: number): number {
    let n = 0;
    let after: number | undefined;
    for (;;) {
      const page = events.listEvents(jobId, { level: 'warn', limit: 500, ...(after !== undefined ? { after } : {}) });
      for (const ev of page.items) {
        const p = ev.payload;
        if (ev.type === 'log' && p?.retry === true && p.stage === stage && p.generation === generation) n++;
      }
      if (page.nextAfter === null) return n;
      after = page.nextAfter;
    }
  }

  /** A failed attempt that BullMQ will retry (after its backoff, or at once). */
  async function retrying(job: Job, stage: Stage, e: StageEvent): Promise<OutcomeResult> {
    const bull = await bullJob(stage, e.jobId);
    if (!bull || bull.attemptsMade === 0) return 'ignored'; // a delayed add, not a retry
    if (nextStage(shapeOf(job)) !== stage) {
      // The job was canceled or failed meanwhile: BullMQ must not run this stage again.
      await bull.remove().catch((err: unknown) => log.warn({ err, queueJobId: e.jobId }, 'could not remove a stale stage run'));
      return 'ignored';
    }
    const reason = bull.failedReason ?? 'unknown error';
    if (reason.startsWith(PERMANENT_ERROR_PREFIX)) {
      // A worker without UnrecoverableError marked it permanent: stop BullMQ's retries.
      await bull.remove().catch((err: unknown) => log.warn({ err, queueJobId: e.jobId }, 'could not remove a permanently failed job'));
      return failed(job, stage, reason, bull);
    }
    // BullMQ's record is read now, not when the event was written: it may be ahead (this event
    // read late) or the event may be read twice (replay after a restart). Count failures that
    // were retried and record each once; a finished run's last attempt was not a retried failure.
    const retried = bull.finishedOn ? bull.attemptsMade - 1 : bull.attemptsMade;
    const recorded = retriesRecorded(job.id, stage, job.generation);
    if (recorded >= retried) return 'ignored';
    const failedAttempt = recorded + 1;
    metrics.retries.inc({ stage });
    cache.forget(job.id);
    db.transaction(() => {
      jobs.setAttempt(job.id, Math.max(job.attempt, failedAttempt + 1));
      events.insertEvent(job.id, {
        type: 'log',
        level: 'warn',
        message: `${stage} attempt ${failedAttempt} failed: ${reason.slice(0, 500)}; retrying`,
        payload: { stage, generation: job.generation, attempt: failedAttempt, retry: true, retryAt: e.event === 'delayed' && e.fields.delay ? Number(e.fields.delay) : null },
      });
    })();
    return 'applied';
  }

  /** When a stage job started (stream time of its 'active' event), for the duration metric. */
  function noteStart(e: StageEvent): void {
    activeSince.delete(e.jobId);
    activeSince.set(e.jobId, streamIdTime(e.id));
    if (activeSince.size > MAX_TRACKED_STARTS) activeSince.delete(activeSince.keys().next().value!);
  }

  return async function handle(e: StageEvent, opts: HandleOptions = {}): Promise<OutcomeResult> {
    // Most of the stream is 'added', 'waiting', 'drained'...: skip those before touching SQLite.
    if (!HANDLED_EVENTS.has(e.event)) return 'ignored';
    if (e.event === 'waiting' && e.fields.prev !== 'active') return 'ignored';
    const parsed = parseStageJobId(e.jobId);
    if (!parsed || parsed.stage !== e.stage) return 'ignored';
    if (e.event === 'active' && opts.superseded) {
      noteStart(e);
      return 'superseded';
    }
    // Starts and completions are the hot path: they may read the job the batch loaded. Failures,
    // retries and stalls read it fresh.
    const job = e.event === 'active' || e.event === 'completed' ? cache.get(parsed.jobId) : jobs.getJob(parsed.jobId);
    // Deleted, or a run from before a retry/resume: nothing to do...
    if (!job || job.generation !== parsed.generation) {
      // ...except that BullMQ must not run it again (a canceled run that failed, then retried).
      if (e.event !== 'active' && e.event !== 'completed' && e.event !== 'failed') {
        const bull = await deps.stageQueues.queues[e.stage].getJob(e.jobId);
        await bull?.remove().catch(() => undefined);
      }
      return 'ignored';
    }

    switch (e.event) {
      case 'active': {
        noteStart(e);
        const bull = await bullJob(e.stage, e.jobId);
        const before = job.status;
        // BullMQ counts the start of this attempt in attemptsStarted.
        const after = await started(job, e.stage, bull?.attemptsStarted || job.attempt + 1);
        return after.status !== before ? 'applied' : 'ignored';
      }
      case 'completed':
        return completed(job, e.stage, e);
      case 'failed': {
        activeSince.delete(e.jobId);
        const bull = await bullJob(e.stage, e.jobId);
        return failed(job, e.stage, e.fields.failedReason ?? bull?.failedReason ?? 'failed', bull);
      }
      case 'delayed':
      case 'waiting':
        return e.fields.prev === 'active' || e.event === 'delayed' ? retrying(job, e.stage, e) : 'ignored';
      case 'stalled':
        events.insertEvent(job.id, {
          type: 'log',
          level: 'warn',
          message: `the ${e.stage} worker stopped responding; the stage will run again`,
          payload: { stage: e.stage },
        });
        return 'applied';
      default:
        return 'ignored';
    }
  };
}
