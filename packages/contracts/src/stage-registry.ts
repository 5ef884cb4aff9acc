import type { Job, MediaKind } from './jobs.js';
import { STAGE_STATES, STAGES, nextStage, type JobState, type Stage } from './states.js';
import {
  STAGE_PAYLOAD_SCHEMAS,
  STAGE_RESULT_SCHEMAS,
  stageJobId,
  type DownloadPayload,
  type DownloadResult,
  type DubCheckpoint,
  type DubPayload,
  type DubResult,
  type MuxPayload,
  type MuxResult,
  type StagePayloads,
  type StageResults,
} from './stages.js';

/**
 * The stage registry: for each stage, how its payload is built from a job row and what earlier
 * stages recorded, its result schema, the media rows its result records, its states and the
 * stage after it. Pure data and functions (no I/O): the api, the db layer and the scheduler call
 * it, and nothing else builds a stage payload or decides a next stage. Schemas stay in
 * stages.ts and the state machine in states.ts; this module only puts them together.
 */

/** The columns of a job a stage needs. `generation` is the one the run belongs to. */
export type StageJob = Pick<Job, 'id' | 'url' | 'requestedDubbing' | 'targetLang' | 'formatPreset' | 'outputContainer' | 'generation'>;

/** A media row as a payload reads it (a `Media` from SQLite fits). */
export interface StageMedia {
  kind: MediaKind;
  path: string;
  language?: string | null;
}

/** The columns of a media row a stage's result fills; absent or null leaves the column NULL. */
export interface MediaRowFields {
  path: string;
  sizeBytes?: number | null;
  durationSec?: number | null;
  width?: number | null;
  height?: number | null;
  videoCodec?: string | null;
  audioCodec?: string | null;
  language?: string | null;
  title?: string | null;
  sourceUrl?: string | null;
}

/** One media row to write (the db layer upserts it by job and kind). */
export interface StageMediaRow {
  kind: MediaKind;
  fields: MediaRowFields;
}

/** What earlier stages left, as a payload needs it. */
export interface StageInputs {
  /** The job's media rows; later rows of a kind win. */
  media?: readonly StageMedia[];
  /** The dub checkpoint stored in SQLite (written by the dub worker), when resuming. */
  checkpoint?: Record<string, unknown> | null;
}

export interface StageDefinition<S extends Stage> {
  readonly stage: S;
  readonly states: { readonly running: JobState; readonly done: JobState };
  readonly payloadSchema: (typeof STAGE_PAYLOAD_SCHEMAS)[S];
  readonly resultSchema: (typeof STAGE_RESULT_SCHEMAS)[S];
  /** The payload of a run, or null when a media row it needs is missing. */
  payload(job: StageJob, inputs: StageInputs): StagePayloads[S] | null;
  /** The media rows a (validated) result records. */
  mediaRows(job: StageJob, result: StageResults[S]): StageMediaRow[];
  /** How the completion reads in the job's history. */
  summary(result: StageResults[S]): string;
  /** The file the job delivers, when this stage writes it. */
  outputPath(result: StageResults[S]): string | null;
}

function common(job: StageJob) {
  return { jobId: job.id, generation: job.generation, workDir: job.id };
}

function find(media: readonly StageMedia[] | undefined, kind: MediaKind): StageMedia | undefined {
  // The last row of a kind: a stage's fresh rows are appended after what SQLite held.
  return media?.findLast((m) => m.kind === kind);
}

function downloadPayload(job: StageJob): DownloadPayload {
  // Subtitles are only worth fetching when the pipeline dubs.
  return { ...common(job), url: job.url, formatPreset: job.formatPreset, wantSubtitles: job.requestedDubbing };
}

function dubPayload(job: StageJob, inputs: StageInputs): DubPayload | null {
  const source = find(inputs.media, 'source');
  if (!source) return null;
  const subtitles = find(inputs.media, 'subtitles');
  const checkpoint = inputs.checkpoint;
  return {
    ...common(job),
    mediaPath: source.path,
    ...(subtitles ? { subtitlePath: subtitles.path } : {}),
    // The api refuses dubbing without a language; the fallback only covers older rows.
    targetLang: job.targetLang ?? 'en',
    // Stored as the dub worker wrote it; the worker checks its payload against the schema.
    ...(checkpoint ? { checkpoint: checkpoint as DubCheckpoint } : {}),
  };
}

function muxPayload(job: StageJob, inputs: StageInputs): MuxPayload | null {
  const source = find(inputs.media, 'source');
  if (!source) return null;
  const dubbed = find(inputs.media, 'dubbed_audio');
  return {
    ...common(job),
    mediaPath: source.path,
    ...(dubbed ? { dubbedAudioPath: dubbed.path, ...(dubbed.language ? { dubbedLanguage: dubbed.language } : {}) } : {}),
    outputContainer: job.outputContainer,
  };
}

