import type { FormatPreset, Job, JobEventRecord, JobEventType, LogLevel, Media, MediaKind, OutputContainer } from '@dubgate/contracts/jobs';
import type { JobState, Stage } from '@dubgate/contracts/states';
import { fromJson } from './json.js';

/** A `jobs` row as SQLite returns it. */
export interface JobRow {
  seq: number;
  id: string;
  owner_id: string;
  url: string;
  requested_dubbing: number;
  target_lang: string | null;
  format_preset: string;
  output_container: string;
  state: string;
  generation: number;
  attempt: number;
  failed_stage: string | null;
  error_code: string | null;
  error_message: string | null;
  hold_reason: string | null;
  checkpoint: string | null;
  progress_stage: string | null;
  progress_percent: number | null;
  progress_speed: number | null;
  progress_eta: number | null;
  progress_step: string | null;
  progress_updated_at: string | null;
  output_path: string | null;
  title: string | null;
  idempotency_key: string | null;
  request_hash: string | null;
  created_at: string;
  updated_at: string;
}

export function toJob(row: JobRow): Job {
  return {
    id: row.id,
    ownerId: row.owner_id,
    url: row.url,
    requestedDubbing: row.requested_dubbing === 1,
    targetLang: row.target_lang,
    formatPreset: row.format_preset as FormatPreset,
    outputContainer: row.output_container as OutputContainer,
    status: row.state as JobState,
    generation: row.generation,
    attempt: row.attempt,
    failedStage: row.failed_stage as Stage | null,
    error: row.error_code === null ? null : { code: row.error_code, message: row.error_message ?? '' },
    holdReason: row.hold_reason,
    progress:
      row.progress_stage === null || row.progress_updated_at === null
        ? null
        : {
            stage: row.progress_stage as Stage,
            percent: row.progress_percent ?? 0,
            speed: row.progress_speed,
            eta: row.progress_eta,
            step: row.progress_step,
            updatedAt: row.progress_updated_at,
          },
    outputPath: row.output_path,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export interface MediaRow {
  id: number;
  job_id: string;
  kind: string;
  path: string;
  size_bytes: number | null;
  duration_sec: number | null;
  width: number | null;
  height: number | null;
  video_codec: string | null;
  audio_codec: string | null;
  language: string | null;
  title: string | null;
  source_url: string | null;
  created_at: string;
}

export function toMedia(row: MediaRow): Media {
  return {
    id: row.id,
    jobId: row.job_id,
    kind: row.kind as MediaKind,
    path: row.path,
    sizeBytes: row.size_bytes,
    durationSec: row.duration_sec,
    width: row.width,
    height: row.height,
    videoCodec: row.video_codec,
    audioCodec: row.audio_codec,
    language: row.language,
    title: row.title,
    sourceUrl: row.source_url,
    createdAt: row.created_at,
  };
}

export interface EventRow {
  id: number;
  job_id: string;
  type: string;
  level: string;
  message: string;
  payload: string | null;
  created_at: string;
}

export function toEvent(row: EventRow): JobEventRecord {
  return {
    id: row.id,
    jobId: row.job_id,
    type: row.type as JobEventType,
    level: row.level as LogLevel,
    message: row.message,
    payload: fromJson<Record<string, unknown>>(row.payload),
    createdAt: row.created_at,
  };
}
