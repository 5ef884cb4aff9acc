/**
 * The mux stage: the source's video, its original audio and the dubbed track (when there is
 * one) into `<jobId>/output.<container>`.
 *
 * Streams, in order: the first video stream (cover art excluded), the first original audio
 * stream (default track), then the dubbed track (not default, language tag in ISO 639-2, title
 * "Dubbed (<lang>)"). Subtitle and data streams are not carried over.
 *
 * Codecs per container:
 * - mp4, mov: H.264/HEVC video is copied, anything else becomes H.264 (libx264, veryfast);
 *   AAC/MP3/AC-3 audio is copied, anything else becomes AAC; the dubbed track is AAC.
 * - mkv: video and original audio are copied (Matroska holds any codec); the dubbed track,
 *   PCM from the dub stage, is encoded to Opus to keep the file small.
 * - webm: VP8/VP9/AV1 video is copied, anything else becomes VP9 (libvpx-vp9, realtime
 *   deadline); Opus/Vorbis audio is copied, anything else becomes Opus, the dubbed track too.
 *
 * ffmpeg writes `output.<container>.part` (writeAtomically) and reports progress on
 * `-progress pipe:1`; the result is checked with ffprobe (stream count and kinds, codecs the
 * container allows, the dubbed track's language, duration close to the source's) before it is
 * renamed into place. A failed check is permanent: running the same ffmpeg again gives the same file.
 */
