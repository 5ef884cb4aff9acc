import type { Database } from 'better-sqlite3';
import type { JobAddedMessage, JobRemovedMessage, StateChangeMessage } from '@dubgate/contracts/events';
import type { FormatPreset, Job, JobDetail, Media, MediaKind, OutputContainer, ProgressSnapshot } from '@dubgate/contracts/jobs';
import { MEDIA_KINDS } from '@dubgate/contracts/jobs';
import { isJobState, isTerminal, isTransitionAllowed, JOB_STATES, TERMINAL_STATES, type JobState, type Stage } from '@dubgate/contracts/states';
import { firstStageEnqueue, type MediaRowFields } from '@dubgate/contracts/stage-registry';
import { createEventsRepository } from './events-repository.js';
import { fromJson, toJson } from './json.js';
import { createJobLister, DEFAULT_LIST_TUNING, type ListJobsTuning } from './list-jobs.js';
import { createOutboxRepository, type OutboxInput, type OutboxItem } from './outbox-repository.js';
import { toEvent, toJob, toMedia, type EventRow, type JobRow, type MediaRow } from './rows.js';
import { systemClock, toIso, type Clock } from './time.js';
import { uuidv7 } from './uuid.js';

export type { ListJobsFilters, ListJobsResult, ListJobsTuning } from './list-jobs.js';
export { DEFAULT_LIST_TUNING, MAX_LIST_LIMIT } from './list-jobs.js';
export { InvalidCursorError } from './cursor.js';

export interface InsertJobInput {
  ownerId: string;
  url: string;
  requestedDubbing: boolean;
  targetLang: string | null;
  formatPreset: FormatPreset;
  outputContainer: OutputContainer;
  /** Client's Idempotency-Key; a repeat with the same key returns the first job. */
  idempotencyKey?: string | null;
  /** Hash of the request body, to tell a replay from a different request under the same key. */
  requestHash?: string | null;
}

export type InsertJobResult =
  | { ok: true; created: true; job: Job; eventId: number; outboxIds: number[]; outboxItems: OutboxItem[] }
  /** Replay of an earlier request with the same key and body: nothing written. */
  | { ok: true; created: false; job: Job; eventId: null; outboxIds: []; outboxItems: [] }
  /** Same key, different body: nothing written; the API answers 422 IDEMPOTENCY_KEY_REUSED. */
  | { ok: false; reason: 'idempotency_conflict'; job: Job };

/** Columns a transition may change besides the state. Absent = unchanged; null clears. */
export interface JobPatch {
  generation?: number;
  attempt?: number;
  failedStage?: Stage | null;
  error?: { code: string; message: string } | null;
  holdReason?: string | null;
  checkpoint?: Record<string, unknown> | null;
  outputPath?: string | null;
}

export interface StateChange {
  /** The state the caller believes the job is in; the update happens only if it still is. */
  from: JobState;
  to: JobState;
  reason?: string;
  patch?: JobPatch;
  /** More rows to write in the same transaction (e.g. enqueue of the next stage). */
  outbox?: readonly OutboxInput[];
  /** Extra fields for the job_events row's payload. */
  eventPayload?: Record<string, unknown>;
}

export type UpdateJobStateResult =
  | { ok: true; job: Job; eventId: number; outboxIds: number[]; outboxItems: OutboxItem[] }
  /** The transition table does not allow from → to. */
  | { ok: false; reason: 'forbidden' }
  | { ok: false; reason: 'not_found' }
  /** The job is no longer in `from`. */
  | { ok: false; reason: 'stale'; current: JobState };

/** The media columns a stage fills (the registry's rows carry them). */
export type MediaFields = MediaRowFields;

export interface DeletedJob {
  ownerId: string;
  /** Files the job had (relative to MEDIA_ROOT), for the caller to remove; the job dir is `<jobId>/`. */
  mediaPaths: string[];
  outboxIds: number[];
  outboxItems: OutboxItem[];
}

