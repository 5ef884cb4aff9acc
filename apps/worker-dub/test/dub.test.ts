import { createHash } from 'node:crypto';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DubPayload } from '@dubgate/contracts/stages';
import { createDubProcessor, cueSlots } from '../src/dub.js';
import { runChild } from '@dubgate/worker-sdk/child';
import type { RunChild } from '../src/tools.js';
import { parseVoiceList, pickVoice } from '../src/voice.js';
import { TEST_SRT, fakeContext, makeMediaRoot, makeTestVideo, maxVolume, probeJson } from './helpers.js';

let root: string;
beforeAll(async () => {
  root = await makeMediaRoot();
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** runChild, counting the espeak-ng calls that speak (not the voice listing). */
function countingRunner() {
  const spoken: string[][] = [];
  const run: RunChild = (cmd, args, opts) => {
    if (cmd === 'espeak-ng' && args.includes('-w')) spoken.push(args);
    return runChild(cmd, args, opts);
  };
  return { run, spoken };
}

function payload(jobId: string, mediaPath: string, extra: Partial<DubPayload> = {}): DubPayload {
  return { jobId, generation: 0, workDir: jobId, mediaPath, targetLang: 'es', ...extra };
}

const sha = async (file: string) => createHash('sha256').update(await readFile(file)).digest('hex');

describe('dub processor', () => {
  it('dubs from a sidecar SRT: a track as long as the media, speech where the cues are, silence before', async () => {
    const mediaPath = await makeTestVideo(root, 'side1', { subs: 'none' });
    await writeFile(join(root, 'side1', 'subs.srt'), TEST_SRT);
    const { run, spoken } = countingRunner();
    const f = fakeContext('dub', root, payload('side1', mediaPath, { subtitlePath: 'side1/subs.srt' }));
    const result = await createDubProcessor({ run })(f.ctx);

    expect(result).toEqual({ audioPath: 'side1/dub.es.wav', language: 'es', cues: 4, durationSec: expect.closeTo(4, 1) });
    expect(spoken).toHaveLength(4);
    expect(spoken[0]).toEqual(expect.arrayContaining(['-v', 'es']));
    const out = join(root, result.audioPath);
    const probe = await probeJson(out);
    expect(probe.streams[0]!.codec_name).toBe('pcm_s16le');
    const media = await probeJson(join(root, mediaPath));
    expect(Math.abs(Number(probe.format.duration) - Number(media.format.duration))).toBeLessThan(0.05);
    // Cue 1 is 0.2–1.0 s, cue 3 is 2.0–2.8 s: speech there; nothing before the first cue.
    expect(await maxVolume(out, 0.25, 0.95)).toBeGreaterThan(-30);
    expect(await maxVolume(out, 2.05, 2.75)).toBeGreaterThan(-30);
    expect(await maxVolume(out, 0, 0.19)).toBeLessThan(-80);

    expect(f.checkpoints.map((c) => c.cuesDone)).toEqual([1, 2, 3, 4]);
    expect(f.checkpoints.every((c) => c.cuesTotal === 4 && typeof c.state?.fingerprint === 'string')).toBe(true);
    expect(f.progress.map((p) => p.step)).toEqual(expect.arrayContaining(['cue 1/4', 'cue 4/4']));
    expect(f.progress.at(-1)).toEqual({ percent: 100, step: 'done' });
    // No leftovers: the work directory and .part files are gone.
    expect((await readdir(join(root, 'side1'))).sort()).toEqual(['dub.es.wav', 'source.mp4', 'subs.srt']);
  });

  it('dubs from a WebVTT sidecar, and a second run gives the same bytes', async () => {
    const mediaPath = await makeTestVideo(root, 'vtt1', { subs: 'none' });
    const vtt = 'WEBVTT\n\n00:00.500 --> 00:01.500\nUno dos tres\n\n00:02.500 --> 00:03.500\n<b>Cuatro</b>\n';
    await writeFile(join(root, 'vtt1', 'subs.vtt'), vtt);
    const p = payload('vtt1', mediaPath, { subtitlePath: 'vtt1/subs.vtt' });
    const processor = createDubProcessor();
    const first = await processor(fakeContext('dub', root, p).ctx);
    expect(first.cues).toBe(2);
    const hash1 = await sha(join(root, first.audioPath));
    const second = await processor(fakeContext('dub', root, p).ctx);
    expect(second).toEqual(first);
    expect(await sha(join(root, second.audioPath))).toBe(hash1);
    expect(await maxVolume(join(root, first.audioPath), 0.55, 1.4)).toBeGreaterThan(-30);
  });

  it('dubs from an embedded mov_text stream (mp4) and an embedded SubRip stream (mkv)', async () => {
    for (const subs of ['mp4', 'mkv'] as const) {
      const jobId = `emb-${subs}`;
      const mediaPath = await makeTestVideo(root, jobId, { subs });
      const f = fakeContext('dub', root, payload(jobId, mediaPath, { targetLang: 'en-US' }));
      const result = await createDubProcessor()(f.ctx);
      expect(result.cues).toBe(4);
      expect(result.audioPath).toBe(`${jobId}/dub.en-US.wav`);
      const out = join(root, result.audioPath);
      expect(Math.abs(Number((await probeJson(out)).format.duration) - 4)).toBeLessThan(0.1);
      expect(await maxVolume(out, 3.05, 3.75)).toBeGreaterThan(-30);
      expect(f.logs.some((l) => l.message.includes('embedded stream'))).toBe(true);
    }
  });

  it('falls back to the embedded stream when the sidecar is missing', async () => {
    const mediaPath = await makeTestVideo(root, 'fallback', { subs: 'mp4' });
    const f = fakeContext('dub', root, payload('fallback', mediaPath, { subtitlePath: 'fallback/nope.srt' }));
    const result = await createDubProcessor()(f.ctx);
    expect(result.cues).toBe(4);
    expect(f.logs.some((l) => l.level === 'warn' && l.message.includes('missing'))).toBe(true);
  });

  it('fails permanently with NO_SUBTITLES when there are none', async () => {
    const mediaPath = await makeTestVideo(root, 'nosubs', { subs: 'none' });
    const f = fakeContext('dub', root, payload('nosubs', mediaPath));
    const err = await createDubProcessor()(f.ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ name: 'PermanentError', code: 'NO_SUBTITLES', message: 'NO_SUBTITLES: the media has no subtitles to dub' });
    // An empty sidecar and no stream: the same.
    await writeFile(join(root, 'nosubs', 'empty.srt'), '\n\n');
    const f2 = fakeContext('dub', root, payload('nosubs', mediaPath, { subtitlePath: 'nosubs/empty.srt' }));
    await expect(createDubProcessor()(f2.ctx)).rejects.toMatchObject({ code: 'NO_SUBTITLES' });
    await expect(stat(join(root, 'nosubs', 'dub.es.wav'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('resumes from a checkpoint: only the cues after it are spoken again', async () => {
    const mediaPath = await makeTestVideo(root, 'resume', { subs: 'mp4' });
    const p = payload('resume', mediaPath);
    const firstRun = countingRunner();
    const f1 = fakeContext('dub', root, p, {
      onCheckpoint: (cp, controller) => {
        if (cp.cuesDone === 2) controller.abort('canceled: test');
      },
    });
    await expect(createDubProcessor({ run: firstRun.run })(f1.ctx)).rejects.toThrow();
    expect(firstRun.spoken).toHaveLength(2);
    const saved = f1.checkpoints.at(-1)!;
    expect(saved).toMatchObject({ cuesDone: 2, cuesTotal: 4 });
    const workDir = join(root, 'resume', 'dub-work');
    const clip0 = await stat(join(workDir, 'cue-0.wav'));
    await expect(stat(join(root, 'resume', 'dub.es.wav'))).rejects.toMatchObject({ code: 'ENOENT' });

    const secondRun = countingRunner();
    const f2 = fakeContext('dub', root, { ...p, checkpoint: saved });
    const result = await createDubProcessor({ run: secondRun.run })(f2.ctx);
    expect(result.cues).toBe(4);
    // Cues 3 and 4 only.
    expect(secondRun.spoken).toHaveLength(2);
    expect(secondRun.spoken.map((a) => a[a.indexOf('-f') + 1]!.replace(/.*\//, ''))).toEqual(['cue-2.txt', 'cue-3.txt']);
    expect(f2.checkpoints.map((c) => c.cuesDone)).toEqual([3, 4]);
    expect(f2.logs.some((l) => l.message.includes('resuming after cue 2/4'))).toBe(true);
    expect(clip0.size).toBeGreaterThan(44);

    // The resumed track is the same as one made in one go.
    const fresh = await makeTestVideo(root, 'resume-ref', { subs: 'mp4' });
    const ref = await createDubProcessor()(fakeContext('dub', root, payload('resume-ref', fresh)).ctx);
    expect(await sha(join(root, result.audioPath))).toBe(await sha(join(root, ref.audioPath)));
  });

  it('on resume re-renders a missing clip alone, and ignores a checkpoint made for other inputs', async () => {
    const mediaPath = await makeTestVideo(root, 'resume2', { subs: 'mp4' });
    const p = payload('resume2', mediaPath);
    const f1 = fakeContext('dub', root, p, {
      onCheckpoint: (cp, controller) => {
        if (cp.cuesDone === 3) controller.abort();
      },
    });
    await expect(createDubProcessor()(f1.ctx)).rejects.toThrow();
    const saved = f1.checkpoints.at(-1)!;
    await rm(join(root, 'resume2', 'dub-work', 'cue-1.wav'));

    const r2 = countingRunner();
    await createDubProcessor({ run: r2.run })(fakeContext('dub', root, { ...p, checkpoint: saved }).ctx);
    expect(r2.spoken.map((a) => a[a.indexOf('-f') + 1]!.replace(/.*\//, ''))).toEqual(['cue-1.txt', 'cue-3.txt']);

    const r3 = countingRunner();
    const f3 = fakeContext('dub', root, { ...p, checkpoint: { cuesDone: 3, cuesTotal: 4, state: { fingerprint: 'other' } } });
    await createDubProcessor({ run: r3.run })(f3.ctx);
    expect(r3.spoken).toHaveLength(4);
    expect(f3.logs.some((l) => l.level === 'warn' && l.message.includes('other inputs'))).toBe(true);
  });

  it('uses the translation hook, and passes text that looks like options or shell safely', async () => {
    const mediaPath = await makeTestVideo(root, 'hook', { subs: 'none' });
    await writeFile(join(root, 'hook', 's.srt'), '1\n00:00:00,500 --> 00:00:02,000\n--help $(touch /tmp/pwned-dub) `id`; "quoted"\n');
    const seen: Array<{ text: string; to: string; from: string | undefined }> = [];
    const f = fakeContext('dub', root, payload('hook', mediaPath, { subtitlePath: 'hook/s.srt', targetLang: 'fr' }));
    const result = await createDubProcessor({
      translate: (text, o) => {
        seen.push({ text, to: o.to, from: o.from });
        return `${text} traduit`;
      },
    })(f.ctx);
    expect(result.cues).toBe(1);
    expect(seen).toEqual([{ text: '--help $(touch /tmp/pwned-dub) `id`; "quoted"', to: 'fr', from: undefined }]);
    await expect(stat('/tmp/pwned-dub')).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await maxVolume(join(root, result.audioPath), 0.55, 1.9)).toBeGreaterThan(-30);
  });

  it('falls back to English for a language espeak-ng does not have, with a warning', async () => {
    const mediaPath = await makeTestVideo(root, 'xx', { subs: 'mp4' });
    const { run, spoken } = countingRunner();
    const f = fakeContext('dub', root, payload('xx', mediaPath, { targetLang: 'xx' }));
    const result = await createDubProcessor({ run })(f.ctx);
    expect(result.language).toBe('xx');
    expect(spoken[0]).toEqual(expect.arrayContaining(['-v', 'en']));
    expect(f.logs.some((l) => l.level === 'warn' && l.message.includes('no voice for "xx"'))).toBe(true);
  });

  it('aborting while speaking leaves no final track and no partial clip', async () => {
    const mediaPath = await makeTestVideo(root, 'abort', { subs: 'mp4' });
    const f = fakeContext('dub', root, payload('abort', mediaPath));
    const run: RunChild = (cmd, args, opts) => {
      if (cmd === 'espeak-ng' && args.includes('-w')) setTimeout(() => f.controller.abort('canceled'), 1);
      return runChild(cmd, args, opts);
    };
    await expect(createDubProcessor({ run })(f.ctx)).rejects.toThrow();
    const files = await readdir(join(root, 'abort', 'dub-work'));
    expect(files.filter((n) => n.endsWith('.part') || /^cue-\d+\.wav$/.test(n))).toEqual([]);
    await expect(stat(join(root, 'abort', 'dub.es.wav'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('voices and slots', () => {
  const list = [
    'Pty Language       Age/Gender VoiceName          File                 Other Languages',
    ' 5  pt              --/M      Portuguese_(Portugal) roa/pt               (pt-pt 5)',
    ' 5  pt-br           --/M      Portuguese_(Brazil) roa/pt-BR            (pt 6)',
    ' 6  pt-br           --/F      brazil-mbrola-2    mb/mb-br2            (pt 8)',
  ];
  it('prefers the full tag, then the best voice for the primary subtag, skipping MBROLA', () => {
    const rows = parseVoiceList(list);
    expect(rows).toHaveLength(3);
    expect(pickVoice(rows, 'pt-BR')).toBe('pt-br');
    expect(pickVoice(rows, 'pt')).toBe('pt');
    expect(pickVoice(parseVoiceList([list[0]!, ' 1  ja  --/M  japanese-mbrola-1  mb/mb-jp1']), 'ja')).toBeNull();
    expect(pickVoice(parseVoiceList([list[0]!]), 'xx')).toBeNull();
  });
  it('gives each cue the room up to the next cue, at least its own length', () => {
    const cues = [
      { start: 0, end: 1, text: 'a' },
      { start: 2, end: 4, text: 'b' },
      { start: 3, end: 3.5, text: 'overlapping' },
    ];
    expect(cueSlots(cues, 10)).toEqual([2, 2, 7]);
  });
});
