import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { ALL_EVENT_CHANNELS, CONTROL_CANCEL_CHANNEL, type EventChannel } from '@dubgate/contracts/events';
import type { DownloadPayload } from '@dubgate/contracts/stages';
import { channelValidators, registerContractFormats } from '@dubgate/queues/validation';
import { createLogger } from '@dubgate/runtime/logger';
import { createStageWorker, type StageWorker } from '@dubgate/worker-sdk/worker';
import { createDownloadProcessor, type DownloadSettings } from '../src/download.js';

registerContractFormats();

export function redisUrl(): string {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error('REDIS_URL must point at a disposable Redis for these tests');
  return url;
}
export const rand = (): string => randomBytes(4).toString('hex');
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/**
 * Polls `cond` until it holds. The default deadline is generous (two packages' suites share 2
 * cores): a wait returns as soon as the condition holds, so it costs nothing when all is well.
 */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 30_000, what = 'condition', stepMs = 20): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await sleep(stepMs);
  }
}
export function tempDir(label: string): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), `dubgate-dl-${label}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

// ---------------------------------------------------------------------------------------------
// Media the tests serve: a 3 s test pattern with a tone (made with ffmpeg), and its subtitles.

export interface Fixture {
  dir: string;
  video: Buffer;
  videoPath: string;
  srt: string;
  cleanup(): void;
}

export const SRT = '1\n00:00:00,500 --> 00:00:01,500\nHello there.\n\n2\n00:00:01,800 --> 00:00:02,800\nGoodbye.\n';

export function makeFixture(): Fixture {
  const t = tempDir('fixture');
  const videoPath = join(t.dir, 'out.mp4');
  execFileSync(
    'ffmpeg',
    ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=duration=3:size=320x240:rate=25', '-f', 'lavfi', '-i', 'sine=frequency=440:duration=3',
      '-c:v', 'libx264', '-c:a', 'aac', '-shortest', videoPath],
    { stdio: 'pipe' },
  );
  writeFileSync(join(t.dir, 'out.srt'), SRT);
  return { dir: t.dir, video: readFileSync(videoPath), videoPath, srt: SRT, cleanup: t.cleanup };
}

// ---------------------------------------------------------------------------------------------
// A local HTTP server on 127.0.0.1 that records what it was asked.

export interface SeenRequest {
  path: string;
  headers: IncomingHttpHeaders;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;

export interface TestServer {
  port: number;
  base: string;
  requests: SeenRequest[];
  /** Requests to `path` (without the query). */
  seen(path: string): SeenRequest[];
  /** Responses whose connection closed, by path. */
  closed: string[];
  route(path: string, handler: Handler): void;
  close(): Promise<void>;
}

export async function startServer(): Promise<TestServer> {
  const routes = new Map<string, Handler>();
  const requests: SeenRequest[] = [];
  const closed: string[] = [];
  const counts = new Map<string, number>();
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    requests.push({ path, headers: req.headers });
    res.on('close', () => closed.push(path));
    const n = (counts.get(path) ?? 0) + 1;
    counts.set(path, n);
    const h = routes.get(path);
    if (!h) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    h(req, res, n);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    base: `http://127.0.0.1:${port}`,
    requests,
    closed,
    seen: (p) => requests.filter((r) => r.path === p),
    route: (p, h) => void routes.set(p, h),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface ServeOptions {
  contentType?: string;
  ranges?: boolean;
  etag?: string;
  /** Send the body in this many pieces, `pauseMs` apart. */
  pieces?: number;
  pauseMs?: number;
  /** Omit Content-Length (chunked). */
  chunked?: boolean;
}

