import { stringField } from '@dubgate/runtime/config';
import { runOrThrow, type RunChild, type ProbedStream } from '@dubgate/worker-sdk/tools';

// Running programs is shared with the other workers (worker-sdk); this module keeps the dub's own.
export { runOrThrow, toolHealthCheck, type RunChild, type ProbedStream } from '@dubgate/worker-sdk/tools';

/** Program names: the defaults, or what FFMPEG_PATH and friends say. */
export interface Tools {
  ffmpeg: string;
  ffprobe: string;
  espeak: string;
}

/** The stage's own settings, validated with the worker's common ones by runStageWorkerProcess. */
export const TOOL_FIELDS = [
  stringField('FFMPEG_PATH', { doc: 'the ffmpeg program (a name on PATH or a path)', default: 'ffmpeg', minLength: 1 }),
  stringField('FFPROBE_PATH', { doc: 'the ffprobe program (a name on PATH or a path)', default: 'ffprobe', minLength: 1 }),
  stringField('ESPEAK_NG_PATH', { doc: 'the espeak-ng program (a name on PATH or a path)', default: 'espeak-ng', minLength: 1 }),
] as const;

export function toolsFromConfig(config: { FFMPEG_PATH: string; FFPROBE_PATH: string; ESPEAK_NG_PATH: string }): Tools {
  return {
    ffmpeg: config.FFMPEG_PATH,
    ffprobe: config.FFPROBE_PATH,
    espeak: config.ESPEAK_NG_PATH,
  };
}

/** Defaults for library use and tests (the process reads them through TOOL_FIELDS). */
export function defaultTools(env: NodeJS.ProcessEnv = process.env): Tools {
  return {
    ffmpeg: env.FFMPEG_PATH || 'ffmpeg',
    ffprobe: env.FFPROBE_PATH || 'ffprobe',
    espeak: env.ESPEAK_NG_PATH || 'espeak-ng',
  };
}

/** Media duration in seconds from the container, or null when ffprobe does not know it. */
export async function probeDuration(run: RunChild, ffprobe: string, file: string, signal: AbortSignal): Promise<number | null> {
  const out = await runOrThrow(
    run,
    ffprobe,
    ['-v', 'error', '-show_entries', 'format=duration', '-of', 'default=noprint_wrappers=1:nokey=1', file],
    { signal, what: 'read the media duration' },
  );
  const value = Number(out.join('').trim());
  return Number.isFinite(value) && value > 0 ? value : null;
}

export async function probeStreams(run: RunChild, ffprobe: string, file: string, signal: AbortSignal): Promise<ProbedStream[]> {
  const out = await runOrThrow(
    run,
    ffprobe,
    ['-v', 'error', '-show_entries', 'stream=index,codec_type,codec_name:stream_tags=language', '-of', 'json', file],
    { signal, what: 'read the media streams' },
  );
  const parsed = JSON.parse(out.join('\n') || '{}') as { streams?: ProbedStream[] };
  return parsed.streams ?? [];
}
