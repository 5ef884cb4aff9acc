import { Type, type Static } from '@sinclair/typebox';
import { FormatPresetSchema, OutputContainerSchema, LanguageTagSchema } from './jobs.js';
import type { Stage } from './states.js';

/**
 * What crosses a BullMQ queue: the payload a worker receives (`job.data`) and the result it
 * returns (`job.returnvalue`). Queues `download`, `dub`, `mux` with prefix `q`.
 * Every path is relative to MEDIA_ROOT and inside `<jobId>/`.
 */
export const QUEUE_PREFIX = 'q';

const JobId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' });
const RelativePath = Type.String({
  minLength: 1,
  maxLength: 1024,
  // No absolute paths, no parent segments: workers and the API resolve these under MEDIA_ROOT.
  pattern: '^(?!/)(?!.*(^|/)\\.\\.(/|$))[^\\0]+$',
  description: 'Path relative to MEDIA_ROOT, inside the job directory',
});

const common = {
  jobId: JobId,
  /** Generation of the job (bumped by retry). Results from an older generation are ignored. */
  generation: Type.Integer({ minimum: 0 }),
  /** Directory for this job's files, relative to MEDIA_ROOT (always the job id). */
  workDir: RelativePath,
};

export const DownloadPayloadSchema = Type.Object(
  {
    ...common,
    url: Type.String({ maxLength: 2048 }),
    formatPreset: FormatPresetSchema,
    /** Whether the downstream pipeline dubs: the downloader then also fetches subtitles when it can. */
    wantSubtitles: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type DownloadPayload = Static<typeof DownloadPayloadSchema>;

export const DownloadResultSchema = Type.Object(
  {
    mediaPath: RelativePath,
    sizeBytes: Type.Integer({ minimum: 0 }),
    title: Type.Optional(Type.String({ maxLength: 1000 })),
    durationSec: Type.Optional(Type.Number({ minimum: 0 })),
    width: Type.Optional(Type.Integer({ minimum: 0 })),
    height: Type.Optional(Type.Integer({ minimum: 0 })),
    videoCodec: Type.Optional(Type.String({ maxLength: 64 })),
    audioCodec: Type.Optional(Type.String({ maxLength: 64 })),
    subtitlePath: Type.Optional(RelativePath),
  },
  { additionalProperties: false },
);
export type DownloadResult = Static<typeof DownloadResultSchema>;

/** Written by the dub worker after each finished cue; handed back on resume. */
export const DubCheckpointSchema = Type.Object(
  {
    /** Number of cues fully rendered, in order; resume starts at this index. */
    cuesDone: Type.Integer({ minimum: 0 }),
    cuesTotal: Type.Integer({ minimum: 0 }),
    /** Worker-specific state needed to continue (e.g. partial track path). */
    state: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);
export type DubCheckpoint = Static<typeof DubCheckpointSchema>;

export const DubPayloadSchema = Type.Object(
  {
    ...common,
    mediaPath: RelativePath,
    subtitlePath: Type.Optional(RelativePath),
    targetLang: LanguageTagSchema,
    /** Present when resuming a failed dub. */
    checkpoint: Type.Optional(DubCheckpointSchema),
  },
  { additionalProperties: false },
);
export type DubPayload = Static<typeof DubPayloadSchema>;

export const DubResultSchema = Type.Object(
  {
    audioPath: RelativePath,
    language: LanguageTagSchema,
    cues: Type.Integer({ minimum: 0 }),
    durationSec: Type.Optional(Type.Number({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export type DubResult = Static<typeof DubResultSchema>;

export const MuxPayloadSchema = Type.Object(
  {
    ...common,
    mediaPath: RelativePath,
    dubbedAudioPath: Type.Optional(RelativePath),
    dubbedLanguage: Type.Optional(LanguageTagSchema),
    outputContainer: OutputContainerSchema,
  },
  { additionalProperties: false },
);
export type MuxPayload = Static<typeof MuxPayloadSchema>;

export const MuxResultSchema = Type.Object(
  {
    outputPath: RelativePath,
    container: OutputContainerSchema,
    sizeBytes: Type.Integer({ minimum: 0 }),
    durationSec: Type.Optional(Type.Number({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export type MuxResult = Static<typeof MuxResultSchema>;

export interface StagePayloads {
  download: DownloadPayload;
  dub: DubPayload;
  mux: MuxPayload;
}
export interface StageResults {
  download: DownloadResult;
  dub: DubResult;
  mux: MuxResult;
}

export const STAGE_PAYLOAD_SCHEMAS = {
  download: DownloadPayloadSchema,
  dub: DubPayloadSchema,
  mux: MuxPayloadSchema,
} as const satisfies Record<Stage, unknown>;

export const STAGE_RESULT_SCHEMAS = {
  download: DownloadResultSchema,
  dub: DubResultSchema,
  mux: MuxResultSchema,
} as const satisfies Record<Stage, unknown>;

/**
 * A worker marks an error permanent (no retry) by failing the job with BullMQ's
 * UnrecoverableError, or, from a client without it, a failedReason starting with this prefix.
 */
export const PERMANENT_ERROR_PREFIX = 'PERMANENT:';

/**
 * Deterministic BullMQ job id of one run of a stage: adding it twice adds once.
 * BullMQ refuses ':' in custom ids, and ids that are plain integers; this has neither.
 * `generation` is bumped by retry and resume, so those get fresh ids.
 */
export function stageJobId(jobId: string, stage: Stage, generation: number): string {
  return `${jobId}_${stage}_g${generation}`;
}

/** Inverse of stageJobId, or null for an id this system did not make. */
export function parseStageJobId(id: string): { jobId: string; stage: Stage; generation: number } | null {
  // The suffix is anchored, so a job id may itself contain '_'.
  const m = /^([A-Za-z0-9_-]+)_(download|dub|mux)_g(\d+)$/.exec(id);
  if (!m) return null;
  return { jobId: m[1]!, stage: m[2] as Stage, generation: Number(m[3]) };
}
