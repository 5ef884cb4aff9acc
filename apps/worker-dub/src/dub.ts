/**
 * The dub stage: subtitles in, one spoken audio track out.
 *
 * 1. Cues come from the sidecar `subtitlePath` (SRT or WebVTT), else from the media's first
 *    text subtitle stream (extracted with ffmpeg as SRT). No cues: a permanent NO_SUBTITLES error.
 * 2. Each cue is translated (the identity by default: translation is out of scope, see
 *    translate.ts), spoken by espeak-ng with a voice for `targetLang`, sped up (atempo, at most
 *    2x) when it is longer than its slot, and stored as `dub-work/cue-<i>.wav` (24 kHz mono PCM),
 *    written atomically. After each cue a checkpoint `{ cuesDone: i+1, cuesTotal }` is saved.
 * 3. The clips are placed at their cue starts in one track as long as the media (assemble.ts),
 *    written atomically to `<jobId>/dub.<lang>.wav`.
 *
 * Resume: with `payload.checkpoint` the cues before `cuesDone` are not spoken again; their clips
 * are on disk (one that is missing or unreadable is rendered again, alone). The checkpoint's
 * `state.fingerprint` ties it to the cues, voice and media length it was made for: a checkpoint
 * for other inputs is ignored and the dub starts over.
 */
