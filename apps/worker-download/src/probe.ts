import { PermanentError } from '@dubgate/worker-sdk/errors';
import { runChild } from '@dubgate/worker-sdk/child';
import { findExecutable } from './tools.js';

export interface ProbeResult {
  durationSec?: number;
  width?: number;
  height?: number;
  videoCodec?: string;
  audioCodec?: string;
  title?: string;
  /** ffprobe's format_name, e.g. `mov,mp4,m4a,3gp,3g2,mj2`. */
  formatName?: string;
}

interface FfprobeStream {
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  disposition?: { attached_pic?: number };
}
interface FfprobeOutput {
  streams?: FfprobeStream[];
  format?: { duration?: string; format_name?: string; tags?: Record<string, string> };
}

export const NOT_MEDIA = 'NOT_MEDIA';

/** Parses `ffprobe -show_format -show_streams -of json` output. Null when there is no audio or video. */
export function parseProbe(json: string): ProbeResult | null {
  let data: FfprobeOutput;
  try {
    data = JSON.parse(json) as FfprobeOutput;
  } catch {
    return null;
  }
  const streams = data.streams ?? [];
  const video = streams.find((s) => s.codec_type === 'video' && !s.disposition?.attached_pic);
  const audio = streams.find((s) => s.codec_type === 'audio');
  if (!video && !audio) return null;
  const out: ProbeResult = {};
  const duration = Number(data.format?.duration);
  if (Number.isFinite(duration) && duration >= 0) out.durationSec = Math.round(duration * 1000) / 1000;
  if (video) {
    if (Number.isInteger(video.width) && video.width! >= 0) out.width = video.width!;
    if (Number.isInteger(video.height) && video.height! >= 0) out.height = video.height!;
    if (video.codec_name) out.videoCodec = video.codec_name.slice(0, 64);
  }
  if (audio?.codec_name) out.audioCodec = audio.codec_name.slice(0, 64);
  const tags = data.format?.tags ?? {};
  const title = tags.title ?? tags.TITLE;
  if (title?.trim()) out.title = title.trim().slice(0, 1000);
  if (data.format?.format_name) out.formatName = data.format.format_name;
  return out;
}

/**
 * ffprobe on a local file. Only the `file` protocol is allowed, so a playlist posing as media can
 * not make ffprobe fetch anything. A file ffprobe cannot read as media → PermanentError NOT_MEDIA.
 */
export async function probeMedia(file: string, signal: AbortSignal, env: NodeJS.ProcessEnv = process.env): Promise<ProbeResult> {
  const ffprobe = findExecutable('ffprobe', env);
  if (!ffprobe) throw new PermanentError('ffprobe is not installed (install ffmpeg: apt-get install ffmpeg)', 'TOOL_MISSING');
  const out: string[] = [];
  const result = await runChild(
    ffprobe,
    ['-v', 'error', '-protocol_whitelist', 'file', '-show_format', '-show_streams', '-of', 'json', file],
    { signal, env, onStdout: (l) => out.push(l), timeoutMs: 60_000 },
  );
  const parsed = result.code === 0 ? parseProbe(out.join('\n')) : null;
  if (!parsed) {
    const why = result.stderrTail.trim().split('\n').at(-1)?.slice(0, 300) || 'no audio or video stream';
    throw new PermanentError(`not a media file: ${why}`, NOT_MEDIA);
  }
  return parsed;
}
