import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { DubCheckpoint, StagePayloads } from '@dubgate/contracts/stages';
import type { Stage } from '@dubgate/contracts/states';
import type { StageContext } from '@dubgate/worker-sdk/worker';

export const exec = promisify(execFile);

export const TEST_SRT = `1
00:00:00,200 --> 00:00:01,000
Hello world

2
00:00:01,100 --> 00:00:01,900
<i>This is</i> a test

3
00:00:02,000 --> 00:00:02,800
Third line

4
00:00:03,000 --> 00:00:03,800
The end
`;

export async function makeMediaRoot(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'dubgate-dub-test-'));
}

/**
 * A 4 s test video (test pattern + 440 Hz tone) under `<root>/<jobId>/`, with the subtitles of
 * TEST_SRT embedded as mov_text (mp4) or SubRip (mkv), or none.
 */
export async function makeTestVideo(
  root: string,
  jobId: string,
  opts: { subs: 'mp4' | 'mkv' | 'none'; duration?: number } = { subs: 'mp4' },
): Promise<string> {
  const dir = join(root, jobId);
  await mkdir(dir, { recursive: true });
  const duration = opts.duration ?? 4;
  const ext = opts.subs === 'mkv' ? 'mkv' : 'mp4';
  const out = join(dir, `source.${ext}`);
  const args = [
    '-v', 'error', '-y',
    '-f', 'lavfi', '-i', `testsrc=duration=${duration}:size=320x240:rate=25`,
    '-f', 'lavfi', '-i', `sine=frequency=440:duration=${duration}`,
  ];
  if (opts.subs !== 'none') {
    const srt = join(dir, 'embed-src.srt');
    await writeFile(srt, TEST_SRT);
    args.push('-i', srt, '-map', '0:v', '-map', '1:a', '-map', '2:s');
    args.push('-c:s', opts.subs === 'mkv' ? 'srt' : 'mov_text');
  } else {
    args.push('-map', '0:v', '-map', '1:a');
  }
  args.push('-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', out);
  await exec('ffmpeg', args);
  return `${jobId}/source.${ext}`;
}

export interface FakeContext<S extends Stage> {
  ctx: StageContext<S>;
  checkpoints: DubCheckpoint[];
  progress: Array<{ percent: number; step?: string }>;
  logs: Array<{ level: string; message: string }>;
  controller: AbortController;
}

/** A StageContext without Redis: what the SDK hands a stage function, recorded for assertions. */
export function fakeContext<S extends Stage>(
  stage: S,
  mediaRoot: string,
  payload: StagePayloads[S],
  hooks: { onCheckpoint?: (cp: DubCheckpoint, controller: AbortController) => void } = {},
): FakeContext<S> {
  const controller = new AbortController();
  const checkpoints: DubCheckpoint[] = [];
  const progress: Array<{ percent: number; step?: string }> = [];
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
    progress: (p: { percent: number; step?: string }) => progress.push({ percent: p.percent, ...(p.step ? { step: p.step } : {}) }),
    log: (level: string, message: string) => logs.push({ level, message }),
    checkpoint: async (cp: DubCheckpoint) => {
      checkpoints.push(structuredClone(cp));
      hooks.onCheckpoint?.(cp, controller);
    },
    logger,
  } as unknown as StageContext<S>;
  return { ctx, checkpoints, progress, logs, controller };
}

export async function probeJson(file: string): Promise<{
  streams: Array<{ codec_type: string; codec_name: string; sample_rate?: string; channels?: number; tags?: Record<string, string> }>;
  format: { duration: string };
}> {
  const { stdout } = await exec('ffprobe', ['-v', 'error', '-show_streams', '-show_format', '-of', 'json', file]);
  return JSON.parse(stdout);
}

/** max_volume (dB) of a window of an audio file, from ffmpeg's volumedetect; -91 is digital silence. */
export async function maxVolume(file: string, fromSec: number, toSec: number): Promise<number> {
  const { stderr } = await exec('ffmpeg', ['-hide_banner', '-nostats', '-ss', String(fromSec), '-to', String(toSec), '-i', file, '-af', 'volumedetect', '-f', 'null', '-']);
  const m = /max_volume:\s*(-?[\d.]+|-inf) dB/.exec(stderr);
  if (!m) throw new Error(`no volumedetect output: ${stderr.slice(-500)}`);
  return m[1] === '-inf' ? -Infinity : Number(m[1]);
}