export interface JobsRepositoryOptions {
  clock?: Clock;
  listTuning?: Partial<ListJobsTuning>;
  /** Events shown by getJobById. Default 100. */
  detailEventLimit?: number;
}

const MAX_REASON_LENGTH = 2000;
const STATE_CHANNEL = 'events:state';

export function createJobsRepository(db: Database, opts: JobsRepositoryOptions = {}) {
  const clock = opts.clock ?? systemClock;
  const detailEventLimit = opts.detailEventLimit ?? 100;
  const events = createEventsRepository(db, { clock });
  const outbox = createOutboxRepository(db, { clock });
  const listJobs = createJobLister(db, { ...DEFAULT_LIST_TUNING, ...opts.listTuning });

  const s = {
    byId: db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE id = ?'),
    byIds: db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE id IN (SELECT value FROM json_each(?))'),
    owner: db.prepare<[string], string>('SELECT owner_id FROM jobs WHERE id = ?').pluck(),
    state: db.prepare<[string], string>('SELECT state FROM jobs WHERE id = ?').pluck(),
    checkpoint: db.prepare<[string], string | null>('SELECT checkpoint FROM jobs WHERE id = ?').pluck(),
    byIdempotencyKey: db.prepare<[string, string], JobRow>('SELECT * FROM jobs WHERE owner_id = ? AND idempotency_key = ?'),
    insert: db.prepare<Record<string, unknown>, JobRow>(
      `INSERT INTO jobs (id, owner_id, url, requested_dubbing, target_lang, format_preset, output_container,
                         state, generation, attempt, idempotency_key, request_hash, created_at, updated_at)
       VALUES (@id, @ownerId, @url, @requestedDubbing, @targetLang, @formatPreset, @outputContainer,
               'QUEUED', 0, 0, @idempotencyKey, @requestHash, @now, @now)
       RETURNING *`,
    ),
    // The compare-and-set at the heart of every transition: only from the expected state.
    transition: db.prepare<Record<string, unknown>, JobRow>(
      `UPDATE jobs SET
         state        = @to,
         generation   = CASE WHEN @setGeneration THEN @generation ELSE generation END,
         attempt      = CASE WHEN @setAttempt THEN @attempt ELSE attempt END,
         failed_stage = CASE WHEN @setFailedStage THEN @failedStage ELSE failed_stage END,
         error_code   = CASE WHEN @setError THEN @errorCode ELSE error_code END,
         error_message = CASE WHEN @setError THEN @errorMessage ELSE error_message END,
         hold_reason  = CASE WHEN @setHoldReason THEN @holdReason ELSE hold_reason END,
         checkpoint   = CASE WHEN @setCheckpoint THEN @checkpoint ELSE checkpoint END,
         output_path  = CASE WHEN @setOutputPath THEN @outputPath ELSE output_path END,
         -- A job that ended runs no more: its last snapshot (percent, speed, eta) goes with it.
         progress_stage   = CASE WHEN @terminal THEN NULL ELSE progress_stage END,
         progress_percent = CASE WHEN @terminal THEN NULL ELSE progress_percent END,
         progress_speed   = CASE WHEN @terminal THEN NULL ELSE progress_speed END,
         progress_eta     = CASE WHEN @terminal THEN NULL ELSE progress_eta END,
         progress_step    = CASE WHEN @terminal THEN NULL ELSE progress_step END,
         progress_updated_at = CASE WHEN @terminal THEN NULL ELSE progress_updated_at END,
         updated_at   = @now
       WHERE id = @id AND state = @from
       RETURNING *`,
    ),
    setHold: db.prepare<{ reason: string | null; now: string; id: string }>(
      'UPDATE jobs SET hold_reason = @reason, updated_at = @now WHERE id = @id AND hold_reason IS NOT @reason',
    ),
    setAttempt: db.prepare<[number, string, string]>('UPDATE jobs SET attempt = ?, updated_at = ? WHERE id = ?'),
    setCheckpoint: db.prepare<[string | null, string, string]>('UPDATE jobs SET checkpoint = ?, updated_at = ? WHERE id = ?'),
    // Snapshots can arrive out of order from a batching relay: never overwrite a newer one, and
    // never bring one back to a job that has ended (its transition cleared it).
    progress: db.prepare<Record<string, unknown>>(
      `UPDATE jobs SET progress_stage = @stage, progress_percent = @percent, progress_speed = @speed,
         progress_eta = @eta, progress_step = @step, progress_updated_at = @updatedAt
       WHERE id = @id AND (progress_updated_at IS NULL OR progress_updated_at <= @updatedAt)
         AND state NOT IN (${TERMINAL_STATES.map((st) => `'${st}'`).join(', ')})`,
    ),
    delete: db.prepare<[string], string>('DELETE FROM jobs WHERE id = ? RETURNING owner_id').pluck(),
    outputPath: db.prepare<[string], string | null>('SELECT output_path FROM jobs WHERE id = ?').pluck(),
    mediaOf: db.prepare<[string], MediaRow>('SELECT * FROM media WHERE job_id = ? ORDER BY id'),
    upsertMedia: db.prepare<Record<string, unknown>, MediaRow>(
      `INSERT INTO media (job_id, kind, path, size_bytes, duration_sec, width, height, video_codec, audio_codec,
                          language, title, source_url, created_at)
       SELECT @jobId, @kind, @path, @sizeBytes, @durationSec, @width, @height, @videoCodec, @audioCodec,
              @language, @title, @sourceUrl, @now
       WHERE EXISTS (SELECT 1 FROM jobs WHERE id = @jobId)
       ON CONFLICT (job_id, kind) DO UPDATE SET
         path = excluded.path, size_bytes = excluded.size_bytes, duration_sec = excluded.duration_sec,
         width = excluded.width, height = excluded.height, video_codec = excluded.video_codec,
         audio_codec = excluded.audio_codec, language = excluded.language, title = excluded.title,
         source_url = excluded.source_url
       RETURNING *`,
    ),
    latestEvents: db.prepare<[string, number], EventRow>(
      'SELECT * FROM (SELECT * FROM job_events WHERE job_id = ? ORDER BY id DESC LIMIT ?) ORDER BY id',
    ),
    // One index range per state (the planner scans the table for IN (json_each(...))).
    stateAfter: db
      .prepare<{ state: string; after: number; n: number }, number>(
        'SELECT seq FROM jobs WHERE state = @state AND seq > @after ORDER BY seq LIMIT @n',
      )
      .pluck(),
    bySeqs: db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE seq IN (SELECT value FROM json_each(?)) ORDER BY seq'),
    // Position of a job id for paging; falls back to the nearest older id if that job is gone.
    seqOfId: db
      .prepare<{ id: string }, number | null>(
        `SELECT coalesce((SELECT seq FROM jobs WHERE id = @id),
                         (SELECT seq FROM jobs WHERE id < @id ORDER BY id DESC LIMIT 1), 0)`,
      )
      .pluck(),
    counts: db.prepare<{ owner: string | null }, { state: string; n: number }>(
      'SELECT state, sum(n) AS n FROM job_counts WHERE (@owner IS NULL OR owner_id = @owner) GROUP BY state',
    ),
  };

  function stateChangeMessage(job: Job, from: JobState | null, eventId: number, reason: string | undefined): StateChangeMessage {
    return {
      jobId: job.id,
      type: 'state_change',
      timestamp: job.updatedAt,
      payload: {
        from,
        to: job.status,
        ownerId: job.ownerId,
        eventId,
        ...(reason === undefined ? {} : { reason: reason.slice(0, MAX_REASON_LENGTH) }),
      },
    };
  }

  const insertJob = (input: InsertJobInput): InsertJobResult => {
    const key = input.idempotencyKey ?? null;
    const hash = input.requestHash ?? null;
    if (key !== null) {
      const existing = s.byIdempotencyKey.get(input.ownerId, key);
      if (existing) {
        const job = toJob(existing);
        return existing.request_hash === hash
          ? { ok: true, created: false, job, eventId: null, outboxIds: [], outboxItems: [] }
          : { ok: false, reason: 'idempotency_conflict', job };
      }
    }
    const now = clock();
    const row = s.insert.get({
      id: uuidv7(now.getTime()),
      ownerId: input.ownerId,
      url: input.url,
      requestedDubbing: input.requestedDubbing ? 1 : 0,
      targetLang: input.targetLang,
      formatPreset: input.formatPreset,
      outputContainer: input.outputContainer,
      idempotencyKey: key,
      requestHash: hash,
      now: toIso(now),
    })!;
    const job = toJob(row);
    const eventId = events.insertEventForJobInHand(job.id, {
      type: 'created',
      level: 'info',
      message: 'Job created',
      payload: {
        url: job.url,
        requestedDubbing: job.requestedDubbing,
        targetLang: job.targetLang,
        formatPreset: job.formatPreset,
        outputContainer: job.outputContainer,
      },
      createdAt: now,
    })!;
    const added: JobAddedMessage = {
      jobId: job.id,
      type: 'job_added',
      timestamp: job.createdAt,
      payload: { url: job.url, status: job.status, ownerId: job.ownerId, eventId },
    };
    const outboxItems = outbox.append([
      // A new row is at generation 0, so this is the run at <id>_download_g0.
      { kind: 'enqueue', jobId: job.id, payload: firstStageEnqueue(job) },
      { kind: 'publish', jobId: job.id, payload: { channel: STATE_CHANNEL, message: added } },
    ]);
    return { ok: true, created: true, job, eventId, outboxIds: outboxItems.map((o) => o.id), outboxItems };
  };
  const insertTx = db.transaction(insertJob);

  const applyTransition = (jobId: string, change: StateChange): UpdateJobStateResult => {
    const p = change.patch ?? {};
    const now = clock();
    const row = s.transition.get({
      id: jobId,
      from: change.from,
      to: change.to,
      terminal: isTerminal(change.to) ? 1 : 0,
      now: toIso(now),
      setGeneration: p.generation === undefined ? 0 : 1,
      generation: p.generation ?? null,
      setAttempt: p.attempt === undefined ? 0 : 1,
      attempt: p.attempt ?? null,
      setFailedStage: p.failedStage === undefined ? 0 : 1,
      failedStage: p.failedStage ?? null,
      setError: p.error === undefined ? 0 : 1,
      errorCode: p.error?.code ?? null,
      errorMessage: p.error?.message ?? null,
      setHoldReason: p.holdReason === undefined ? 0 : 1,
      holdReason: p.holdReason ?? null,
      setCheckpoint: p.checkpoint === undefined ? 0 : 1,
      checkpoint: toJson(p.checkpoint),
      setOutputPath: p.outputPath === undefined ? 0 : 1,
      outputPath: p.outputPath ?? null,
    });
    if (!row) {
      const current = s.state.get(jobId);
      return current === undefined
        ? { ok: false, reason: 'not_found' }
        : { ok: false, reason: 'stale', current: current as JobState };
    }
    const job = toJob(row);
    const reason = change.reason;
    const eventId = events.insertEventForJobInHand(jobId, {
      type: 'state_change',
      level: change.to === 'FAILED' ? 'error' : 'info',
      message: `${change.from} -> ${change.to}${reason ? `: ${reason}` : ''}`.slice(0, MAX_REASON_LENGTH + 40),
      // from/to last: the record must say what really happened whatever the caller adds.
      payload: { ...change.eventPayload, ...(reason === undefined ? {} : { reason }), from: change.from, to: change.to },
      createdAt: now,
    })!;
    const outboxItems = outbox.append([
      { kind: 'publish', jobId, payload: { channel: STATE_CHANNEL, message: stateChangeMessage(job, change.from, eventId, reason) } },
      ...(change.outbox ?? []),
    ]);
    return { ok: true, job, eventId, outboxIds: outboxItems.map((o) => o.id), outboxItems };
  };
  const transitionTx = db.transaction(applyTransition);

  const deleteTx = db.transaction((jobId: string, extra: readonly OutboxInput[]): DeletedJob | null => {
    const media = s.mediaOf.all(jobId);
    const output = s.outputPath.get(jobId);
    const ownerId = s.delete.get(jobId);
    if (ownerId === undefined) return null;
    const paths = media.map((m) => m.path);
    if (output && !paths.includes(output)) paths.push(output);
    const removed: JobRemovedMessage = {
      jobId,
      type: 'job_removed',
      timestamp: toIso(clock()),
      payload: { ownerId },
    };
    const outboxItems = outbox.append([{ kind: 'publish', jobId, payload: { channel: STATE_CHANNEL, message: removed } }, ...extra]);
    return { ownerId, mediaPaths: paths, outboxIds: outboxItems.map((o) => o.id), outboxItems };
  });

  const detailTx = db.transaction((id: string): JobDetail | null => {
    const row = s.byId.get(id);
    if (!row) return null;
    const rows = s.latestEvents.all(id, detailEventLimit + 1);
    const eventsTruncated = rows.length > detailEventLimit;
    return {
      job: toJob(row),
      media: s.mediaOf.all(id).map(toMedia),
      events: (eventsTruncated ? rows.slice(1) : rows).map(toEvent),
      eventsTruncated,
    };
  });

  function progressParams(jobId: string, p: ProgressSnapshot) {
    return {
      id: jobId,
      stage: p.stage,
      percent: p.percent,
      speed: p.speed ?? null,
      eta: p.eta ?? null,
      step: p.step ?? null,
      updatedAt: toIso(p.updatedAt),
    };
  }
  const progressManyTx = db.transaction((batch: ReadonlyArray<{ jobId: string; progress: ProgressSnapshot }>) => {
    let n = 0;
    for (const b of batch) n += s.progress.run(progressParams(b.jobId, b.progress)).changes;
    return n;
  });

  return {
    /**
     * Accepts a job: the row (QUEUED), its 'created' event, and outbox rows to enqueue the
     * download stage and publish job_added, all in one transaction.
     */
    insertJob(input: InsertJobInput): InsertJobResult {
      // Inside a caller's transaction (a group commit) the caller owns atomicity: a throw rolls
      // its whole transaction back. A savepoint here would copy every page the insert touches.
      return db.inTransaction ? insertJob(input) : insertTx.immediate(input);
    },

    /**
     * The one transition function. Checks the transition table, updates the row only if it is
     * still in `change.from`, appends a state_change event and the outbox rows, in one
     * transaction. Refused changes write nothing.
     */
    updateJobState(jobId: string, change: StateChange): UpdateJobStateResult {
      if (!isJobState(change.from) || !isJobState(change.to) || !isTransitionAllowed(change.from, change.to)) {
        return { ok: false, reason: 'forbidden' };
      }
      return db.inTransaction ? applyTransition(jobId, change) : transitionTx.immediate(jobId, change);
    },

    getJob(id: string): Job | null {
      const row = s.byId.get(id);
      return row ? toJob(row) : null;
    },

    /** Several jobs in one statement (one read snapshot), in no particular order; missing ids are left out. */
    getJobs(ids: readonly string[]): Job[] {
      return ids.length === 0 ? [] : s.byIds.all(JSON.stringify(ids)).map(toJob);
    },

    getJobOwner(id: string): string | null {
      return s.owner.get(id) ?? null;
    },

    /** The job with its media and its most recent events (ascending id). */
    getJobById(id: string): JobDetail | null {
      // One read transaction: a consistent snapshot of job, media and events.
      return detailTx.deferred(id);
    },

    /** Checkpoint saved by the dub stage, for resume. */
    getCheckpoint(id: string): Record<string, unknown> | null {
      return fromJson(s.checkpoint.get(id));
    },

    listJobs,

    /** Job counts per state (all states present), optionally for one owner. O(states). */
    countJobsByState(ownerId: string | null = null): Record<JobState, number> {
      const out = Object.fromEntries(JOB_STATES.map((st) => [st, 0])) as Record<JobState, number>;
      for (const r of s.counts.all({ owner: ownerId })) out[r.state as JobState] = r.n;
      return out;
    },

    /**
     * Deletes the job (media and events cascade) and records a job_removed message in the
     * outbox. Returns what the caller needs to remove the files, or null when there is no job.
     */
    deleteJob(id: string, extraOutbox: readonly OutboxInput[] = []): DeletedJob | null {
      return deleteTx.immediate(id, extraOutbox);
    },

    /** Sets or clears why a QUEUED job is held back. Returns true when the value changed. */
    setHoldReason(id: string, reason: string | null): boolean {
      return s.setHold.run({ reason, now: toIso(clock()), id }).changes > 0;
    },

    setAttempt(id: string, attempt: number): boolean {
      return s.setAttempt.run(attempt, toIso(clock()), id).changes > 0;
    },

    saveCheckpoint(id: string, checkpoint: Record<string, unknown> | null): boolean {
      return s.setCheckpoint.run(toJson(checkpoint), toIso(clock()), id).changes > 0;
    },

    /** Stores the latest progress snapshot; an older snapshot than the stored one is ignored. */
    updateProgress(jobId: string, progress: ProgressSnapshot): boolean {
      return s.progress.run(progressParams(jobId, progress)).changes > 0;
    },

    /** Many snapshots in one transaction; returns how many rows changed. */
    updateProgressMany(batch: ReadonlyArray<{ jobId: string; progress: ProgressSnapshot }>): number {
      return batch.length === 0 ? 0 : progressManyTx(batch);
    },

    /** Records a stage's file; writing the same kind again replaces it. Null when the job is gone. */
    upsertMedia(jobId: string, kind: MediaKind, fields: MediaFields): Media | null {
      if (!(MEDIA_KINDS as readonly string[]).includes(kind)) throw new RangeError(`unknown media kind: ${String(kind)}`);
      const row = s.upsertMedia.get({
        jobId,
        kind,
        path: fields.path,
        sizeBytes: fields.sizeBytes ?? null,
        durationSec: fields.durationSec ?? null,
        width: fields.width ?? null,
        height: fields.height ?? null,
        videoCodec: fields.videoCodec ?? null,
        audioCodec: fields.audioCodec ?? null,
        language: fields.language ?? null,
        title: fields.title ?? null,
        sourceUrl: fields.sourceUrl ?? null,
        now: toIso(clock()),
      });
      return row ? toMedia(row) : null;
    },

    listMedia(jobId: string): Media[] {
      return s.mediaOf.all(jobId).map(toMedia);
    },

    /** Jobs in these states in creation order, after `afterId`; pages for the reconciler. */
    listJobsInStates(states: readonly JobState[], limit: number, afterId?: string | null): Job[] {
      if (states.length === 0) return [];
      const after = afterId ? (s.seqOfId.get({ id: afterId }) ?? 0) : 0;
      const n = Math.max(1, Math.trunc(limit));
      const seqs = [...new Set(states)]
        .flatMap((state) => s.stateAfter.all({ state, after, n }))
        .sort((a, b) => a - b)
        .slice(0, n);
      return seqs.length === 0 ? [] : s.bySeqs.all(JSON.stringify(seqs)).map(toJob);
    },
  };
}

export type JobsRepository = ReturnType<typeof createJobsRepository>;
