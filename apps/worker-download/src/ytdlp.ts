/**
 * yt-dlp for URLs that are web pages rather than media files. It runs in a private directory
 * (`<jobDir>/.yt-dlp/`), so nothing it leaves half-done can be taken for the source file; the
 * finished file is moved to `<jobDir>/source.<ext>`.
 */
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import type { FormatPreset } from '@dubgate/contracts/jobs';
import { PermanentError, isCanceled } from '@dubgate/worker-sdk/errors';
import { runChild } from '@dubgate/worker-sdk/child';
import type { ProgressUpdate } from '@dubgate/worker-sdk/progress';

/** yt-dlp `-f` selection for each format preset. */
export const YTDLP_FORMATS: Record<FormatPreset, string> = {
  best: 'bv*+ba/b',
  'bestvideo+bestaudio': 'bv+ba/b',
  '1080p': 'bv*[height<=1080]+ba/b[height<=1080]',
  '720p': 'bv*[height<=720]+ba/b[height<=720]',
  '480p': 'bv*[height<=480]+ba/b[height<=480]',
  'audio-only': 'ba/b',
  smallest: 'wv*+wa/w',
};

export function formatSelection(preset: FormatPreset): string {
  return YTDLP_FORMATS[preset] ?? YTDLP_FORMATS.best;
}

const UNITS: Record<string, number> = {
  B: 1,
  KiB: 2 ** 10,
  MiB: 2 ** 20,
  GiB: 2 ** 30,
  TiB: 2 ** 40,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
};

function bytes(value: string | undefined, unit: string | undefined): number | null {
  if (value === undefined || unit === undefined) return null;
  const factor = UNITS[unit];
  const n = Number(value);
  return factor !== undefined && Number.isFinite(n) ? Math.round(n * factor) : null;
}

function seconds(eta: string | undefined): number | null {
  if (!eta || !/^\d+(:\d+){0,2}$/.test(eta)) return null;
  return eta.split(':').reduce((acc, part) => acc * 60 + Number(part), 0);
}

export interface YtDlpProgress {
  percent: number;
  totalBytes: number | null;
  /** Bytes per second. */
  speed: number | null;
  /** Seconds left. */
  eta: number | null;
}

const PROGRESS =
  /^\[download\]\s+([\d.]+)%\s+of\s+~?\s*([\d.]+)\s*([KMGT]i?B|B)(?:\s+in\s+[\d:]+)?(?:\s+at\s+(?:([\d.]+)\s*([KMGT]i?B|B)\/s|Unknown(?: B\/s| speed)?))?(?:\s+ETA\s+([\d:]+|Unknown))?/;

/**
 * One `--newline` progress line of yt-dlp, e.g.
 * `[download]  42.5% of ~  10.00MiB at    1.00MiB/s ETA 00:05 (frag 3/10)`; null for other lines.
 */
export function parseYtDlpProgress(line: string): YtDlpProgress | null {
  const m = PROGRESS.exec(line.trim());
  if (!m) return null;
  const percent = Number(m[1]);
  if (!Number.isFinite(percent)) return null;
  return {
    percent: Math.min(100, Math.max(0, percent)),
    totalBytes: bytes(m[2], m[3]),
    speed: bytes(m[4], m[5]),
    eta: seconds(m[6]),
  };
}

const FILE_MARK = 'dubgate-file:';
const TITLE_MARK = 'dubgate-title:';

export interface YtDlpRun {
  url: string;
  preset: FormatPreset;
  wantSubtitles: boolean;
  /** Absolute job directory; yt-dlp works in `<workDir>/.yt-dlp`. */
  workDir: string;
  maxBytes: number;
  bin: string;
  signal: AbortSignal;
  env?: NodeJS.ProcessEnv;
  progress(p: ProgressUpdate): void;
  log(level: 'debug' | 'info' | 'warn' | 'error', message: string): void;
}

export interface YtDlpResult {
  /** Absolute path of the finished media file (`<workDir>/source.<ext>`). */
  mediaFile: string;
  /** Absolute path of the subtitle file (`<workDir>/source.srt`), when one was fetched. */
  subtitleFile?: string;
  title?: string;
}

export function ytDlpArgs(run: Pick<YtDlpRun, 'url' | 'preset' | 'wantSubtitles' | 'maxBytes'>, tmpDir: string): string[] {
  const args = [
    '--newline',
    '--progress',
    '--no-playlist',
    '--no-mtime',
    '--no-exec',
    '--restrict-filenames',
    '--socket-timeout',
    '30',
    '--max-filesize',
    String(run.maxBytes),
    '-f',
    formatSelection(run.preset),
    '-o',
    join(tmpDir, 'source.%(ext)s'),
    '--print',
    `after_move:${FILE_MARK}%(filepath)s`,
    '--print',
    `after_move:${TITLE_MARK}%(title)s`,
  ];
  if (run.wantSubtitles) args.push('--write-subs', '--sub-langs', 'all', '--convert-subs', 'srt');
  args.push('--', run.url);
  return args;
}

