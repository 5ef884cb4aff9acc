/**
 * The download stage: an http(s) URL in, `MEDIA_ROOT/<jobId>/source.<ext>` out (and
 * `source.srt`/`.vtt` when subtitles were asked for and found), probed with ffprobe.
 *
 * - Direct media files are streamed into `source.part` with percent, speed and eta, under a
 *   size cap. A retry continues a kept `source.part` with `Range: bytes=<size>-` (and `If-Range`),
 *   accepting 206 and starting over on 200. Only a complete, probed file is renamed into place.
 * - Every fetch is SSRF-checked (safe-http.ts): the addresses a name resolves to, the address
 *   connected to, and every redirect.
 * - A web page (text/html, or an HLS/DASH playlist) needs an extractor: yt-dlp when it is on
 *   PATH, else a permanent error naming what to install.
 * - Canceled or failed for good: the `.part` and its state file are removed. Failed otherwise:
 *   they stay, for the retry to resume.
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { basename, extname, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { DownloadResult } from '@dubgate/contracts/stages';
import { PermanentError, isCanceled, isPermanentError } from '@dubgate/worker-sdk/errors';
import { fsyncPath, writeAtomically } from '@dubgate/worker-sdk/files';
import type { StageContext, StageProcessor } from '@dubgate/worker-sdk/worker';
import { probeMedia, NOT_MEDIA, type ProbeResult } from './probe.js';
import { discard, safeGet, type Resolver, type SafeGetOptions } from './safe-http.js';
import { findExecutable } from './tools.js';
import { runYtDlp } from './ytdlp.js';

export interface DownloadSettings {
  /** Largest file accepted (DOWNLOAD_MAX_BYTES). */
  maxBytes: number;
  /** Allow loopback and private targets (ALLOW_PRIVATE_URLS). Link-local and metadata stay refused. */
  allowPrivate: boolean;
  /** A transfer with no byte for this long fails (and is retried). Default 60000. */
  idleTimeoutMs?: number;
  /** Host name resolution; default dns.lookup with `all: true`. Tests pass their own. */
  resolver?: Resolver;
  /** Environment for finding and running yt-dlp and ffprobe (PATH). Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Largest subtitle sidecar accepted. Default 10 MiB. */
  maxSubtitleBytes?: number;
}

export const PART_NAME = 'source.part';
/** What a retry needs to resume `source.part` safely: the URL and the validator it came with. */
export const STATE_NAME = '.source.download.json';

interface PartState {
  url: string;
  validator?: string;
  contentType?: string;
}

const EXTRACTOR_TYPES = [
  'text/html',
  'application/xhtml+xml',
  'application/vnd.apple.mpegurl',
  'application/x-mpegurl',
  'audio/mpegurl',
  'audio/x-mpegurl',
  'application/dash+xml',
];

const MEDIA_EXTENSIONS = new Set([
  'mp4', 'm4v', 'mkv', 'webm', 'mov', 'avi', 'flv', 'ts', 'm2ts', 'mts', 'mpg', 'mpeg', '3gp', 'wmv', 'ogv',
  'mp3', 'm4a', 'aac', 'ogg', 'oga', 'opus', 'wav', 'flac',
]);

const CONTENT_TYPE_EXTENSIONS: Record<string, string> = {
  'video/mp4': 'mp4',
  'video/webm': 'webm',
  'video/x-matroska': 'mkv',
  'video/quicktime': 'mov',
  'video/x-msvideo': 'avi',
  'video/x-flv': 'flv',
  'video/mp2t': 'ts',
  'video/mpeg': 'mpg',
  'video/3gpp': '3gp',
  'video/ogg': 'ogv',
  'audio/mpeg': 'mp3',
  'audio/mp4': 'm4a',
  'audio/aac': 'aac',
  'audio/ogg': 'ogg',
  'audio/opus': 'opus',
  'audio/wav': 'wav',
  'audio/x-wav': 'wav',
  'audio/wave': 'wav',
  'audio/flac': 'flac',
  'audio/webm': 'webm',
};

const FORMAT_EXTENSIONS: Array<[RegExp, string]> = [
  [/(^|,)mp4(,|$)/, 'mp4'],
  [/(^|,)webm(,|$)/, 'webm'],
  [/(^|,)matroska(,|$)/, 'mkv'],
  [/(^|,)avi(,|$)/, 'avi'],
  [/(^|,)flv(,|$)/, 'flv'],
  [/(^|,)mpegts(,|$)/, 'ts'],
  [/(^|,)ogg(,|$)/, 'ogg'],
  [/(^|,)wav(,|$)/, 'wav'],
  [/(^|,)mp3(,|$)/, 'mp3'],
  [/(^|,)flac(,|$)/, 'flac'],
];

