import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import {
  DubCheckpointSchema,
  PERMANENT_ERROR_PREFIX,
  QUEUE_PREFIX,
  STAGE_RESULT_SCHEMAS,
  type DubCheckpoint,
  type StagePayloads,
  type StageResults,
} from '@dubgate/contracts/stages';
import type { Stage } from '@dubgate/contracts/states';
import { CONTROL_CANCEL_CHANNEL, type CancelSignal } from '@dubgate/contracts/events';
import { closeRedis, createRedisConnection, waitForReady } from '@dubgate/queues/connections';
import { STAGE_QUEUES } from '@dubgate/queues/names';
import { createEventPublisher, createEventSubscriber, type EventSubscriber } from '@dubgate/queues/publisher';
import { stagePayloadValidators } from '@dubgate/queues/validation';
import type { Logger } from '@dubgate/runtime/logger';
import { DURATION_BUCKETS_SECONDS, type Counter, type Gauge, type Histogram, type Metrics, type Registry } from '@dubgate/runtime/metrics';
import { AbortError, PermanentError, SHUTDOWN_ABORT_REASON, TRANSIENT_CODE, isPermanentError, permanentReason } from './errors.js';
import { createMediaPaths, type MediaPaths } from './paths.js';
import { createJobEvents, type LogLevel, type ProgressUpdate } from './progress.js';

export type { Stage, StagePayloads, StageResults, DubCheckpoint };
// Re-exported so a stage function can import everything it needs from here.
export { PermanentError };

/** Everything a stage function gets for one run of one job. */
export interface StageContext<S extends Stage> {
  /** `job.data`, validated against the stage's payload schema from contracts. */
  payload: StagePayloads[S];
  stage: S;
  /** The BullMQ job id (`<jobId>_<stage>_g<generation>`). */
  queueJobId: string;
  /** 1-based: 1 on the first run, 2 on the first retry... A run handed back at shutdown keeps its number. */
  attempt: number;
  /**
   * Fires on a cancel for this job (control:cancel, or BullMQ's own `worker.cancelJob`), or when a
   * shutdown outlasts its timeout. Stop within a few seconds: after 4 s (`abortGraceMs`) the SDK
   * stops waiting and settles the job anyway. `signal.reason` is 'canceled: …' or 'shutdown'.
   */
  signal: AbortSignal;
  /** Absolute MEDIA_ROOT. */
  mediaRoot: string;
  /** Absolute `MEDIA_ROOT/<jobId>`, created before the stage function runs. */
  workDir: string;
  /** A payload path (relative to MEDIA_ROOT) made absolute; refuses `..`, absolute paths and symlink escapes (PermanentError). */
  resolvePath(relative: string): string;
  /** An absolute path under MEDIA_ROOT made relative, for results. */
  relativePath(absolute: string): string;
  /** Progress on events:progress: throttled (the latest one always goes out), `seq` numbered, `final` never throttled. */
  progress(p: ProgressUpdate): void;
  /** A line on events:log (also written to the worker's own log). */
  log(level: LogLevel, message: string): void;
  /**
   * Dub stage only: stores `checkpoint` in the BullMQ job (`job.updateData({...data, checkpoint})`).
   * A retry of this run finds it in `payload.checkpoint`; when the stage fails for good the
   * scheduler saves it, and a resume passes it back as `payload.checkpoint`.
   */
  checkpoint(cp: DubCheckpoint): Promise<void>;
  /** pino child logger with jobId, stage, queueJobId and attempt. */
  logger: Logger;
  /** The BullMQ job itself, for what the context does not cover. */
  job: Job;
}

export type StageProcessor<S extends Stage> = (ctx: StageContext<S>) => Promise<StageResults[S]>;

export interface StageWorkerOptions<S extends Stage> {
  stage: S;
  redisUrl: string;
  /** BullMQ prefix; default 'q' (keys `q:<stage>:*`). Tests use their own. */
  queuePrefix?: string;
  mediaRoot: string;
  /** Jobs run at once by this worker. Default 1. */
  concurrency?: number;
  processor: StageProcessor<S>;
  logger: Logger;
  metrics?: Metrics;
  /** BullMQ lock duration (ms); the lock is renewed at half of it. Default 30000. */
  lockDurationMs?: number;
  /** On close(), how long running jobs may still finish before they are aborted and handed back. Default 25000. */
  shutdownTimeoutMs?: number;
  /** After the signal fired, how long the stage function may take to stop before the SDK settles the job without it. Default 4000. */
  abortGraceMs?: number;
  /** Least time between two progress messages of a job (ms). Default 500. */
  progressIntervalMs?: number;
  /** Check that every path a result names exists under MEDIA_ROOT. Default true. */
  checkResultFiles?: boolean;
  /** BullMQ stalled-job check interval (ms). Default BullMQ's (30000). */
  stalledIntervalMs?: number;
}

