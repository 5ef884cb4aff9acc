import { createHash } from 'node:crypto';
import type { JobsRepository, StateChange } from '@dubgate/db/jobs';
import type { EventsRepository } from '@dubgate/db/events';
import type { OutboxInput, OutboxItem } from '@dubgate/db/outbox';
import type { GroupCommit } from '@dubgate/db/group-commit';
import type { StageQueues } from '@dubgate/queues/stage-queues';
import type { OutboxDelivery } from '@dubgate/queues/outbox-delivery';
import { controlRefusal, isActive, isJobState, type ControlOperation, type JobState } from '@dubgate/contracts/states';
import { firstStageEnqueue, stageEnqueue } from '@dubgate/contracts/stage-registry';
import { CONTROL_CANCEL_CHANNEL } from '@dubgate/contracts/events';
import {
  DEFAULT_FORMAT_PRESET,
  DEFAULT_OUTPUT_CONTAINER,
  type CreateJobBody,
  type Job,
  type JobDetail,
} from '@dubgate/contracts/jobs';
import { DEFAULT_PAGE_LIMIT, type JobListResponse, type ListJobsQuery, type LogsQuery, type LogsResponse } from '@dubgate/contracts/api';
import { AppError, ConflictError, NotFoundError, UnavailableError, ValidationError } from '@dubgate/runtime/errors';
import { checkJobUrl } from '@dubgate/runtime/url-policy';
import { removeJobMedia } from '../media-files.js';
import type { AuthUser } from '../auth-context.js';

export interface JobsServiceDeps {
  jobs: JobsRepository;
  events: EventsRepository;
  stageQueues: Pick<StageQueues, 'removeStageJobs'>;
  delivery: OutboxDelivery;
  mediaRoot: string;
  allowPrivateUrls: boolean;
  /** Bound on the wait for Redis after commit; past it the scheduler's drainer delivers. */
  deliveryTimeoutMs?: number;
  log: { warn(obj: object, msg?: string): void; info(obj: object, msg?: string): void };
  onJobCreated?: (job: Job) => void;
  /** Fault tests: die between the commit and the enqueue, as a crash there would. */
  failpoint?: 'off' | 'after-commit';
  /** Why downloads are held back (set by the scheduler), or null. */
  downloadsHeld?: () => Promise<string | null>;
  /** Shares one SQLite transaction among the jobs created in the same tick; without it each commits alone. */
  groupCommit?: Pick<GroupCommit, 'run'>;
  /** Creations in progress past which new ones are refused with 503 + Retry-After. Default 2000. */
  maxPendingCreates?: number;
}

export interface CreateJobOutcome {
  job: Job;
  /** False when an Idempotency-Key replay returned an existing job. */
  created: boolean;
}

const HOLD_LOOKUP_TIMEOUT_MS = 250;

const REFUSAL_CODES = {
  cancel: 'JOB_NOT_CANCELABLE',
  retry: 'JOB_NOT_RETRYABLE',
  resume: 'JOB_NOT_RESUMABLE',
} as const satisfies Record<ControlOperation, string>;