import { createHash } from 'node:crypto';
import { access, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { DubCheckpoint, DubResult } from '@dubgate/contracts/stages';
import { runChild } from '@dubgate/worker-sdk/child';
import { PermanentError, throwIfAborted } from '@dubgate/worker-sdk/errors';
import { writeAtomically } from '@dubgate/worker-sdk/files';
import type { StageContext } from '@dubgate/worker-sdk/worker';
import { parseSubtitles, type Cue } from './subtitles.js';
import { identityTranslate, translate, type Translator } from './translate.js';
import { assembleTrack } from './assemble.js';
import { SAMPLE_RATE, CHANNELS, readWav, wavDurationSec } from './wav.js';
import { resolveVoice } from './voice.js';
import { defaultTools, probeDuration, probeStreams, runOrThrow, type RunChild, type Tools } from './tools.js';

export const NO_SUBTITLES_MESSAGE = 'NO_SUBTITLES: the media has no subtitles to dub';
/** Largest speed-up applied to a clip that is longer than its slot. */
export const MAX_TEMPO = 2.0;
/** Bumped when the rendering of a clip changes, so old checkpoints are not trusted. */
const RENDER_VERSION = 1;
const WORK_SUBDIR = 'dub-work';

// Text subtitle codecs ffmpeg can turn into SRT; bitmap ones (PGS, VobSub, DVB) cannot be read.
const TEXT_SUBTITLE_CODECS = new Set(['subrip', 'srt', 'ass', 'ssa', 'webvtt', 'mov_text', 'text', 'microdvd', 'subviewer', 'subviewer1', 'sami', 'realtext', 'jacosub', 'mpl2', 'pjs', 'vplayer', 'stl', 'ttml']);

export interface DubProcessorOptions {
  /** Runs child processes; defaults to the SDK's runChild (kills the process group on abort). */
  run?: RunChild;
  /** The translation hook; the identity by default. */
  translate?: Translator;
  tools?: Partial<Tools>;
}

type DubContext = StageContext<'dub'>;

interface CueSource {
  cues: Cue[];
  source: string;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

async function loadCues(ctx: DubContext, run: RunChild, tools: Tools, workDir: string, mediaAbs: string): Promise<CueSource> {
  const { payload, signal } = ctx;
  if (payload.subtitlePath) {
    const abs = ctx.resolvePath(payload.subtitlePath);
    let text: string | null = null;
    try {
      text = await readFile(abs, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      ctx.log('warn', `subtitle file ${payload.subtitlePath} is missing; looking for subtitles inside the media`);
    }
    if (text !== null) {
      const cues = parseSubtitles(text);
      if (cues.length > 0) return { cues, source: payload.subtitlePath };
      ctx.log('warn', `subtitle file ${payload.subtitlePath} has no cues; looking for subtitles inside the media`);
    }
  }

  const streams = (await probeStreams(run, tools.ffprobe, mediaAbs, signal)).filter((s) => s.codec_type === 'subtitle');
  if (streams.length === 0) throw new PermanentError(NO_SUBTITLES_MESSAGE, 'NO_SUBTITLES');
  const textStream = streams.find((s) => TEXT_SUBTITLE_CODECS.has(s.codec_name ?? ''));
  if (!textStream) {
    const codecs = [...new Set(streams.map((s) => s.codec_name ?? 'unknown'))].join(', ');
    throw new PermanentError(`NO_SUBTITLES: the media has only image-based subtitles (${codecs}), which cannot be read as text`, 'NO_SUBTITLES');
  }
  const srtPath = join(workDir, 'embedded.srt');
  await writeAtomically(srtPath, async (tmp) => {
    await runOrThrow(
      run,
      tools.ffmpeg,
      ['-nostdin', '-v', 'error', '-y', '-i', mediaAbs, '-map', `0:${textStream.index}`, '-f', 'srt', tmp],
      { signal, what: 'extract the embedded subtitles' },
    );
  });
  const cues = parseSubtitles(await readFile(srtPath, 'utf8'));
  if (cues.length === 0) throw new PermanentError(NO_SUBTITLES_MESSAGE, 'NO_SUBTITLES');
  return { cues, source: `embedded stream #${textStream.index} (${textStream.codec_name})` };
}

/** Seconds a cue's clip may last before it is sped up: up to the next cue's start (or the track end), at least the cue itself. */
export function cueSlots(cues: readonly Cue[], trackEnd: number): number[] {
  // Cues are sorted by start; the inner scan only skips cues that start at the same time.
  return cues.map((cue, i) => {
    let j = i + 1;
    while (j < cues.length && cues[j]!.start <= cue.start) j++;
    const limit = j < cues.length ? cues[j]!.start : Math.max(trackEnd, cue.end);
    return Math.max(cue.end - cue.start, limit - cue.start, 0.05);
  });
}

function fingerprint(cues: readonly Cue[], voice: string, lang: string, durationSec: number): string {
  return createHash('sha256')
    .update(JSON.stringify({ v: RENDER_VERSION, rate: SAMPLE_RATE, voice, lang, durationSec, cues }))
    .digest('hex')
    .slice(0, 32);
}

/** A clip that exists and parses as the track's format: a finished render (clips are written atomically). */
async function clipIsUsable(path: string): Promise<boolean> {
  try {
    const w = await readWav(path);
    return w.sampleRate === SAMPLE_RATE && w.channels === CHANNELS && w.bitsPerSample === 16;
  } catch {
    return false;
  }
}

export function createDubProcessor(options: DubProcessorOptions = {}) {
  const run = options.run ?? runChild;
  const translator = options.translate ?? identityTranslate;
  const tools: Tools = { ...defaultTools(), ...options.tools };

  return async function processDub(ctx: DubContext): Promise<DubResult> {
    const { payload, signal } = ctx;
    const lang = payload.targetLang;
    const mediaAbs = ctx.resolvePath(payload.mediaPath);
    if (!(await exists(mediaAbs))) throw new PermanentError(`MEDIA_MISSING: ${payload.mediaPath} does not exist`, 'MEDIA_MISSING');
    const workDir = join(ctx.workDir, WORK_SUBDIR);
    await mkdir(workDir, { recursive: true });

    ctx.progress({ percent: 0, step: 'reading subtitles' });
    const { cues, source } = await loadCues(ctx, run, tools, workDir, mediaAbs);
    const mediaDuration = await probeDuration(run, tools.ffprobe, mediaAbs, signal);
    const trackEnd = mediaDuration ?? cues.reduce((end, c) => Math.max(end, c.end), 0);
    const choice = await resolveVoice(run, tools.espeak, lang);
    if (choice.fallback) ctx.log('warn', `espeak-ng has no voice for "${lang}"; speaking with the English voice`);
    const n = cues.length;
    ctx.log('info', `dubbing ${n} cues from ${source} into ${lang} (espeak-ng voice ${choice.voice})`);

    const fp = fingerprint(cues, choice.voice, lang, trackEnd);
    const state = { fingerprint: fp, voice: choice.voice };
    let startAt = 0;
    const cp = payload.checkpoint;
    if (cp && cp.cuesDone > 0) {
      const cpFingerprint = cp.state?.fingerprint;
      if (cp.cuesTotal !== n || (cpFingerprint !== undefined && cpFingerprint !== fp)) {
        ctx.log('warn', `checkpoint (${cp.cuesDone}/${cp.cuesTotal}) was made for other inputs; dubbing from the first cue`);
      } else {
        startAt = Math.min(cp.cuesDone, n);
        ctx.log('info', `resuming after cue ${startAt}/${n}`);
      }
    }

    const slots = cueSlots(cues, trackEnd);
    const clipPath = (i: number) => join(workDir, `cue-${i}.wav`);

    const renderCue = async (i: number) => {
      const cue = cues[i]!;
      const spoken = await translate(translator, cue.text, { from: undefined, to: lang, signal });
      const textFile = join(workDir, `cue-${i}.txt`);
      const rawWav = join(workDir, `cue-${i}.espeak.wav`);
      // The text goes through a file (-f), never a shell or an argument: a line starting with
      // '-' cannot be taken for an option, and quotes or `$(...)` are just words.
      await writeFile(textFile, `${spoken}\n`, 'utf8');
      try {
        await runOrThrow(run, tools.espeak, ['-v', choice.voice, '-f', textFile, '-w', rawWav], { signal, what: `speak cue ${i + 1}` });
        const length = wavDurationSec(await readWav(rawWav));
        const tempo = length > slots[i]! ? Math.min(MAX_TEMPO, length / slots[i]!) : 1;
        const filters = tempo > 1.001 ? ['-af', `atempo=${tempo.toFixed(4)}`] : [];
        await writeAtomically(clipPath(i), async (tmp) => {
          await runOrThrow(
            run,
            tools.ffmpeg,
            ['-nostdin', '-v', 'error', '-y', '-i', rawWav, ...filters, '-ar', String(SAMPLE_RATE), '-ac', String(CHANNELS), '-c:a', 'pcm_s16le', '-bitexact', '-f', 'wav', tmp],
            { signal, what: `convert cue ${i + 1}` },
          );
        });
      } finally {
        await rm(rawWav, { force: true });
        await rm(textFile, { force: true });
      }
    };

    for (let i = 0; i < n; i++) {
      throwIfAborted(signal);
      if (i < startAt) {
        if (await clipIsUsable(clipPath(i))) continue;
        ctx.log('warn', `clip of cue ${i + 1} is missing; rendering it again`);
        await renderCue(i);
        continue;
      }
      await renderCue(i);
      await ctx.checkpoint({ cuesDone: i + 1, cuesTotal: n, state } satisfies DubCheckpoint);
      ctx.progress({ percent: Math.round(((i + 1) / n) * 90 * 10) / 10, step: `cue ${i + 1}/${n}` });
    }

    throwIfAborted(signal);
    ctx.progress({ percent: 90, step: 'assembling the track' });
    const fileName = `dub.${lang}.wav`;
    const outAbs = join(ctx.workDir, fileName);
    await writeAtomically(outAbs, async (tmp) => {
      await assembleTrack({
        clips: cues.map((c, i) => ({ path: clipPath(i), startSec: c.start })),
        durationSec: trackEnd,
        outPath: tmp,
        signal,
        onProgress: (f) => ctx.progress({ percent: 90 + Math.round(f * 9 * 10) / 10, step: 'assembling the track' }),
      });
    });
    await rm(workDir, { recursive: true, force: true });
    ctx.progress({ percent: 100, step: 'done', final: true });
    ctx.log('info', `dubbed track written: ${fileName} (${n} cues, ${trackEnd.toFixed(2)} s)`);
    return {
      audioPath: posix.join(payload.workDir, fileName),
      language: lang,
      cues: n,
      durationSec: Math.round(trackEnd * 1000) / 1000,
    };
  };
}
