import { Type, type Static } from '@sinclair/typebox';
import { JobStateSchema, StageSchema } from './states.js';

/**
 * Format presets a download worker understands. yt-dlp mapping lives in the worker;
 * plain http(s) downloads ignore the preset.
 */
export const FORMAT_PRESETS = ['best', 'bestvideo+bestaudio', '1080p', '720p', '480p', 'audio-only', 'smallest'] as const;
export type FormatPreset = (typeof FORMAT_PRESETS)[number];
export const DEFAULT_FORMAT_PRESET: FormatPreset = 'best';

/** Containers the mux stage writes. */
export const OUTPUT_CONTAINERS = ['mp4', 'mkv', 'webm', 'mov'] as const;
export type OutputContainer = (typeof OUTPUT_CONTAINERS)[number];
export const DEFAULT_OUTPUT_CONTAINER: OutputContainer = 'mp4';

export const MAX_URL_LENGTH = 2048;

export const FormatPresetSchema = Type.Union(
  FORMAT_PRESETS.map((p) => Type.Literal(p))
);
export const OutputContainerSchema = Type.Union(
  OUTPUT_CONTAINERS.map((c) => Type.Literal(c))
);
/** BCP 47 language tag, e.g. `en`, `pt-BR`, `zh-Hans`. */
export const LanguageTagSchema = Type.String({
  pattern: '^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$',
  maxLength: 35,
  description: 'BCP 47 language tag, e.g. "en", "pt-BR"',
});

/** Body of `POST /api/jobs`. Unknown properties are refused. */
export const CreateJobBodySchema = Type.Object(
  {
    url: Type.String({ minLength: 1, maxLength: MAX_URL_LENGTH, description: 'http(s) URL of the video' }),
    requestedDubbing: Type.Optional(Type.Boolean({ default: false })),
    targetLang: Type.Optional(LanguageTagSchema),
    formatPreset: Type.Optional(FormatPresetSchema),
    outputContainer: Type.Optional(OutputContainerSchema),
  },
  { additionalProperties: false },
);
export type CreateJobBody = Static<typeof CreateJobBodySchema>;

export const ProgressSnapshotSchema = Type.Object(
  {
    stage: StageSchema,
    percent: Type.Number({ minimum: 0, maximum: 100 }),
    speed: Type.Union([Type.Number({ minimum: 0 }), Type.Null()], { description: 'bytes per second' }),
    eta: Type.Union([Type.Number({ minimum: 0 }), Type.Null()], { description: 'seconds' }),
    step: Type.Union([Type.String({ maxLength: 200 }), Type.Null()]),
    updatedAt: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);
export type ProgressSnapshot = Static<typeof ProgressSnapshotSchema>;

/** A job as the API shows it. Timestamps are ISO 8601 UTC. */
export const JobSchema = Type.Object(
  {
    id: Type.String({ description: 'Job id (UUID v7, sortable by creation time)' }),
    ownerId: Type.String(),
    url: Type.String(),
    requestedDubbing: Type.Boolean(),
    targetLang: Type.Union([Type.String(), Type.Null()]),
    formatPreset: FormatPresetSchema,
    outputContainer: OutputContainerSchema,
    status: JobStateSchema,
    /** Incremented by every retry; stage job ids include it so a retry gets fresh ids. */
    generation: Type.Integer({ minimum: 0 }),
    /** Attempts made at the current stage (1 on first run). */
    attempt: Type.Integer({ minimum: 0 }),
    failedStage: Type.Union([StageSchema, Type.Null()]),
    error: Type.Union([
      Type.Object({ code: Type.String(), message: Type.String() }, { additionalProperties: false }),
      Type.Null(),
    ]),
    /** Why a QUEUED job is held back (disk space, queue depth), or null. */
    holdReason: Type.Union([Type.String(), Type.Null()]),
    progress: Type.Union([ProgressSnapshotSchema, Type.Null()]),
    outputPath: Type.Union([Type.String(), Type.Null()]),
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);
export type Job = Static<typeof JobSchema>;

export const MEDIA_KINDS = ['source', 'subtitles', 'dubbed_audio', 'output'] as const;
export const MediaKindSchema = Type.Union(
  MEDIA_KINDS.map((k) => Type.Literal(k))
);
export type MediaKind = (typeof MEDIA_KINDS)[number];

/** A file the pipeline produced for a job. `path` is relative to MEDIA_ROOT. */
export const MediaSchema = Type.Object(
  {
    id: Type.Integer(),
    jobId: Type.String(),
    kind: MediaKindSchema,
    path: Type.String(),
    sizeBytes: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
    durationSec: Type.Union([Type.Number({ minimum: 0 }), Type.Null()]),
    width: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
    height: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
    videoCodec: Type.Union([Type.String(), Type.Null()]),
    audioCodec: Type.Union([Type.String(), Type.Null()]),
    language: Type.Union([Type.String(), Type.Null()]),
    title: Type.Union([Type.String(), Type.Null()]),
    sourceUrl: Type.Union([Type.String(), Type.Null()]),
    createdAt: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);
export type Media = Static<typeof MediaSchema>;

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LogLevelSchema = Type.Union(
  LOG_LEVELS.map((l) => Type.Literal(l))
);

/** Kinds of rows in `job_events`. */
export const JOB_EVENT_TYPES = ['created', 'state_change', 'log', 'error', 'progress', 'control', 'hold', 'repair'] as const;
export type JobEventType = (typeof JOB_EVENT_TYPES)[number];
export const JobEventTypeSchema = Type.Union(
  JOB_EVENT_TYPES.map((t) => Type.Literal(t))
);

/** One row of a job's event history. `id` increases monotonically across all jobs. */
export const JobEventRecordSchema = Type.Object(
  {
    id: Type.Integer({ minimum: 1 }),
    jobId: Type.String(),
    type: JobEventTypeSchema,
    level: LogLevelSchema,
    message: Type.String(),
    payload: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
    createdAt: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);
export type JobEventRecord = Static<typeof JobEventRecordSchema>;

/** `GET /api/jobs/:id`: the job with its media and its (most recent) event history. */
export const JobDetailSchema = Type.Object(
  {
    job: JobSchema,
    media: Type.Array(MediaSchema),
    events: Type.Array(JobEventRecordSchema),
    /** True when older events exist than those shown; page them with `GET /api/jobs/:id/logs`. */
    eventsTruncated: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type JobDetail = Static<typeof JobDetailSchema>;