/** Picks one subtitle file among yt-dlp's `source.<lang>.srt`: English first, else the first by name. */
export function pickSubtitle(files: string[]): string | undefined {
  const srt = files.filter((f) => f.endsWith('.srt')).sort();
  return srt.find((f) => /\.en(-[A-Za-z]+)?\.srt$/.test(f)) ?? srt[0];
}

/**
 * Runs yt-dlp; progress goes to `run.progress`. On a clean exit the file moves to
 * `<workDir>/source.<ext>` and the private directory is removed. Aborted or failed for good: the
 * private directory is removed. Any other failure keeps it, so a retry continues its `.part` files.
 */
export async function runYtDlp(run: YtDlpRun): Promise<YtDlpResult> {
  const tmpDir = join(run.workDir, '.yt-dlp');
  let printedFile: string | undefined;
  let title: string | undefined;
  let fileIndex = 0;
  let lastPercent = -1;
  const onLine = (line: string) => {
    if (line.startsWith(FILE_MARK)) {
      printedFile = line.slice(FILE_MARK.length).trim();
      return;
    }
    if (line.startsWith(TITLE_MARK)) {
      title = line.slice(TITLE_MARK.length).trim().slice(0, 1000) || undefined;
      return;
    }
    if (line.startsWith('[download] Destination:')) {
      fileIndex++;
      lastPercent = -1;
      return;
    }
    const p = parseYtDlpProgress(line);
    if (p) {
      // A new file (video, then audio) starts again from 0.
      if (p.percent < lastPercent) fileIndex++;
      lastPercent = p.percent;
      run.progress({ percent: p.percent, speed: p.speed, eta: p.eta, step: fileIndex > 1 ? `yt-dlp file ${fileIndex}` : 'yt-dlp' });
    }
  };

  await mkdir(tmpDir, { recursive: true });
  let ok = false;
  let permanent = false;
  try {
    const result = await runChild(run.bin, ytDlpArgs(run, tmpDir), {
      signal: run.signal,
      cwd: tmpDir,
      env: run.env,
      onStdout: onLine,
      onStderr: (l) => {
        if (/^(ERROR|WARNING):/.test(l)) run.log(l.startsWith('ERROR') ? 'warn' : 'debug', `yt-dlp: ${l.slice(0, 500)}`);
      },
    });
    if (result.code !== 0) {
      const tail = result.stderrTail.trim().split('\n').filter((l) => l.startsWith('ERROR')).at(-1) ?? result.stderrTail.trim().split('\n').at(-1) ?? '';
      if (/Unsupported URL|is not a valid URL|Unable to extract|Video unavailable|Private video|This video is not available/i.test(tail)) {
        permanent = true;
        throw new PermanentError(`yt-dlp cannot download this URL: ${tail.slice(0, 500)}`, 'UNSUPPORTED_URL');
      }
      throw new Error(`yt-dlp exited with code ${result.code}: ${tail.slice(0, 500)}`);
    }

    const names = await readdir(tmpDir);
    const media = printedFile && names.includes(printedFile.split('/').at(-1)!) ? printedFile : undefined;
    const candidate =
      media ??
      names
        .filter((n) => n.startsWith('source.') && !/\.(part|ytdl|srt|vtt|json|temp)$/.test(n) && !/\.part-Frag/.test(n) && !/\.f\d+\./.test(n))
        .map((n) => join(tmpDir, n))[0];
    if (!candidate) {
      permanent = true;
      throw new PermanentError(`yt-dlp finished without a file (larger than ${run.maxBytes} bytes, or no format matched "${run.preset}")`, 'NO_MEDIA_FILE');
    }
    const st = await stat(candidate);
    if (st.size > run.maxBytes) {
      permanent = true;
      throw new PermanentError(`the media is larger than the limit of ${run.maxBytes} bytes`, 'TOO_LARGE');
    }
    const ext = (extname(candidate).slice(1) || 'bin').toLowerCase();
    const mediaFile = join(run.workDir, `source.${ext}`);
    await rename(candidate, mediaFile);

    let subtitleFile: string | undefined;
    const sub = run.wantSubtitles ? pickSubtitle(names) : undefined;
    if (sub) {
      subtitleFile = join(run.workDir, 'source.srt');
      await rename(join(tmpDir, sub), subtitleFile);
    }
    ok = true;
    return { mediaFile, ...(subtitleFile ? { subtitleFile } : {}), ...(title && title !== 'NA' ? { title } : {}) };
  } finally {
    if (ok || permanent || isCanceled(run.signal)) await rm(tmpDir, { recursive: true, force: true });
  }
}