/** Serves `body`, honouring `Range: bytes=N-` when `ranges`. */
export function serve(body: Buffer, opts: ServeOptions = {}): Handler {
  return (req, res) => {
    const headers: Record<string, string | number> = { 'content-type': opts.contentType ?? 'video/mp4' };
    if (opts.etag) headers.etag = opts.etag;
    let slice = body;
    let status = 200;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (opts.ranges) headers['accept-ranges'] = 'bytes';
    if (opts.ranges && range) {
      const start = Number(range[1]);
      if (start >= body.length) {
        res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
        return;
      }
      status = 206;
      slice = body.subarray(start);
      headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
    }
    if (!opts.chunked) headers['content-length'] = slice.length;
    res.writeHead(status, headers);
    const pieces = opts.pieces ?? 1;
    if (pieces <= 1) {
      res.end(slice);
      return;
    }
    const size = Math.ceil(slice.length / pieces);
    let i = 0;
    const next = () => {
      if (res.destroyed) return;
      const chunk = slice.subarray(i * size, (i + 1) * size);
      i++;
      if (i >= pieces) res.end(chunk);
      else {
        res.write(chunk);
        setTimeout(next, opts.pauseMs ?? 100);
      }
    };
    next();
  };
}

// ---------------------------------------------------------------------------------------------
// A download worker on its own queue prefix, a producer, and a listener on events:*.


export interface EventSeen {
  channel: string;
  message: { jobId: string; type: string; payload: Record<string, unknown> };
  errors: string[];
}

export interface Harness {
  prefix: string;
  mediaRoot: string;
  worker: StageWorker;
  events: EventSeen[];
  queue: Queue;
  add(payload: DownloadPayload, attempts?: number): Promise<string>;
  /** Waits until the stage job is completed or failed. */
  settle(queueJobId: string, timeoutMs?: number): Promise<Job>;
  state(queueJobId: string): Promise<string>;
  cancel(jobId: string): Promise<void>;
  close(): Promise<void>;
}

export async function startHarness(settings: DownloadSettings, share?: Pick<Harness, 'prefix' | 'mediaRoot'>): Promise<Harness> {
  const prefix = share?.prefix ?? `q-dl-${rand()}`;
  const media = share ? { dir: share.mediaRoot, cleanup: () => {} } : tempDir('media');
  const logger = createLogger({ name: 'worker-download-test', level: process.env.TEST_LOG ? 'debug' : 'silent' });
  const worker = createStageWorker({
    stage: 'download',
    redisUrl: redisUrl(),
    queuePrefix: prefix,
    mediaRoot: media.dir,
    processor: createDownloadProcessor(settings),
    logger,
    progressIntervalMs: 50,
    shutdownTimeoutMs: 1_000,
  });
  const connection = new Redis(redisUrl(), { maxRetriesPerRequest: null });
  const queue = new Queue('download', { connection, prefix });
  const sub = new Redis(redisUrl());
  const events: EventSeen[] = [];
  sub.on('message', (channel: string, text: string) => {
    // events:* channels are global to the Redis: other suites running at the same time publish
    // there too, malformed messages included (a throw here would be an uncaught exception).
    // Only objects can be ours; tests filter by jobId.
    let message: EventSeen['message'];
    try {
      message = JSON.parse(text) as EventSeen['message'];
    } catch {
      return;
    }
    if (typeof message !== 'object' || message === null) return;
    // channelValidators are compiled from contracts' CHANNEL_SCHEMAS.
    const v = channelValidators[channel as EventChannel];
    events.push({ channel, message, errors: v ? v.errors(message, 10) : ['unknown channel'] });
  });
  await sub.subscribe(...ALL_EVENT_CHANNELS);
  await worker.start();

  const state = async (id: string) => (await (await queue.getJob(id))?.getState()) ?? 'missing';
  return {
    prefix,
    mediaRoot: media.dir,
    worker,
    events,
    queue,
    async add(payload, attempts = 1) {
      const id = `${payload.jobId}_download_g${payload.generation}`;
      await queue.add('download', payload, { jobId: id, attempts, backoff: { type: 'fixed', delay: 0 } });
      return id;
    },
    async settle(id, timeoutMs = 30_000) {
      await waitFor(async () => ['completed', 'failed'].includes(await state(id)), timeoutMs, `${id} settled`);
      return (await queue.getJob(id))!;
    },
    state,
    async cancel(jobId) {
      await connection.publish(CONTROL_CANCEL_CHANNEL, JSON.stringify({ jobId, reason: 'canceled by user', timestamp: new Date().toISOString() }));
    },
    async close() {
      await worker.close();
      await queue.obliterate({ force: true }).catch(() => {});
      await queue.close();
      connection.disconnect();
      sub.disconnect();
      media.cleanup();
    },
  };
}