function mediaType(response: IncomingMessage): string {
  return (response.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

export function needsExtractor(contentType: string): boolean {
  return EXTRACTOR_TYPES.includes(contentType);
}

/** The extension of the finished file: the URL's (when it names a media type), the content type's, ffprobe's, else `bin`. */
export function chooseExtension(url: URL, contentType: string | undefined, formatName: string | undefined): string {
  let path = url.pathname;
  try {
    path = decodeURIComponent(path);
  } catch {
    // keep it encoded
  }
  const fromUrl = extname(path).slice(1).toLowerCase();
  if (MEDIA_EXTENSIONS.has(fromUrl)) return fromUrl;
  const fromType = contentType ? CONTENT_TYPE_EXTENSIONS[contentType] : undefined;
  if (fromType) return fromType;
  for (const [re, ext] of FORMAT_EXTENSIONS) if (formatName && re.test(formatName)) return ext;
  return 'bin';
}

/** `bytes <start>-<end>/<total|*>` → numbers; null when malformed. */
export function parseContentRange(value: string | undefined): { start: number; end: number | null; total: number | null } | null {
  if (!value) return null;
  const m = /^bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)$/i.exec(value.trim());
  if (!m) return null;
  return {
    start: m[1] === undefined ? -1 : Number(m[1]),
    end: m[2] === undefined ? null : Number(m[2]),
    total: m[3] === '*' ? null : Number(m[3]),
  };
}

/** ETag when strong, else Last-Modified: what `If-Range` may carry. */
function validatorOf(response: IncomingMessage): string | undefined {
  const etag = response.headers.etag;
  if (etag && !etag.startsWith('W/')) return etag;
  return response.headers['last-modified'] ?? undefined;
}

function httpFailure(status: number, url: URL): Error {
  const where = `${url.host}${url.pathname}`.slice(0, 300);
  // 4xx is the request's fault and will not change, except timeouts and rate limits.
  if (status >= 400 && status < 500 && ![408, 425, 429].includes(status)) {
    return new PermanentError(`HTTP ${status} from ${where}`, 'HTTP_ERROR');
  }
  return new Error(`HTTP ${status} from ${where}`);
}

async function sizeOf(path: string): Promise<number> {
  return stat(path).then(
    (s) => s.size,
    () => 0,
  );
}

async function readState(path: string): Promise<PartState | null> {
  try {
    const v = JSON.parse(await readFile(path, 'utf8')) as PartState;
    return typeof v.url === 'string' ? v : null;
  } catch {
    return null;
  }
}

/** Transfer speed as an exponential moving average over samples at least 250 ms apart. */
function speedMeter() {
  let speed: number | null = null;
  let lastAt = performance.now();
  let lastBytes = 0;
  return {
    reset(bytes: number) {
      lastAt = performance.now();
      lastBytes = bytes;
    },
    /** Returns true when a new sample was taken. */
    sample(bytes: number): boolean {
      const now = performance.now();
      const dt = (now - lastAt) / 1000;
      if (dt < 0.25) return false;
      const inst = (bytes - lastBytes) / dt;
      speed = speed === null ? inst : 0.7 * speed + 0.3 * inst;
      lastAt = now;
      lastBytes = bytes;
      return true;
    },
    get value() {
      return speed;
    },
  };
}

type Fetched = { kind: 'file'; url: URL; contentType: string | undefined } | { kind: 'page'; url: URL; contentType: string };

class Downloader {
  private readonly part: string;
  private readonly stateFile: string;
  private readonly http: Omit<SafeGetOptions, 'headers'>;

  constructor(
    private readonly ctx: StageContext<'download'>,
    private readonly settings: DownloadSettings,
  ) {
    this.part = join(ctx.workDir, PART_NAME);
    this.stateFile = join(ctx.workDir, STATE_NAME);
    this.http = {
      allowPrivate: settings.allowPrivate,
      signal: ctx.signal,
      ...(settings.resolver ? { resolver: settings.resolver } : {}),
      idleTimeoutMs: settings.idleTimeoutMs ?? 60_000,
    };
  }

  async removePartial(): Promise<void> {
    await rm(this.part, { force: true });
    await rm(this.stateFile, { force: true });
  }

  /** GETs the URL (resuming `source.part` when it can) and streams a media file into `source.part`. */
  async fetch(): Promise<Fetched> {
    const { payload } = this.ctx;
    let offset = 0;
    let state = await readState(this.stateFile);
    const kept = await sizeOf(this.part);
    if (state?.url === payload.url && kept > 0) offset = kept;
    else {
      await this.removePartial();
      state = null;
    }

    for (let round = 0; round < 3; round++) {
      const headers: Record<string, string> = {};
      if (offset > 0) {
        headers.range = `bytes=${offset}-`;
        if (state?.validator) headers['if-range'] = state.validator;
      }
      const { response, url } = await safeGet(payload.url, { ...this.http, headers });
      const status = response.statusCode ?? 0;
      const contentType = mediaType(response);

      if (status >= 200 && status < 300 && needsExtractor(contentType)) {
        discard(response);
        await this.removePartial();
        return { kind: 'page', url, contentType };
      }

      let total: number | null;
      if (offset > 0 && status === 416) {
        discard(response);
        const range = parseContentRange(response.headers['content-range']);
        if (range?.total === offset) {
          this.ctx.log('info', 'the kept partial download is already complete');
          return { kind: 'file', url, contentType: state?.contentType };
        }
        this.ctx.log('info', 'the server refused to resume; starting over');
        await this.removePartial();
        offset = 0;
        continue;
      }
      if (offset > 0 && status === 206) {
        const range = parseContentRange(response.headers['content-range']);
        if (!range || range.start !== offset) {
          discard(response);
          this.ctx.log('info', 'the server resumed at the wrong byte; starting over');
          await this.removePartial();
          offset = 0;
          continue;
        }
        total = range.total;
        this.ctx.log('info', `resuming the download at byte ${offset}`);
      } else if (status === 200) {
        if (offset > 0) this.ctx.log('info', 'the server ignored the Range request; starting over');
        offset = 0;
        const length = Number(response.headers['content-length']);
        total = Number.isSafeInteger(length) && length >= 0 ? length : null;
      } else {
        discard(response);
        throw httpFailure(status, url);
      }

      if (total !== null && total > this.settings.maxBytes) {
        discard(response);
        throw new PermanentError(`the file is ${total} bytes, more than the limit of ${this.settings.maxBytes}`, 'TOO_LARGE');
      }
      const validator = validatorOf(response);
      const next: PartState = { url: payload.url, ...(validator ? { validator } : {}), ...(contentType ? { contentType } : {}) };
      await writeFile(this.stateFile, JSON.stringify(next));
      await this.stream(response, offset, total);
      return { kind: 'file', url, contentType: contentType || state?.contentType };
    }
    throw new Error('the server kept refusing to resume the download');
  }

  private async stream(response: IncomingMessage, offset: number, total: number | null): Promise<void> {
    const { ctx, settings } = this;
    const out = createWriteStream(this.part, { flags: offset > 0 ? 'a' : 'w' });
    let written = offset;
    const meter = speedMeter();
    meter.reset(written);
    const report = () => {
      const speed = meter.value;
      const percent = total ? (written / total) * 100 : 0;
      const eta = total && speed && speed > 0 ? (total - written) / speed : null;
      ctx.progress({ percent: Math.min(percent, 99.99), speed, eta, step: 'transfer' });
    };
    report();
    const counter = new Transform({
      transform(chunk: Buffer, _enc, callback) {
        written += chunk.length;
        if (written > settings.maxBytes) {
          callback(new PermanentError(`the file is larger than the limit of ${settings.maxBytes} bytes`, 'TOO_LARGE'));
          return;
        }
        if (meter.sample(written)) report();
        callback(null, chunk);
      },
    });
    try {
      await pipeline(response, counter, out, { signal: ctx.signal });
    } catch (err) {
      // Nothing may still be writing when the caller removes the file.
      if (!out.closed) await once(out, 'close').catch(() => {});
      throw err;
    }
    if (total !== null && written !== total) throw new Error(`the transfer ended after ${written} of ${total} bytes`);
    report();
  }

  /** `<url without extension>.srt` then `.vtt`, with the same checks; missing is fine. */
  async sidecar(): Promise<string | undefined> {
    const { ctx } = this;
    const base = new URL(ctx.payload.url);
    const ext = extname(base.pathname);
    const stem = ext ? base.pathname.slice(0, -ext.length) : base.pathname;
    const cap = this.settings.maxSubtitleBytes ?? 10 * 2 ** 20;
    for (const kind of ['srt', 'vtt'] as const) {
      const url = new URL(base.href);
      url.pathname = `${stem}.${kind}`;
      const file = join(ctx.workDir, `source.${kind}`);
      try {
        const { response } = await safeGet(url.href, { ...this.http, maxRedirects: 2 });
        if (response.statusCode !== 200 || needsExtractor(mediaType(response))) {
          discard(response);
          continue;
        }
        await writeAtomically(file, async (tmp) => {
          let size = 0;
          const cut = new Transform({
            transform(chunk: Buffer, _enc, cb) {
              size += chunk.length;
              cb(size > cap ? new Error(`subtitles larger than ${cap} bytes`) : null, chunk);
            },
          });
          await pipeline(response, cut, createWriteStream(tmp), { signal: ctx.signal });
          if (!(await readFile(tmp, 'utf8')).includes('-->')) throw new Error('not a subtitle file');
        });
        ctx.log('info', `fetched subtitles from ${url.pathname.split('/').at(-1)}`);
        return file;
      } catch (err) {
        if (ctx.signal.aborted) throw err;
        ctx.logger.debug({ err, kind }, 'no subtitle sidecar');
      }
    }
    return undefined;
  }
}

function titleFrom(probe: ProbeResult, url: URL, fallback?: string): string | undefined {
  if (fallback) return fallback.slice(0, 1000);
  if (probe.title) return probe.title;
  let name = basename(url.pathname);
  try {
    name = decodeURIComponent(name);
  } catch {
    // keep it
  }
  const stem = name.replace(/\.[^.]+$/, '').trim();
  return stem ? stem.slice(0, 1000) : undefined;
}

export async function download(ctx: StageContext<'download'>, settings: DownloadSettings): Promise<DownloadResult> {
  const { payload, workDir, signal } = ctx;
  const env = settings.env ?? process.env;
  const d = new Downloader(ctx, settings);
  try {
    const fetched = await d.fetch();
    let mediaFile: string;
    let subtitleFile: string | undefined;
    let extractedTitle: string | undefined;
    let probe: ProbeResult;

    if (fetched.kind === 'page') {
      const bin = findExecutable('yt-dlp', env);
      if (!bin) {
        throw new PermanentError(
          `the URL is a web page (${fetched.contentType}), not a media file: downloading it needs yt-dlp, which is not installed on this worker (install it: apt-get install yt-dlp)`,
          'EXTRACTOR_MISSING',
        );
      }
      ctx.log('info', 'the URL is a web page; downloading it with yt-dlp');
      const r = await runYtDlp({
        url: payload.url,
        preset: payload.formatPreset,
        wantSubtitles: payload.wantSubtitles,
        workDir,
        maxBytes: settings.maxBytes,
        bin,
        signal,
        env,
        progress: (p) => ctx.progress(p),
        log: (level, message) => ctx.log(level, message),
      });
      mediaFile = r.mediaFile;
      subtitleFile = r.subtitleFile;
      extractedTitle = r.title;
      try {
        probe = await probeMedia(mediaFile, signal, env);
      } catch (err) {
        if (isPermanentError(err) && err.code === NOT_MEDIA) await rm(mediaFile, { force: true });
        throw err;
      }
    } else {
      ctx.progress({ percent: 99.99, step: 'probe' });
      try {
        probe = await probeMedia(join(workDir, PART_NAME), signal, env);
      } catch (err) {
        if (isPermanentError(err)) await d.removePartial();
        throw err;
      }
      const ext = chooseExtension(fetched.url, fetched.contentType, probe.formatName);
      mediaFile = join(workDir, `source.${ext}`);
      await fsyncPath(join(workDir, PART_NAME));
      await rename(join(workDir, PART_NAME), mediaFile);
      await rm(join(workDir, STATE_NAME), { force: true });
      await fsyncPath(workDir, { directory: true });
      if (payload.wantSubtitles) subtitleFile = await d.sidecar();
    }

    const sizeBytes = (await stat(mediaFile)).size;
    const title = titleFrom(probe, fetched.url, extractedTitle);
    const result: DownloadResult = {
      mediaPath: ctx.relativePath(mediaFile),
      sizeBytes,
      ...(title ? { title } : {}),
      ...(probe.durationSec !== undefined ? { durationSec: probe.durationSec } : {}),
      ...(probe.width !== undefined ? { width: probe.width } : {}),
      ...(probe.height !== undefined ? { height: probe.height } : {}),
      ...(probe.videoCodec ? { videoCodec: probe.videoCodec } : {}),
      ...(probe.audioCodec ? { audioCodec: probe.audioCodec } : {}),
      ...(subtitleFile ? { subtitlePath: ctx.relativePath(subtitleFile) } : {}),
    };
    ctx.progress({ percent: 100, step: 'done', final: true });
    return result;
  } catch (err) {
    // Canceled or hopeless: leave nothing behind. Otherwise (a retryable failure, or a shutdown
    // handing the job back) keep source.part for whoever runs the stage next to resume.
    if (isCanceled(signal) || isPermanentError(err)) await d.removePartial();
    throw err;
  }
}

export function createDownloadProcessor(settings: DownloadSettings): StageProcessor<'download'> {
  return (ctx) => download(ctx, settings);
}
