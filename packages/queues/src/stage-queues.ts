import { Queue, type Job, type JobsOptions, type KeepJobs } from 'bullmq';
import type { Redis } from 'ioredis';
import type { StagePayloads, StageResults } from '@dubgate/contracts/stages';
import type { Stage } from '@dubgate/contracts/states';
import { QUEUE_PREFIX, STAGES, STAGE_QUEUES, stageJobId } from './names.js';
import { assertStagePayload } from './validation.js';
import { consoleLogger, type Logger } from './connections.js';

export type StageQueue<S extends Stage> = Queue<StagePayloads[S], StageResults[S], S>;
export type StageQueueMap = { [S in Stage]: StageQueue<S> };

/** The BullMQ job states counted for metrics and backpressure. */
export const COUNTED_STATES = [
  'waiting',
  'active',
  'delayed',
  'prioritized',
  'waiting-children',
  'paused',
  'completed',
  'failed',
] as const;
export type CountedState = (typeof COUNTED_STATES)[number];
export type StageCounts = Record<CountedState, number>;

/** Approximate length BullMQ trims each queue's event stream to (its default is 10,000). */
export const EVENT_STREAM_MAX_LEN = 100_000;

export interface KeepPolicy {
  /** Completed jobs: the scheduler reads results promptly; a day also keeps re-adds of a finished id deduplicated. */
  completed: KeepJobs;
  /** Failed jobs stay longer: the scheduler's reconciliation and operators read their failedReason. */
  failed: KeepJobs;
}

// BullMQ evicts on a best-effort basis whenever another job finishes, so these also bound growth.
export const DEFAULT_KEEP: KeepPolicy = {
  completed: { age: 24 * 3600, count: 1_000 },
  failed: { age: 7 * 24 * 3600, count: 5_000 },
};

export interface StageQueuesOptions {
  /** Shared ioredis connection, normally role 'producer'. Not closed by close(): the caller owns it. */
  connection: Redis;
  /** BullMQ key prefix; default 'q' (keys `q:download:*`). Tests use their own. */
  prefix?: string;
  /** Retries per stage after the first attempt: BullMQ attempts = retries + 1. */
  retries: Record<Stage, number>;
  /** Base delay of the exponential backoff between attempts (ms). Default 5000. */
  backoffDelayMs?: number;
  keep?: Partial<KeepPolicy>;
  logger?: Logger;
}

export interface EnqueueOptions {
  /** Hold the job this long before a worker may take it (ms). */
  delay?: number;
  /** BullMQ priority (1 is highest). Leave unset on download to keep it strictly FIFO. */
  priority?: number;
}

export interface EnqueueResult {
  stage: Stage;
  /** The BullMQ job id (stageJobId for `enqueue`). */
  queueJobId: string;
}

export interface StageJobInfo {
  stage: Stage;
  generation: number;
  queueJobId: string;
  state: string;
  attemptsMade: number;
  failedReason: string | undefined;
  job: Job;
}

export interface RemoveStageJobsResult {
  /** Ids removed (waiting, delayed, prioritized, failed, completed…). */
  removed: string[];
  /** Ids left in place because a worker holds them: cancel those through control:cancel. */
  active: string[];
}

export interface StageQueues {
  queues: StageQueueMap;
  prefix: string;
  /** The BullMQ options every stage job gets (attempts, backoff, removeOn*). */
  jobOptions(stage: Stage): JobsOptions;
  enqueue<S extends Stage>(stage: S, payload: StagePayloads[S], opts?: EnqueueOptions): Promise<EnqueueResult>;
  enqueueRaw(stage: Stage, queueJobId: string, payload: unknown): Promise<EnqueueResult>;
  /**
   * Adds many jobs to one stage in a single pipeline (one write, one round trip). Rejects if any
   * add failed; the others may have been added, and adding them again adds nothing (fixed ids).
   */
  enqueueMany(stage: Stage, entries: ReadonlyArray<{ queueJobId: string; payload: unknown; delayMs?: number }>): Promise<EnqueueResult[]>;
  findStageJobs(jobId: string, maxGeneration: number): Promise<StageJobInfo[]>;
  removeStageJobs(jobId: string, maxGeneration: number): Promise<RemoveStageJobsResult>;
  counts(): Promise<Record<Stage, StageCounts>>;
  pause(stage: Stage): Promise<void>;
  resume(stage: Stage): Promise<void>;
  isPaused(stage: Stage): Promise<boolean>;
  close(): Promise<void>;
}