export interface StageWorker {
  /** Subscribes to control:cancel, then starts taking jobs. Resolves once both are up. */
  start(): Promise<void>;
  /** Stops taking jobs, lets running ones finish until shutdownTimeoutMs, hands the rest back, closes Redis. Safe twice. */
  close(): Promise<void>;
  worker: Worker;
  /** Jobs running now. */
  activeCount(): number;
  /** The worker's command connection (role 'worker'), for health checks. */
  readonly connection: Redis;
}

export type JobOutcome = 'completed' | 'failed' | 'failed_permanent' | 'canceled' | 'handed_back';

interface WorkerMetrics {
  jobs: Counter<'stage' | 'outcome'>;
  duration: Histogram<'stage'>;
  active: Gauge<'stage'>;
}

// One set per registry: two workers on one Metrics (several stages in one process) share them.
const metricsByRegistry = new WeakMap<Registry, WorkerMetrics>();
function workerMetrics(metrics: Metrics): WorkerMetrics {
  let m = metricsByRegistry.get(metrics.registry);
  if (!m) {
    m = {
      jobs: metrics.counter({ name: 'worker_jobs_total', help: 'Stage runs finished by this worker, by outcome', labelNames: ['stage', 'outcome'] }),
      duration: metrics.histogram({
        name: 'worker_job_duration_seconds',
        help: 'Time from taking a stage job to settling it',
        labelNames: ['stage'],
        buckets: [...DURATION_BUCKETS_SECONDS],
      }),
      active: metrics.gauge({ name: 'worker_active_jobs', help: 'Stage jobs running in this worker', labelNames: ['stage'] }),
    };
    metricsByRegistry.set(metrics.registry, m);
  }
  return m;
}

const resultChecks = {
  download: TypeCompiler.Compile(STAGE_RESULT_SCHEMAS.download),
  dub: TypeCompiler.Compile(STAGE_RESULT_SCHEMAS.dub),
  mux: TypeCompiler.Compile(STAGE_RESULT_SCHEMAS.mux),
};
const checkpointCheck = TypeCompiler.Compile(DubCheckpointSchema);
const RESULT_PATH_FIELDS = ['mediaPath', 'subtitlePath', 'audioPath', 'outputPath'] as const;

/** How long a cancel is remembered, to refuse a job that a cancel reached before a worker took it. */
const CANCEL_MEMORY_MS = 10 * 60_000;

interface ActiveRun {
  queueJobId: string;
  jobId: string | undefined;
  controller: AbortController;
  reason?: 'cancel' | 'shutdown';
  detail?: string;
  abort(reason: 'cancel' | 'shutdown', detail: string): void;
}

const sleep = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms).unref?.();
  });

function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