function downloadRows(job: StageJob, r: DownloadResult): StageMediaRow[] {
  const source: StageMediaRow = {
    kind: 'source',
    fields: {
      path: r.mediaPath,
      sizeBytes: r.sizeBytes,
      durationSec: r.durationSec ?? null,
      width: r.width ?? null,
      height: r.height ?? null,
      videoCodec: r.videoCodec ?? null,
      audioCodec: r.audioCodec ?? null,
      title: r.title ?? null,
      sourceUrl: job.url,
    },
  };
  return r.subtitlePath ? [source, { kind: 'subtitles', fields: { path: r.subtitlePath } }] : [source];
}

function dubRows(_job: StageJob, r: DubResult): StageMediaRow[] {
  return [{ kind: 'dubbed_audio', fields: { path: r.audioPath, language: r.language, durationSec: r.durationSec ?? null } }];
}

function muxRows(_job: StageJob, r: MuxResult): StageMediaRow[] {
  return [{ kind: 'output', fields: { path: r.outputPath, sizeBytes: r.sizeBytes, durationSec: r.durationSec ?? null } }];
}

export const STAGE_REGISTRY: { readonly [S in Stage]: StageDefinition<S> } = {
  download: {
    stage: 'download',
    states: STAGE_STATES.download,
    payloadSchema: STAGE_PAYLOAD_SCHEMAS.download,
    resultSchema: STAGE_RESULT_SCHEMAS.download,
    payload: downloadPayload,
    mediaRows: downloadRows,
    summary: () => 'download finished',
    outputPath: () => null,
  },
  dub: {
    stage: 'dub',
    states: STAGE_STATES.dub,
    payloadSchema: STAGE_PAYLOAD_SCHEMAS.dub,
    resultSchema: STAGE_RESULT_SCHEMAS.dub,
    payload: dubPayload,
    mediaRows: dubRows,
    summary: (r) => `dubbed ${r.cues} cues into ${r.language}`,
    outputPath: () => null,
  },
  mux: {
    stage: 'mux',
    states: STAGE_STATES.mux,
    payloadSchema: STAGE_PAYLOAD_SCHEMAS.mux,
    resultSchema: STAGE_RESULT_SCHEMAS.mux,
    payload: muxPayload,
    mediaRows: muxRows,
    summary: (r) => `muxed into ${r.container}`,
    outputPath: (r) => r.outputPath,
  },
};

/** The stage every job starts with: on accept and on retry. */
export const FIRST_STAGE = STAGES[0];

/** A stage run as the outbox enqueues it: the BullMQ job id (deterministic) and its payload. */
export type StageEnqueue<S extends Stage = Stage> = {
  [K in S]: { stage: K; queueJobId: string; payload: StagePayloads[K] };
}[S];

/** The run of `stage` for `job` (at `job.generation`), or null when a media row it needs is missing. */
export function stageEnqueue<S extends Stage>(stage: S, job: StageJob, inputs: StageInputs = {}): StageEnqueue<S> | null {
  const payload = STAGE_REGISTRY[stage].payload(job, inputs);
  if (payload === null) return null;
  // TypeScript cannot pair a generic S with its payload through the mapped union; they match here.
  return { stage, queueJobId: stageJobId(job.id, stage, job.generation), payload } as unknown as StageEnqueue<S>;
}

/** The first run of a job: it needs nothing recorded, so it always exists. */
export function firstStageEnqueue(job: StageJob): StageEnqueue<typeof FIRST_STAGE> {
  return { stage: FIRST_STAGE, queueJobId: stageJobId(job.id, FIRST_STAGE, job.generation), payload: downloadPayload(job) };
}

/** The stage queued when `stage` succeeds, or null when the job is then complete. */
export function stageAfter(stage: Stage, job: Pick<StageJob, 'requestedDubbing'>): Stage | null {
  return nextStage({ state: STAGE_STATES[stage].done, requestedDubbing: job.requestedDubbing });
}

/** The media rows as a payload reads them. */
export function asStageMedia(rows: readonly StageMediaRow[]): StageMedia[] {
  return rows.map((r) => ({ kind: r.kind, path: r.fields.path, language: r.fields.language ?? null }));
}

export interface StageCompletion {
  /** Rows to write in the completion's transaction. */
  media: StageMediaRow[];
  /** The next run to enqueue in the same transaction, or null when the job is complete. */
  next: StageEnqueue | null;
  summary: string;
  outputPath: string | null;
}

/**
 * What a stage's (validated) result records and queues next. `recorded` reads the job's media
 * rows; it is called only when the next payload needs rows from before this stage. Null when a
 * row the next stage needs is missing.
 */
export function completeStage<S extends Stage>(
  stage: S,
  job: StageJob,
  result: StageResults[S],
  recorded: () => readonly StageMedia[],
): StageCompletion | null {
  const def = STAGE_REGISTRY[stage];
  const media = def.mediaRows(job, result);
  const done = { media, summary: def.summary(result), outputPath: def.outputPath(result) };
  const after = stageAfter(stage, job);
  if (after === null) return { ...done, next: null };
  // After the first stage its own rows are all this generation has: rows an older generation
  // left (e.g. subtitles a retry did not fetch again) must not leak into the next payload.
  const earlier = stage === FIRST_STAGE ? [] : recorded();
  const next = stageEnqueue(after, job, { media: [...earlier, ...asStageMedia(media)] });
  return next === null ? null : { ...done, next };
}