/** Queues `download`, `dub`, `mux` on one shared connection, with idempotent, validated enqueueing. */
export function createStageQueues(options: StageQueuesOptions): StageQueues {
  const { connection, prefix = QUEUE_PREFIX, retries, backoffDelayMs = 5_000 } = options;
  const logger = options.logger ?? consoleLogger;
  const keep: KeepPolicy = { ...DEFAULT_KEEP, ...options.keep };

  for (const stage of STAGES) {
    const r = retries[stage];
    if (!Number.isInteger(r) || r < 0) throw new RangeError(`retries.${stage} must be a non-negative integer, got ${String(r)}`);
  }
  if (!Number.isFinite(backoffDelayMs) || backoffDelayMs < 0) throw new RangeError('backoffDelayMs must be >= 0');

  const jobOptions = (stage: Stage): JobsOptions => ({
    attempts: retries[stage] + 1,
    backoff: { type: 'exponential', delay: backoffDelayMs },
    removeOnComplete: keep.completed,
    removeOnFail: keep.failed,
    keepLogs: 100,
    stackTraceLimit: 20,
  });

  const makeQueue = <S extends Stage>(stage: S): StageQueue<S> => {
    const queue = new Queue<StagePayloads[S], StageResults[S], S>(STAGE_QUEUES[stage], {
      connection,
      prefix,
      // Without these, a Queue built while Redis is down either waits for it (an API request
      // hangs) or, after a failed INFO version probe, stays broken after Redis returns.
      skipWaitingForReady: true,
      skipVersionCheck: true,
      defaultJobOptions: jobOptions(stage),
      // The scheduler reads this stream from a cursor; a longer one lets it fall further
      // behind (restart, burst) before the reconciler has to repair from job records.
      streams: { events: { maxLen: EVENT_STREAM_MAX_LEN } },
    });
    // An 'error' event without a listener would crash the process.
    queue.on('error', (err) => logger.error({ err, queue: STAGE_QUEUES[stage], prefix }, 'stage queue error'));
    return queue;
  };
  const queues: StageQueueMap = { download: makeQueue('download'), dub: makeQueue('dub'), mux: makeQueue('mux') };
  // Internal operations do not need the per-stage payload types.
  const anyQueue = (stage: Stage): Queue => {
    const q = (queues as Record<string, Queue | undefined>)[stage];
    if (!q) throw new Error(`unknown stage "${String(stage)}"`);
    return q;
  };

  let closePromise: Promise<void> | undefined;
  const assertOpen = () => {
    if (closePromise) throw new Error('stage queues are closed');
  };

  async function add(stage: Stage, queueJobId: string, payload: unknown, opts: EnqueueOptions = {}): Promise<EnqueueResult> {
    assertOpen();
    assertStagePayload(stage, payload);
    const extra: JobsOptions = {};
    if (opts.delay !== undefined) extra.delay = opts.delay;
    if (opts.priority !== undefined) extra.priority = opts.priority;
    // Same id twice → BullMQ keeps the first job (while it still exists) and adds nothing.
    const job = await anyQueue(stage).add(stage, payload, { ...jobOptions(stage), ...extra, jobId: queueJobId });
    return { stage, queueJobId: job.id ?? queueJobId };
  }

  async function addMany(
    stage: Stage,
    entries: ReadonlyArray<{ queueJobId: string; payload: unknown; delayMs?: number }>,
  ): Promise<EnqueueResult[]> {
    assertOpen();
    if (entries.length === 0) return [];
    for (const e of entries) assertStagePayload(stage, e.payload);
    const base = jobOptions(stage);
    const jobs = await anyQueue(stage).addBulk(
      entries.map((e) => ({
        name: stage,
        data: e.payload,
        opts: { ...base, jobId: e.queueJobId, ...(e.delayMs && e.delayMs > 0 ? { delay: e.delayMs } : {}) },
      })),
    );
    return jobs.map((job, i) => ({ stage, queueJobId: job.id ?? entries[i]!.queueJobId }));
  }

  function candidates(jobId: string, maxGeneration: number): Array<{ stage: Stage; generation: number; id: string }> {
    if (!Number.isSafeInteger(maxGeneration) || maxGeneration < 0) {
      throw new RangeError(`maxGeneration must be a non-negative integer, got ${String(maxGeneration)}`);
    }
    const out: Array<{ stage: Stage; generation: number; id: string }> = [];
    for (let g = 0; g <= maxGeneration; g++) {
      for (const stage of STAGES) out.push({ stage, generation: g, id: stageJobId(jobId, stage, g) });
    }
    return out;
  }

  async function findStageJobs(jobId: string, maxGeneration: number): Promise<StageJobInfo[]> {
    assertOpen();
    // Ids are deterministic, so a job's runs are found by direct lookups (3 per generation, run
    // concurrently) instead of scanning the queues.
    const found = await Promise.all(
      candidates(jobId, maxGeneration).map(async (c): Promise<StageJobInfo | null> => {
        const job = await anyQueue(c.stage).getJob(c.id);
        if (!job) return null;
        const state = await job.getState();
        return {
          stage: c.stage,
          generation: c.generation,
          queueJobId: c.id,
          state,
          attemptsMade: job.attemptsMade,
          failedReason: job.failedReason || undefined,
          job,
        };
      }),
    );
    return found.filter((x): x is StageJobInfo => x !== null);
  }

  async function removeStageJobs(jobId: string, maxGeneration: number): Promise<RemoveStageJobsResult> {
    const jobs = await findStageJobs(jobId, maxGeneration);
    const result: RemoveStageJobsResult = { removed: [], active: [] };
    const settled = await Promise.allSettled(
      jobs.map(async (info) => {
        if (info.state === 'active') {
          result.active.push(info.queueJobId);
          return;
        }
        // 0 means a worker locked it meanwhile: it is active now.
        const code = await anyQueue(info.stage).remove(info.queueJobId);
        (code === 1 ? result.removed : result.active).push(info.queueJobId);
      }),
    );
    const errors = settled.flatMap((s) => (s.status === 'rejected' ? [s.reason as unknown] : []));
    // Removal is idempotent: the caller can simply try again.
    if (errors.length) throw new AggregateError(errors, `removing stage jobs of ${jobId} failed`);
    return result;
  }

  async function counts(): Promise<Record<Stage, StageCounts>> {
    assertOpen();
    const entries = await Promise.all(
      STAGES.map(async (stage) => {
        const raw = await anyQueue(stage).getJobCounts(...COUNTED_STATES);
        const c = Object.fromEntries(COUNTED_STATES.map((s) => [s, raw[s] ?? 0])) as StageCounts;
        return [stage, c] as const;
      }),
    );
    return Object.fromEntries(entries) as Record<Stage, StageCounts>;
  }

  async function closeAll(): Promise<void> {
    // Every queue is closed even if one fails; the shared connection stays open (caller owns it).
    const settled = await Promise.allSettled(STAGES.map((s) => anyQueue(s).close()));
    const errors = settled.flatMap((s) => (s.status === 'rejected' ? [s.reason as unknown] : []));
    if (errors.length) throw new AggregateError(errors, 'closing stage queues failed');
  }

  return {
    queues,
    prefix,
    jobOptions,
    enqueue: (stage, payload, opts) => {
      // Validate before computing the id, so a payload without jobId gets the schema error.
      try {
        assertStagePayload(stage, payload);
      } catch (err) {
        return Promise.reject(err);
      }
      return add(stage, stageJobId(payload.jobId, stage, payload.generation), payload, opts);
    },
    enqueueRaw: (stage, queueJobId, payload) => add(stage, queueJobId, payload),
    enqueueMany: addMany,
    findStageJobs,
    removeStageJobs,
    counts,
    pause: async (stage) => {
      assertOpen();
      await anyQueue(stage).pause();
    },
    resume: async (stage) => {
      assertOpen();
      await anyQueue(stage).resume();
    },
    isPaused: (stage) => anyQueue(stage).isPaused(),
    close: () => (closePromise ??= closeAll()),
  };
}
