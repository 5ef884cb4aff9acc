import { PermanentError } from './errors.js';
import { runChild } from './child.js';

/**
 * Helpers for stages that run external programs (ffmpeg, ffprobe, espeak-ng, yt-dlp): run one and
 * collect its output, a cached health check, and an ffprobe reader.
 */

/** How the stage runs a program: the SDK's runChild, or a wrapper of it (tests count calls). */
export type RunChild = typeof runChild;

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
  opts: { signal: AbortSignal; what: string; onStdout?: (line: string) => void; keepOutput?: boolean },
): Promise<string[]> {
  const out: string[] = [];
  let result;
  try {
    result = await run(cmd, args, {
      signal: opts.signal,
      onStdout: (line) => {
        if (opts.keepOutput !== false) out.push(line);
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

export interface ProbedStream {
  index: number;
  codec_type?: string;
  codec_name?: string;
  disposition?: Record<string, number>;
  tags?: Record<string, string>;
}

export interface ProbeResult {
  streams: ProbedStream[];
  /** Seconds, or null when the container does not say. */
  durationSec: number | null;
}

export async function probeMedia(run: RunChild, ffprobe: string, file: string, signal: AbortSignal): Promise<ProbeResult> {
  const out = await runOrThrow(
    run,
    ffprobe,
    [
      '-v', 'error',
      '-show_entries', 'stream=index,codec_type,codec_name:stream_disposition=default,attached_pic:stream_tags=language,title,handler_name:format=duration',
      '-of', 'json',
      file,
    ],
    { signal, what: `probe ${file}` },
  );
  const parsed = JSON.parse(out.join('\n') || '{}') as { streams?: ProbedStream[]; format?: { duration?: string } };
  const d = Number(parsed.format?.duration);
  return { streams: parsed.streams ?? [], durationSec: Number.isFinite(d) && d > 0 ? d : null };
}