export function createStageWorker<S extends Stage>(opts: StageWorkerOptions<S>): StageWorker {
  const {
    stage,
    redisUrl,
    queuePrefix = QUEUE_PREFIX,
    concurrency = 1,
    lockDurationMs = 30_000,
    shutdownTimeoutMs = 25_000,
    abortGraceMs = 4_000,
    progressIntervalMs = 500,
    checkResultFiles = true,
  } = opts;
  if (!Object.hasOwn(STAGE_QUEUES, stage)) throw new TypeError(`unknown stage "${String(stage)}"`);
  const logger = opts.logger.child({ stage });
  const paths: MediaPaths = createMediaPaths(opts.mediaRoot);
  const mediaRoot = paths.mediaRoot;
  const m = opts.metrics ? workerMetrics(opts.metrics) : undefined;
  const payloadCheck = stagePayloadValidators[stage];
  const resultCheck = resultChecks[stage];

  const name = `dubgate:worker-${stage}`;
  const connection = createRedisConnection(redisUrl, 'worker', { logger, connectionName: name });
  const subConnection = createRedisConnection(redisUrl, 'subscriber', { logger, connectionName: `${name}-cancel` });
  const pubConnection = createRedisConnection(redisUrl, 'publisher', { logger, connectionName: `${name}-events` });
  const publisher = createEventPublisher(pubConnection);

  const active = new Map<string, ActiveRun>();
  const canceled = new Map<string, Array<{ at: number; stageJobId?: string; reason: string }>>();
  let closing = false;

  function rememberCancel(sig: CancelSignal): void {
    const now = Date.now();
    for (const [k, list] of canceled) {
      const kept = list.filter((c) => now - c.at < CANCEL_MEMORY_MS);
      if (kept.length) canceled.set(k, kept);
      else canceled.delete(k);
    }
    const at = Number.isNaN(Date.parse(sig.timestamp)) ? now : Math.min(Date.parse(sig.timestamp), now);
    const list = canceled.get(sig.jobId) ?? [];
    list.push({ at, reason: sig.reason, ...(sig.stageJobId ? { stageJobId: sig.stageJobId } : {}) });
    canceled.set(sig.jobId, list.slice(-20));
  }

  /** A cancel that arrived before this job was taken (and after it was enqueued). */
  function earlierCancel(job: Job, jobId: string): string | undefined {
    for (const c of canceled.get(jobId) ?? []) {
      if (c.stageJobId ? c.stageJobId === job.id : job.timestamp <= c.at) return c.reason;
    }
    return undefined;
  }

  function onCancel(sig: CancelSignal): void {
    rememberCancel(sig);
    for (const run of active.values()) {
      const hit = sig.stageJobId ? run.queueJobId === sig.stageJobId : run.jobId === sig.jobId;
      if (hit) {
        logger.info({ jobId: sig.jobId, queueJobId: run.queueJobId, reason: sig.reason }, 'cancel received; aborting the stage');
        run.abort('cancel', sig.reason);
      }
    }
  }

  let subscriber: EventSubscriber | undefined;

  async function checkResult(result: unknown): Promise<StageResults[S]> {
    if (!resultCheck.Check(result)) {
      const errors = [...resultCheck.Errors(result)].slice(0, 3).map((e) => `${e.path || '/'} ${e.message}`);
      throw new PermanentError(`the ${stage} stage returned an invalid result (${errors.join('; ') || 'not an object'})`, 'RESULT_INVALID');
    }
    if (checkResultFiles) {
      for (const field of RESULT_PATH_FIELDS) {
        const rel = (result as Record<string, unknown>)[field];
        if (typeof rel !== 'string') continue;
        const abs = paths.resolvePath(rel);
        const st = await stat(abs).catch(() => null);
        if (!st?.isFile()) throw new PermanentError(`the ${stage} stage returned ${field} "${rel}", which is not a file under MEDIA_ROOT`, 'RESULT_INVALID');
      }
    }
    return result as StageResults[S];
  }

  /** Runs the stage function; once the run is aborted, waits at most abortGraceMs for it to stop. */
  async function runProcessor(ctx: StageContext<S>, run: ActiveRun, log: Logger): Promise<StageResults[S]> {
    const work = Promise.resolve().then(() => opts.processor(ctx));
    let graceTimer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const ignored = new Promise<'ignored'>((resolve) => {
      onAbort = () => {
        graceTimer = setTimeout(() => resolve('ignored'), abortGraceMs);
      };
      if (run.controller.signal.aborted) onAbort();
      else run.controller.signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const first = await Promise.race([work.then((v) => ({ v })), ignored]);
      if (first === 'ignored') {
        work.catch(() => {});
        log.warn({ abortGraceMs }, 'the stage function did not stop within the grace period after its signal fired; settling the job without it');
        throw new AbortError(`the stage did not stop within ${abortGraceMs} ms of being aborted`);
      }
      return first.v;
    } finally {
      clearTimeout(graceTimer);
      if (onAbort) run.controller.signal.removeEventListener('abort', onAbort);
    }
  }

  const processor = async (job: Job, token: string | undefined, bullSignal?: AbortSignal): Promise<StageResults[S]> => {
    const t0 = performance.now();
    const data = (job.data ?? {}) as Record<string, unknown>;
    const jobId = typeof data.jobId === 'string' ? data.jobId : undefined;
    const queueJobId = job.id ?? '';
    const attempt = (job.attemptsMade ?? 0) + 1;
    const controller = new AbortController();
    const run: ActiveRun = {
      queueJobId,
      jobId,
      controller,
      abort(reason, detail) {
        if (controller.signal.aborted) return;
        run.reason = reason;
        run.detail = detail;
        controller.abort(reason === 'cancel' ? `canceled: ${detail}` : SHUTDOWN_ABORT_REASON);
      },
    };
    const onBullAbort = () => run.abort('cancel', typeof bullSignal?.reason === 'string' ? bullSignal.reason : 'canceled through BullMQ');
    if (bullSignal?.aborted) onBullAbort();
    else bullSignal?.addEventListener('abort', onBullAbort, { once: true });
    active.set(queueJobId, run);
    m?.active.inc({ stage });

    const log = logger.child({ jobId, queueJobId, attempt });
    // A payload without a usable job id cannot be reported on (the relay would drop the messages).
    const canPublish = jobId !== undefined && /^[A-Za-z0-9_-]{1,64}$/.test(jobId);
    const events = createJobEvents({
      publisher: canPublish ? publisher : { publish: async () => 0 },
      jobId: canPublish ? jobId : 'unknown',
      stage,
      intervalMs: progressIntervalMs,
      onPublishError: (err, channel) => log.debug({ err, channel }, 'event not published'),
    });
    let outcome: JobOutcome = 'failed';
    try {
      try {
        if (!payloadCheck.check(data)) {
          throw new PermanentError(`invalid payload: ${payloadCheck.errors(data, 3).join('; ')}`, 'PAYLOAD_INVALID');
        }
        const payload = data as unknown as StagePayloads[S];
        const before = earlierCancel(job, payload.jobId);
        if (before !== undefined) run.abort('cancel', before);
        if (controller.signal.aborted) throw new AbortError('aborted before the stage started');

        const workDir = join(mediaRoot, payload.jobId);
        await mkdir(workDir, { recursive: true });
        log.info('stage started');
        const ctx: StageContext<S> = {
          payload,
          stage,
          queueJobId,
          attempt,
          signal: controller.signal,
          mediaRoot,
          workDir,
          resolvePath: (rel) => paths.resolvePath(rel),
          relativePath: (abs) => paths.relativePath(abs),
          progress: (p) => events.progress(p),
          log: (level, message) => {
            log[level]({ published: true }, message);
            events.log(level, message);
          },
          checkpoint: async (cp) => {
            if (stage !== 'dub') throw new TypeError('checkpoints are part of the dub contract only');
            if (!checkpointCheck.Check(cp)) {
              const errors = [...checkpointCheck.Errors(cp)].slice(0, 3).map((e) => `${e.path} ${e.message}`);
              throw new TypeError(`invalid checkpoint: ${errors.join('; ')}`);
            }
            await job.updateData({ ...(job.data as object), checkpoint: cp } as never);
          },
          logger: log,
          job,
        };
        const result = await runProcessor(ctx, run, log);
        if (run.reason === 'cancel') throw new AbortError('canceled');
        const checked = await checkResult(result);
        if (!events.finalSent) events.progress({ percent: 100, final: true });
        outcome = 'completed';
        log.info('stage completed');
        return checked;
      } catch (err) {
        if (run.reason === 'shutdown') {
          log.info('worker shutting down; handing the job back to the queue');
          events.log('info', 'worker shutting down; the stage goes back to the queue');
          outcome = 'handed_back';
          if (token) {
            try {
              // skipAttempt: the run does not count as an attempt, and another worker takes it at once.
              await job.moveToDelayed(Date.now(), token);
            } catch (moveErr) {
              log.warn({ err: moveErr }, 'could not hand the job back; it returns to the queue when its lock expires');
            }
            throw new DelayedError();
          }
          throw new Error('worker shut down before the stage finished');
        }
        if (run.reason === 'cancel') {
          outcome = 'canceled';
          log.info({ reason: run.detail }, 'stage canceled');
          events.log('info', `canceled: ${run.detail ?? 'cancel requested'}`);
          throw new UnrecoverableError(`${PERMANENT_ERROR_PREFIX} canceled`);
        }
        const message = errorMessage(err);
        const permanent = isPermanentError(err) || err instanceof UnrecoverableError || message.startsWith(PERMANENT_ERROR_PREFIX);
        if (permanent) {
          outcome = 'failed_permanent';
          const code = isPermanentError(err) ? err.code : 'STAGE_FAILED_PERMANENTLY';
          const clean = message.startsWith(PERMANENT_ERROR_PREFIX) ? message.slice(PERMANENT_ERROR_PREFIX.length).trim() : message;
          log.warn({ err, code }, 'stage failed permanently');
          events.error(code, clean, true);
          throw new UnrecoverableError(permanentReason(clean));
        }
        outcome = 'failed';
        log.warn({ err }, 'stage failed; BullMQ retries it while attempts remain');
        events.error(TRANSIENT_CODE, message, false);
        throw err instanceof Error ? err : new Error(message);
      }
    } finally {
      bullSignal?.removeEventListener('abort', onBullAbort);
      active.delete(queueJobId);
      m?.active.dec({ stage });
      m?.jobs.inc({ stage, outcome });
      m?.duration.observe({ stage }, (performance.now() - t0) / 1000);
      await events.dispose();
    }
  };

  const worker = new Worker<StagePayloads[S], StageResults[S]>(
    STAGE_QUEUES[stage],
    processor as unknown as (job: Job, token?: string, signal?: AbortSignal) => Promise<StageResults[S]>,
    {
      connection,
      prefix: queuePrefix,
      concurrency,
      autorun: false,
      lockDuration: lockDurationMs,
      ...(opts.stalledIntervalMs ? { stalledInterval: opts.stalledIntervalMs } : {}),
      name: `worker-${stage}`,
    },
  );
  worker.on('error', (err) => logger.warn({ err }, 'worker error'));
  worker.on('failed', (job, err) => {
    if (job && !(err instanceof DelayedError)) logger.debug({ queueJobId: job.id, reason: err.message }, 'job failed');
  });

  let running: Promise<void> | undefined;
  let startPromise: Promise<void> | undefined;

  function start(): Promise<void> {
    startPromise ??= (async () => {
      if (closing) throw new Error('the worker is closed');
      await mkdir(mediaRoot, { recursive: true });
      // Subscribing while the connection is still being set up trips ioredis' ready check
      // ("Connection in subscriber mode"): wait until it is ready.
      await waitForReady(subConnection, 10_000);
      subscriber = createEventSubscriber(
        subConnection,
        [CONTROL_CANCEL_CHANNEL],
        (ev) => {
          if (ev.channel === CONTROL_CANCEL_CHANNEL) onCancel(ev.message);
        },
        { logger },
      );
      // Subscribed before the first job is taken, so no cancel for it can be missed.
      await subscriber.ready;
      await worker.waitUntilReady();
      if (closing) return;
      running = worker.run().catch((err: unknown) => logger.error({ err }, 'worker stopped with an error'));
      logger.info({ queue: STAGE_QUEUES[stage], prefix: queuePrefix, concurrency }, 'stage worker started');
    })();
    return startPromise;
  }

  let closePromise: Promise<void> | undefined;
  function close(): Promise<void> {
    closePromise ??= (async () => {
      closing = true;
      await startPromise?.catch(() => {});
      // Closing connections that BullMQ is still initialising leaves rejections nobody handles:
      // let them come up first (bounded, for a Redis that is down).
      await Promise.race([worker.waitUntilReady().catch(() => {}), sleep(2_000)]);
      const timer = setTimeout(() => {
        if (active.size) logger.warn({ running: active.size, shutdownTimeoutMs }, 'running jobs outlasted the shutdown timeout; aborting and handing them back');
        for (const run of active.values()) run.abort('shutdown', 'worker shutting down');
      }, shutdownTimeoutMs);
      timer.unref?.();
      const errors: unknown[] = [];
      const step = async (fn: () => Promise<unknown>) => {
        try {
          await fn();
        } catch (err) {
          errors.push(err);
        }
      };
      // Waits for running jobs (finished, or aborted and handed back above).
      await step(() => worker.close());
      await step(async () => running);
      clearTimeout(timer);
      await step(async () => subscriber?.close());
      await step(() => closeRedis(subConnection));
      await step(() => closeRedis(pubConnection));
      await step(() => closeRedis(connection));
      logger.info('stage worker closed');
      if (errors.length === 1) throw errors[0];
      if (errors.length > 1) throw new AggregateError(errors, 'closing the stage worker failed');
    })();
    return closePromise;
  }

  return { start, close, worker: worker as unknown as Worker, activeCount: () => active.size, connection };
}