export function createJobsService(deps: JobsServiceDeps) {
  const { jobs, events, delivery, log } = deps;
  const deliveryTimeoutMs = deps.deliveryTimeoutMs ?? 2_000;
  const maxPendingCreates = deps.maxPendingCreates ?? 2000;
  let pendingCreates = 0;
  const commit = <T>(write: () => T): Promise<T> =>
    deps.groupCommit ? deps.groupCommit.run(write) : new Promise<T>((resolve) => resolve(write()));

  /** The job if this user may see it; another user's job is indistinguishable from a missing one. */
  function loadOwned(user: AuthUser, id: string): Job {
    const job = jobs.getJob(id);
    if (!job || (user.role !== 'admin' && job.ownerId !== user.id)) throw new NotFoundError('JOB_NOT_FOUND');
    return job;
  }

  /** Delivers committed outbox rows now, bounded in time; whatever fails stays for the drainer. */
  async function deliverNow(written: readonly OutboxItem[], opts: { holdDownloads?: boolean } = {}): Promise<void> {
    // Held download enqueues stay in the outbox; the scheduler releases them in order.
    const items = written.filter((r) => !(opts.holdDownloads && r.kind === 'enqueue' && r.payload.stage === 'download'));
    if (items.length === 0) return;
    const outboxIds = items.map((r) => r.id);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), deliveryTimeoutMs);
    });
    try {
      const result = await Promise.race([delivery.deliverSoon(items), timeout]);
      if (result === 'timeout') log.warn({ outboxIds }, 'outbox delivery slow; left to the scheduler');
    } catch (err) {
      log.warn({ err, outboxIds }, 'outbox delivery failed; left to the scheduler');
    } finally {
      clearTimeout(timer);
    }
  }

  function requestHash(body: Required<Omit<CreateJobBody, 'targetLang'>> & { targetLang: string | null }): string {
    return createHash('sha256').update(JSON.stringify(body)).digest('hex');
  }

  function cancelSignalRow(job: Job, reason: string): OutboxInput {
    return {
      kind: 'publish',
      jobId: job.id,
      payload: {
        channel: CONTROL_CANCEL_CHANNEL,
        message: { jobId: job.id, reason, timestamp: new Date().toISOString() },
      },
    } as unknown as OutboxInput; // TEMP until the db outbox type admits control:cancel
  }

  /** Applies a control transition, retrying once if the job moved meanwhile (a worker took it). */
  function transition(user: AuthUser, id: string, op: ControlOperation, build: (job: Job) => StateChange) {
    for (let attempt = 0; attempt < 3; attempt++) {
      const job = loadOwned(user, id);
      const refusal = controlRefusal(op, { state: job.status, requestedDubbing: job.requestedDubbing, failedStage: job.failedStage });
      if (refusal) throw new ConflictError(REFUSAL_CODES[op], refusal);
      const result = jobs.updateJobState(id, build(job));
      if (result.ok) return result;
      if (result.reason === 'not_found') throw new NotFoundError('JOB_NOT_FOUND');
      if (result.reason === 'forbidden') throw new ConflictError('INVALID_TRANSITION');
      // 'stale': the job moved between our read and the write; read again and re-check.
    }
    throw new ConflictError('STATE_CONFLICT');
  }

  async function createJob(user: AuthUser, body: CreateJobBody, idempotencyKey?: string): Promise<CreateJobOutcome> {
    const verdict = checkJobUrl(body.url, { allowPrivate: deps.allowPrivateUrls });
    if (!verdict.ok) throw new ValidationError('URL_NOT_ALLOWED', `URL not allowed: ${verdict.reason}`);
    const requestedDubbing = body.requestedDubbing ?? false;
    if (requestedDubbing && !body.targetLang) {
      throw new ValidationError('VALIDATION_FAILED', 'targetLang is required when requestedDubbing is true', {
        details: [{ path: 'body.targetLang', message: 'is required when requestedDubbing is true' }],
      });
    }
    const normalized = {
      url: verdict.url.href,
      requestedDubbing,
      targetLang: body.targetLang ?? null,
      formatPreset: body.formatPreset ?? DEFAULT_FORMAT_PRESET,
      outputContainer: body.outputContainer ?? DEFAULT_OUTPUT_CONTAINER,
    };
    const input = {
      ownerId: user.id,
      ...normalized,
      idempotencyKey: idempotencyKey ?? null,
      requestHash: idempotencyKey ? requestHash(normalized) : null,
    };
    const result = await commit(() => jobs.insertJob(input));
    if (!result.ok) throw new AppError('IDEMPOTENCY_KEY_REUSED');
    if (!result.created) return { job: result.job, created: false };
    if (deps.failpoint === 'after-commit') process.kill(process.pid, 'SIGKILL');
    deps.onJobCreated?.(result.job);
    const held = await heldReason();
    if (held) jobs.setHoldReason(result.job.id, held);
    await deliverNow(result.outboxItems, { holdDownloads: held !== null });
    return { job: held ? { ...result.job, holdReason: held } : result.job, created: true };
  }

  return {
    async create(user: AuthUser, body: CreateJobBody, idempotencyKey?: string): Promise<CreateJobOutcome> {
      // Past the cap the api is behind (SQLite or Redis slower than the offered rate): a fast,
      // clear refusal the client can retry beats an answer that arrives after its time-out.
      if (pendingCreates >= maxPendingCreates) {
        throw new UnavailableError('SERVICE_UNAVAILABLE', 'Too many jobs are being submitted right now; retry shortly', { retryAfterSeconds: 1 });
      }
      pendingCreates++;
      try {
        return await createJob(user, body, idempotencyKey);
      } finally {
        pendingCreates--;
      }
    },

    get(user: AuthUser, id: string): JobDetail {
      loadOwned(user, id);
      const detail = jobs.getJobById(id);
      if (!detail) throw new NotFoundError('JOB_NOT_FOUND');
      return detail;
    },

    list(user: AuthUser, query: ListJobsQuery): JobListResponse {
      const statuses = query.status ? parseStatuses(query.status) : undefined;
      return jobs.listJobs({
        ownerId: user.role === 'admin' ? null : user.id,
        statuses,
        search: query.search,
        limit: query.limit ?? DEFAULT_PAGE_LIMIT,
        cursor: query.cursor,
        offset: query.offset,
      });
    },

    logs(user: AuthUser, id: string, query: LogsQuery): LogsResponse {
      loadOwned(user, id);
      return events.listEvents(id, { after: query.after, limit: query.limit ?? 100, level: query.level });
    },

    async cancel(user: AuthUser, id: string): Promise<Job> {
      const reason = `canceled by ${user.username}`;
      const result = transition(user, id, 'cancel', (job) => ({
        from: job.status,
        to: 'CANCELED',
        reason,
        patch: { holdReason: null },
        outbox: [cancelSignalRow(job, reason)],
      }));
      await deliverNow(result.outboxItems);
      await removeQueued(result.job);
      return result.job;
    },

    async retry(user: AuthUser, id: string): Promise<Job> {
      const result = transition(user, id, 'retry', (job) => {
        const generation = job.generation + 1;
        return {
          from: job.status,
          to: 'QUEUED',
          reason: `retried by ${user.username}`,
          patch: { generation, attempt: 0, failedStage: null, error: null, checkpoint: null, outputPath: null, holdReason: null },
          outbox: [{ kind: 'enqueue', jobId: job.id, payload: firstStageEnqueue({ ...job, generation }) }],
        };
      });
      const held = await heldReason();
      if (held) jobs.setHoldReason(id, held);
      await deliverNow(result.outboxItems, { holdDownloads: held !== null });
      return held ? { ...result.job, holdReason: held } : result.job;
    },

    async resume(user: AuthUser, id: string): Promise<Job> {
      const result = transition(user, id, 'resume', (job) => {
        const checkpoint = jobs.getCheckpoint(id);
        const generation = job.generation + 1;
        // Null without a source media row: the download never finished.
        const dub = job.targetLang ? stageEnqueue('dub', { ...job, generation }, { media: jobs.listMedia(id), checkpoint }) : null;
        if (!dub) throw new ConflictError('JOB_NOT_RESUMABLE', 'the job has no downloaded media to resume from');
        return {
          from: job.status,
          to: 'DUBBING',
          reason: `resumed by ${user.username}`,
          patch: { generation, attempt: 0, failedStage: null, error: null },
          eventPayload: { checkpoint },
          outbox: [{ kind: 'enqueue', jobId: job.id, payload: dub }],
        };
      });
      await deliverNow(result.outboxItems);
      return result.job;
    },

    async remove(user: AuthUser, id: string): Promise<void> {
      let job = loadOwned(user, id);
      if (isActive(job.status)) job = await this.cancel(user, id);
      await removeQueued(job);
      // The repository records the one job_removed message in the same transaction.
      const deleted = jobs.deleteJob(id);
      if (!deleted) throw new NotFoundError('JOB_NOT_FOUND');
      const files = await removeJobMedia(deps.mediaRoot, id, deleted.mediaPaths);
      if (files.refused.length > 0) log.warn({ jobId: id, refused: files.refused }, 'media paths outside MEDIA_ROOT left alone');
      await deliverNow(deleted.outboxItems);
    },
  };

  /** The scheduler's hold, bounded in time: a hung Redis must not hold up the answer. */
  async function heldReason(): Promise<string | null> {
    if (!deps.downloadsHeld) return null;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        deps.downloadsHeld(),
        new Promise<null>((resolve) => {
          timer = setTimeout(() => resolve(null), HOLD_LOOKUP_TIMEOUT_MS);
        }),
      ]);
    } catch {
      return null; // Redis unreachable: delivery fails too and the drainer takes over
    } finally {
      clearTimeout(timer);
    }
  }

  /** Removes waiting and delayed stage jobs; the running one is stopped by the cancel signal. */
  async function removeQueued(job: Job): Promise<void> {
    try {
      await deps.stageQueues.removeStageJobs(job.id, job.generation);
    } catch (err) {
      log.warn({ err, jobId: job.id }, 'could not remove stage jobs now; the reconciler will');
    }
  }
}

export type JobsService = ReturnType<typeof createJobsService>;

function parseStatuses(raw: string): JobState[] {
  const states = [...new Set(raw.split(','))];
  const unknown = states.filter((s) => !isJobState(s));
  if (unknown.length > 0) {
    throw new ValidationError('VALIDATION_FAILED', `unknown status ${unknown.join(', ')}`, {
      details: unknown.map((s) => ({ path: 'querystring.status', message: `unknown state "${s}"` })),
    });
  }
  return states as JobState[];
}
