export { runOrThrow, toolHealthCheck, probeMedia, type RunChild, type ProbedStream, type ProbeResult } from '@dubgate/worker-sdk/tools';
import { stringField } from '@dubgate/runtime/config';

/** Program names: the defaults, or what FFMPEG_PATH and friends say. */
export interface Tools {
  ffmpeg: string;
  ffprobe: string;
}

/** The stage's own settings, validated with the worker's common ones by runStageWorkerProcess. */
export const TOOL_FIELDS = [
  stringField('FFMPEG_PATH', { doc: 'the ffmpeg program (a name on PATH or a path)', default: 'ffmpeg', minLength: 1 }),
  stringField('FFPROBE_PATH', { doc: 'the ffprobe program (a name on PATH or a path)', default: 'ffprobe', minLength: 1 }),
] as const;

export function toolsFromConfig(config: { FFMPEG_PATH: string; FFPROBE_PATH: string }): Tools {
  return {
    ffmpeg: config.FFMPEG_PATH,
    ffprobe: config.FFPROBE_PATH,
  };
}

/** Defaults for library use and tests (the process reads them through TOOL_FIELDS). */
export function defaultTools(env: NodeJS.ProcessEnv = process.env): Tools {
  return {
    ffmpeg: env.FFMPEG_PATH || 'ffmpeg',
    ffprobe: env.FFPROBE_PATH || 'ffprobe',
  };
}
