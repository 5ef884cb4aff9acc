import { PermanentError } from '@dubgate/worker-sdk/errors';
import { runChild } from '@dubgate/worker-sdk/child';
import { stringField } from '@dubgate/runtime/config';

/** How the stage runs a program: the SDK's runChild, or a wrapper of it (tests count calls). */
export type RunChild = typeof runChild;

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

/**
 * A /healthz check that the program runs (`<cmd> <versionArg>`); a good answer is remembered for
 * five minutes so health probes do not spawn a process each time.
 */
export function toolHealthCheck(cmd: () => string, versionArg: string): () => Promise<true> {
  let okUntil = 0;
  return async () => {
    if (Date.now() < okUntil) return true;
    const result = await runChild(cmd(), [versionArg], { signal: AbortSignal.timeout(2_000) });
    if (result.code !== 0) throw new Error(`${cmd()} ${versionArg} exited with code ${result.code}`);
    okUntil = Date.now() + 5 * 60_000;
    return true;
  };
}

/**
 * Runs a program and collects its stdout; a non-zero exit throws with the end of its stderr.
 * A program that is not installed is a permanent error naming what to install.
 */
export async function runOrThrow(
  run: RunChild,
  cmd: string,
  args: string[],
  opts: { signal: AbortSignal; what: string; onStdout?: (line: string) => void },
): Promise<string[]> {
  const out: string[] = [];
  let result;
  try {
    result = await run(cmd, args, {
      signal: opts.signal,
      onStdout: (line) => {
        out.push(line);
        opts.onStdout?.(line);
      },
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException)?.code === 'ENOENT') {
      throw new PermanentError(`TOOL_MISSING: ${cmd} is not installed (needed to ${opts.what})`, 'TOOL_MISSING');
    }
    throw err;
  }
  if (result.code !== 0) {
    const tail = result.stderrTail.trim().split('\n').slice(-5).join(' | ');
    throw new Error(`${opts.what} failed: ${cmd} exited with code ${result.code}${tail ? `: ${tail}` : ''}`);
  }
  return out;
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

export interface ProbedStream {
  index: number;
  codec_type?: string;
  codec_name?: string;
  tags?: Record<string, string>;
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
