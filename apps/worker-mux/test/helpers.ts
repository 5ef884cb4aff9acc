import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { StagePayloads } from '@dubgate/contracts/stages';
import type { Stage } from '@dubgate/contracts/states';
import type { StageContext } from '@dubgate/worker-sdk/worker';

export const exec = promisify(execFile);

export async function makeMediaRoot(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'dubgate-mux-test-'));
}

/** A test video (pattern + tone, H.264 + AAC in mp4) and a dubbed track (WAV, 24 kHz mono) under `<root>/<jobId>/`. */
export async function makeSources(
  root: string,
  jobId: string,
  opts: { duration?: number; size?: string; subs?: boolean } = {},
): Promise<{ mediaPath: string; dubPath: string }> {
  const dir = join(root, jobId);
  await mkdir(dir, { recursive: true });
  const duration = opts.duration ?? 4;
  const args = [
    '-v', 'error', '-y',
    '-f', 'lavfi', '-i', `testsrc=duration=${duration}:size=${opts.size ?? '320x240'}:rate=25`,
    '-f', 'lavfi', '-i', `sine=frequency=440:duration=${duration}`,
  ];
  const maps = ['-map', '0:v', '-map', '1:a'];
  if (opts.subs) {
    const srt = join(dir, 'subs.srt');
    await writeFile(srt, '1\n00:00:00,500 --> 00:00:01,500\nHello\n\n2\n00:00:02,000 --> 00:00:03,000\nWorld\n');
    args.push('-i', srt);
    maps.push('-map', '2:s', '-c:s', 'mov_text');
  }
  args.push(...maps, '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', join(dir, 'source.mp4'));
  await exec('ffmpeg', args);
  await exec('ffmpeg', [
    '-v', 'error', '-y', '-f', 'lavfi', '-i', `sine=frequency=880:duration=${duration}`,
    '-ar', '24000', '-ac', '1', '-c:a', 'pcm_s16le', join(dir, 'dub.es.wav'),
  ]);
  return { mediaPath: `${jobId}/source.mp4`, dubPath: `${jobId}/dub.es.wav` };
}

export interface FakeContext<S extends Stage> {
  ctx: StageContext<S>;
  progress: Array<{ percent: number; speed?: number | null; eta?: number | null; step?: string }>;
  logs: Array<{ level: string; message: string }>;
  controller: AbortController;
}

/** A StageContext without Redis, recording what the stage reports. */
export function fakeContext<S extends Stage>(
  stage: S,
  mediaRoot: string,
  payload: StagePayloads[S],
  hooks: { onProgress?: (p: { percent: number; step?: string }, controller: AbortController) => void } = {},
): FakeContext<S> {
  const controller = new AbortController();
  const progress: FakeContext<S>['progress'] = [];
  const logs: Array<{ level: string; message: string }> = [];
  const noop = () => {};
  const logger = { debug: noop, info: noop, warn: noop, error: noop, fatal: noop, trace: noop, child: () => logger };
  const ctx = {
    payload,
    stage,
    queueJobId: `${payload.jobId}_${stage}_g${payload.generation}`,
    attempt: 1,
    signal: controller.signal,
    mediaRoot,
    workDir: join(mediaRoot, payload.jobId),
    resolvePath: (rel: string) => resolve(mediaRoot, rel),
    relativePath: (abs: string) => relative(mediaRoot, abs),
    progress: (p: FakeContext<S>['progress'][number]) => {
      progress.push(p);
      hooks.onProgress?.(p, controller);
    },
    log: (level: string, message: string) => logs.push({ level, message }),
    checkpoint: async () => {
      throw new TypeError('checkpoints are part of the dub contract only');
    },
    logger,
  } as unknown as StageContext<S>;
  return { ctx, progress, logs, controller };
}

export interface Probed {
  streams: Array<{ index: number; codec_type: string; codec_name: string; disposition?: Record<string, number>; tags?: Record<string, string> }>;
  format: { duration: string; format_name: string };
}

export async function probeJson(file: string): Promise<Probed> {
  const { stdout } = await exec('ffprobe', ['-v', 'error', '-show_streams', '-show_format', '-of', 'json', file]);
  return JSON.parse(stdout) as Probed;
}