export function payload(jobId: string, url: string, extra: Partial<DownloadPayload> = {}): DownloadPayload {
  return { jobId, generation: 0, workDir: jobId, url, formatPreset: 'best', wantSubtitles: false, ...extra };
}

/** A directory whose only program is ffprobe: PATH without yt-dlp (nor anything else). */
export function pathWithOnlyFfprobe(): { env: NodeJS.ProcessEnv; cleanup(): void } {
  const t = tempDir('bin');
  symlinkSync(execFileSync('sh', ['-c', 'command -v ffprobe']).toString().trim(), join(t.dir, 'ffprobe'));
  return { env: { ...process.env, PATH: t.dir }, cleanup: t.cleanup };
}

/**
 * A stand-in yt-dlp (a Node script) that records its arguments, prints yt-dlp's `--newline`
 * progress lines, and writes the fixture video where `-o` says. FAKE_YTDLP_MODE=hang keeps it
 * printing progress until killed.
 */
export function fakeYtDlp(source: string): { env: NodeJS.ProcessEnv; logFile: string; cleanup(): void } {
  const t = tempDir('fake-ytdlp');
  const bin = join(t.dir, 'bin');
  mkdirSync(bin);
  const script = join(bin, 'yt-dlp');
  writeFileSync(
    script,
    `#!${process.execPath}
const fs = require('fs');
const path = require('path');
const args = process.argv.slice(2);
fs.writeFileSync(process.env.FAKE_YTDLP_LOG, JSON.stringify({ args, pid: process.pid }));
const out = args[args.indexOf('-o') + 1];
const file = out.replace('%(ext)s', 'mp4');
const dir = path.dirname(file);
console.log('[generic] Extracting URL: ' + args.at(-1));
console.log('[download] Destination: ' + file);
fs.writeFileSync(file + '.part', 'partial');
const lines = ['[download]   0.0% of   10.00MiB at  Unknown B/s ETA Unknown', '[download]  25.5% of ~  10.00MiB at    1.50MiB/s ETA 00:05 (frag 1/4)', '[download]  50.0% of   10.00MiB at    2.00MiB/s ETA 00:02'];
let i = 0;
const tick = setInterval(() => {
  if (i < lines.length) { console.log(lines[i++]); return; }
  if (process.env.FAKE_YTDLP_MODE === 'hang') { console.log('[download]  50.0% of   10.00MiB at    0.00MiB/s ETA 99:00'); return; }
  clearInterval(tick);
  console.log('[download] 100% of   10.00MiB in 00:00:01 at 5.00MiB/s');
  fs.rmSync(file + '.part');
  fs.copyFileSync(process.env.FAKE_YTDLP_SOURCE, file);
  if (args.includes('--write-subs')) {
    fs.writeFileSync(path.join(dir, 'source.de.srt'), ${JSON.stringify(SRT)});
    fs.writeFileSync(path.join(dir, 'source.en.srt'), ${JSON.stringify(SRT)});
  }
  console.log('dubgate-file:' + file);
  console.log('dubgate-title:A fake title');
}, 60);
`,
  );
  chmodSync(script, 0o755);
  const logFile = join(t.dir, 'args.json');
  return {
    env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}`, FAKE_YTDLP_LOG: logFile, FAKE_YTDLP_SOURCE: source },
    logFile,
    cleanup: t.cleanup,
  };
}