import { access, stat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { MuxResult } from '@dubgate/contracts/stages';
import type { OutputContainer } from '@dubgate/contracts/jobs';
import { PermanentError } from '@dubgate/worker-sdk/errors';
import { runChild } from '@dubgate/worker-sdk/child';
import { writeAtomically } from '@dubgate/worker-sdk/files';
import type { StageContext } from '@dubgate/worker-sdk/worker';
import { defaultTools, probeMedia, runOrThrow, type ProbedStream, type RunChild, type Tools } from './tools.js';
import { toIso639_2 } from './languages.js';

type MuxContext = StageContext<'mux'>;

export interface MuxProcessorOptions {
  run?: RunChild;
  tools?: Partial<Tools>;
}

const MUXERS: Record<OutputContainer, string> = { mp4: 'mp4', mov: 'mov', mkv: 'matroska', webm: 'webm' };

const WEBM_VIDEO = new Set(['vp8', 'vp9', 'av1']);
const WEBM_AUDIO = new Set(['opus', 'vorbis']);
const MP4_VIDEO_COPY = new Set(['h264', 'hevc']);
const MP4_AUDIO_COPY = new Set(['aac', 'mp3', 'ac3', 'eac3']);

// ISO 639-2/T codes whose /B form differs: Matroska stores /B.
const T_TO_B: Record<string, string> = {
  bod: 'tib', ces: 'cze', cym: 'wel', deu: 'ger', ell: 'gre', eus: 'baq', fas: 'per', fra: 'fre', hye: 'arm', isl: 'ice',
  kat: 'geo', mkd: 'mac', mri: 'mao', msa: 'may', mya: 'bur', nld: 'dut', ron: 'rum', slk: 'slo', sqi: 'alb', zho: 'chi',
};

export interface MuxPlan {
  args: string[];
  expected: { video: number; audio: number; dubLanguage: string | null };
}

/** The ffmpeg arguments (after the inputs) and what the output must contain. Pure: unit-tested. */
export function planMux(opts: {
  container: OutputContainer;
  source: ProbedStream[];
  hasDub: boolean;
  dubbedLanguage?: string;
}): MuxPlan {
  const { container, source, hasDub } = opts;
  const video = source.find((s) => s.codec_type === 'video' && !s.disposition?.attached_pic);
  const audio = source.find((s) => s.codec_type === 'audio');
  if (!video && !audio && !hasDub) throw new PermanentError('NOTHING_TO_MUX: the media has neither video nor audio', 'NOTHING_TO_MUX');
  const args: string[] = [];
  if (video) args.push('-map', `0:${video.index}`);
  if (audio) args.push('-map', `0:${audio.index}`);
  if (hasDub) args.push('-map', '1:a:0');

  // Video.
  if (video) {
    const codec = video.codec_name ?? '';
    if (container === 'mkv') args.push('-c:v', 'copy');
    else if (container === 'webm') {
      if (WEBM_VIDEO.has(codec)) args.push('-c:v', 'copy');
      else args.push('-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-cpu-used', '8', '-row-mt', '1', '-b:v', '0', '-crf', '33', '-pix_fmt', 'yuv420p');
    } else if (MP4_VIDEO_COPY.has(codec)) {
      args.push('-c:v', 'copy');
      if (codec === 'hevc') args.push('-tag:v', 'hvc1');
    } else args.push('-c:v', 'libx264', '-preset', 'veryfast', '-crf', '23', '-pix_fmt', 'yuv420p');
  }

  // Audio: output audio stream 0 is the original (when there is one), the last one the dub.
  const opus = (i: number, bitrate: string) => [`-c:a:${i}`, 'libopus', `-b:a:${i}`, bitrate, `-ar:a:${i}`, '48000'];
  let a = 0;
  if (audio) {
    const codec = audio.codec_name ?? '';
    if (container === 'mkv') args.push(`-c:a:${a}`, 'copy');
    else if (container === 'webm') args.push(...(WEBM_AUDIO.has(codec) ? [`-c:a:${a}`, 'copy'] : opus(a, '128k')));
    else args.push(...(MP4_AUDIO_COPY.has(codec) ? [`-c:a:${a}`, 'copy'] : [`-c:a:${a}`, 'aac', `-b:a:${a}`, '160k']));
    args.push(`-disposition:a:${a}`, 'default');
    a++;
  }
  let dubLanguage: string | null = null;
  if (hasDub) {
    if (container === 'mp4' || container === 'mov') args.push(`-c:a:${a}`, 'aac', `-b:a:${a}`, '96k');
    else args.push(...opus(a, '64k'));
    dubLanguage = toIso639_2(opts.dubbedLanguage);
    const title = opts.dubbedLanguage ? `Dubbed (${opts.dubbedLanguage})` : 'Dubbed';
    args.push(
      `-metadata:s:a:${a}`, `language=${dubLanguage}`,
      `-metadata:s:a:${a}`, `title=${title}`,
      `-metadata:s:a:${a}`, `handler_name=${title}`,
      // The original stays the default track; with no original audio the dub is the default.
      `-disposition:a:${a}`, audio ? '0' : 'default',
    );
    a++;
  }
  args.push('-sn', '-dn', '-map_metadata', '0', '-max_muxing_queue_size', '4096');
  if (container === 'mp4' || container === 'mov') args.push('-movflags', '+faststart');
  return { args, expected: { video: video ? 1 : 0, audio: a, dubLanguage } };
}

/** Parses ffmpeg `-progress` key=value lines; calls onBlock at every `progress=` line. */
export function createProgressParser(onBlock: (p: { outTimeSec: number | null; speedX: number | null; totalSize: number | null; end: boolean }) => void) {
  let outTimeUs: number | null = null;
  let speedX: number | null = null;
  let totalSize: number | null = null;
  return (line: string) => {
    const eq = line.indexOf('=');
    if (eq < 0) return;
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    switch (key) {
      case 'out_time_us':
      case 'out_time_ms': {
        // Both are microseconds (out_time_ms is misnamed in ffmpeg).
        const v = Number(value);
        if (Number.isFinite(v) && v >= 0) outTimeUs = v;
        break;
      }
      case 'speed': {
        const v = Number.parseFloat(value.replace(/x$/, ''));
        speedX = Number.isFinite(v) && v > 0 ? v : null;
        break;
      }
      case 'total_size': {
        const v = Number(value);
        totalSize = Number.isFinite(v) && v >= 0 ? v : null;
        break;
      }
      case 'progress':
        onBlock({ outTimeSec: outTimeUs === null ? null : outTimeUs / 1e6, speedX, totalSize, end: value === 'end' });
        break;
      default:
    }
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

export function createMuxProcessor(options: MuxProcessorOptions = {}) {
  const run = options.run ?? runChild;
  const tools: Tools = { ...defaultTools(), ...options.tools };

  return async function processMux(ctx: MuxContext): Promise<MuxResult> {
    const { payload, signal } = ctx;
    const container = payload.outputContainer;
    const mediaAbs = ctx.resolvePath(payload.mediaPath);
    if (!(await exists(mediaAbs))) throw new PermanentError(`MEDIA_MISSING: ${payload.mediaPath} does not exist`, 'MEDIA_MISSING');
    const dubAbs = payload.dubbedAudioPath ? ctx.resolvePath(payload.dubbedAudioPath) : null;
    if (dubAbs && !(await exists(dubAbs))) {
      throw new PermanentError(`DUBBED_AUDIO_MISSING: ${payload.dubbedAudioPath} does not exist`, 'DUBBED_AUDIO_MISSING');
    }

    ctx.progress({ percent: 0, step: 'probing' });
    const source = await probeMedia(run, tools.ffprobe, mediaAbs, signal);
    const plan = planMux({ container, source: source.streams, hasDub: dubAbs !== null, dubbedLanguage: payload.dubbedLanguage });
    const total = source.durationSec;
    const fileName = `output.${container}`;
    const outAbs = join(ctx.workDir, fileName);
    ctx.log('info', `muxing into ${fileName}: ${plan.expected.video} video, ${plan.expected.audio} audio stream(s)${dubAbs ? `, dubbed ${payload.dubbedLanguage ?? ''}` : ''}`);

    let outDuration: number | null = null;
    const startedAt = Date.now();
    await writeAtomically(outAbs, async (tmp) => {
      const onLine = createProgressParser(({ outTimeSec, speedX, totalSize, end }) => {
        if (end) return;
        const done = outTimeSec ?? 0;
        const percent = total ? Math.min(99, (done / total) * 100) : 0;
        const elapsed = (Date.now() - startedAt) / 1000;
        ctx.progress({
          percent: Math.round(percent * 10) / 10,
          // The contract's speed is bytes per second: bytes written so far over the time taken.
          speed: totalSize !== null && elapsed > 0 ? Math.round(totalSize / elapsed) : null,
          eta: total && speedX ? Math.max(0, (total - done) / speedX) : null,
          step: speedX ? `muxing (${speedX}x)` : 'muxing',
        });
      });
      await runOrThrow(
        run,
        tools.ffmpeg,
        [
          '-nostdin', '-hide_banner', '-v', 'error', '-y', '-progress', 'pipe:1', '-nostats',
          '-i', mediaAbs,
          ...(dubAbs ? ['-i', dubAbs] : []),
          ...plan.args,
          '-f', MUXERS[container],
          tmp,
        ],
        { signal, what: `mux into ${container}`, onStdout: onLine, keepOutput: false },
      );

      ctx.progress({ percent: 99, step: 'checking the output' });
      const result = await probeMedia(run, tools.ffprobe, tmp, signal);
      const problems = checkOutput(result.streams, result.durationSec, total, container, plan.expected);
      if (problems.length > 0) {
        throw new PermanentError(`MUX_CHECK_FAILED: ${problems.join('; ')}`, 'MUX_CHECK_FAILED');
      }
      outDuration = result.durationSec;
    });

    const { size } = await stat(outAbs);
    ctx.progress({ percent: 100, step: 'done', final: true });
    ctx.log('info', `wrote ${fileName} (${size} bytes)`);
    const res: MuxResult = { outputPath: posix.join(payload.workDir, fileName), container, sizeBytes: size };
    const d = outDuration ?? total;
    if (d !== null) res.durationSec = Math.round(d * 1000) / 1000;
    return res;
  };
}

/** What is wrong with a muxed file; empty when it is what the plan promised. */
export function checkOutput(
  streams: ProbedStream[],
  durationSec: number | null,
  sourceDurationSec: number | null,
  container: OutputContainer,
  expected: MuxPlan['expected'],
): string[] {
  const problems: string[] = [];
  const video = streams.filter((s) => s.codec_type === 'video');
  const audio = streams.filter((s) => s.codec_type === 'audio');
  const other = streams.filter((s) => s.codec_type !== 'video' && s.codec_type !== 'audio');
  if (video.length !== expected.video) problems.push(`expected ${expected.video} video stream(s), found ${video.length}`);
  if (audio.length !== expected.audio) problems.push(`expected ${expected.audio} audio stream(s), found ${audio.length}`);
  if (other.length > 0) problems.push(`unexpected ${other.map((s) => s.codec_type ?? 'unknown').join(', ')} stream(s)`);
  if (container === 'webm') {
    for (const s of video) if (!WEBM_VIDEO.has(s.codec_name ?? '')) problems.push(`video codec ${s.codec_name} is not allowed in webm`);
    for (const s of audio) if (!WEBM_AUDIO.has(s.codec_name ?? '')) problems.push(`audio codec ${s.codec_name} is not allowed in webm`);
  }
  if (expected.dubLanguage) {
    const dub = audio[expected.audio - 1];
    const lang = dub?.tags?.language;
    const ok = lang === expected.dubLanguage || lang === T_TO_B[expected.dubLanguage];
    if (!ok) problems.push(`dubbed track language is ${lang ?? 'missing'}, expected ${expected.dubLanguage}`);
  }
  if (sourceDurationSec !== null) {
    const tolerance = Math.max(1, sourceDurationSec * 0.02);
    if (durationSec === null) problems.push('output has no duration');
    else if (Math.abs(durationSec - sourceDurationSec) > tolerance) {
      problems.push(`output lasts ${durationSec.toFixed(2)} s, source ${sourceDurationSec.toFixed(2)} s`);
    }
  }
  return problems;
}
