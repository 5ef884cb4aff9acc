import { execFile } from 'node:child_process';
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MuxPayload } from '@dubgate/contracts/stages';
import { checkOutput, createMuxProcessor, createProgressParser, planMux } from '../src/mux.js';
import { toIso639_2 } from '../src/languages.js';
import { fakeContext, makeMediaRoot, makeSources, probeJson } from './helpers.js';

let root: string;
let sources: { mediaPath: string; dubPath: string };
beforeAll(async () => {
  root = await makeMediaRoot();
  sources = await makeSources(root, 'job1', { subs: true });
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function payload(extra: Partial<MuxPayload> & Pick<MuxPayload, 'outputContainer'>): MuxPayload {
  return { jobId: 'job1', generation: 0, workDir: 'job1', mediaPath: sources.mediaPath, ...extra };
}

const kinds = (p: Awaited<ReturnType<typeof probeJson>>) => p.streams.map((s) => s.codec_type);

describe('mux processor', () => {
  const expectedCodecs = {
    mp4: { video: 'h264', audio: ['aac', 'aac'], format: 'mov,mp4' },
    mov: { video: 'h264', audio: ['aac', 'aac'], format: 'mov,mp4' },
    mkv: { video: 'h264', audio: ['aac', 'opus'], format: 'matroska' },
    webm: { video: 'vp9', audio: ['opus', 'opus'], format: 'matroska' },
  } as const;

  for (const container of ['mp4', 'mkv', 'webm', 'mov'] as const) {
    it(`muxes video, original audio and the dubbed track into ${container}`, async () => {
      const f = fakeContext('mux', root, payload({ outputContainer: container, dubbedAudioPath: sources.dubPath, dubbedLanguage: 'es' }));
      const result = await createMuxProcessor()(f.ctx);
      expect(result).toEqual({
        outputPath: `job1/output.${container}`,
        container,
        sizeBytes: expect.any(Number),
        durationSec: expect.closeTo(4, 0),
      });
      const out = join(root, result.outputPath);
      expect((await stat(out)).size).toBe(result.sizeBytes);
      const p = await probeJson(out);
      expect(p.format.format_name).toContain(expectedCodecs[container].format);
      // One video and two audio streams: the source's subtitles are not carried over.
      expect(kinds(p)).toEqual(['video', 'audio', 'audio']);
      expect(p.streams[0]!.codec_name).toBe(expectedCodecs[container].video);
      expect(p.streams.slice(1).map((s) => s.codec_name)).toEqual(expectedCodecs[container].audio);
      const [orig, dub] = [p.streams[1]!, p.streams[2]!];
      expect(dub.tags?.language).toBe('spa');
      expect(orig.disposition?.default).toBe(1);
      expect(dub.disposition?.default).toBe(0);
      const title = dub.tags?.title ?? dub.tags?.handler_name;
      expect(title).toBe('Dubbed (es)');
      expect(Math.abs(Number(p.format.duration) - 4)).toBeLessThan(0.5);
      // Progress: reported from ffmpeg's -progress output, then 100 at the end.
      expect(f.progress.some((x) => x.step?.startsWith('muxing'))).toBe(true);
      expect(f.progress.at(-1)).toMatchObject({ percent: 100, step: 'done' });
      const files = await readdir(join(root, 'job1'));
      expect(files.filter((n) => n.endsWith('.part'))).toEqual([]);
    });
  }

  it('muxes without a dubbed track: one video and one audio stream', async () => {
    const f = fakeContext('mux', root, payload({ outputContainer: 'mp4' }));
    const result = await createMuxProcessor()(f.ctx);
    const p = await probeJson(join(root, result.outputPath));
    expect(kinds(p)).toEqual(['video', 'audio']);
    expect(p.streams.map((s) => s.codec_name)).toEqual(['h264', 'aac']);
  });

  it('is idempotent: muxing again replaces the output with an equivalent one', async () => {
    const p = payload({ outputContainer: 'mkv', dubbedAudioPath: sources.dubPath, dubbedLanguage: 'es' });
    const a = await createMuxProcessor()(fakeContext('mux', root, p).ctx);
    const b = await createMuxProcessor()(fakeContext('mux', root, p).ctx);
    expect(b.outputPath).toBe(a.outputPath);
    expect(kinds(await probeJson(join(root, b.outputPath)))).toEqual(['video', 'audio', 'audio']);
  });

  it('fails permanently when the media or the dubbed track is missing', async () => {
    await expect(createMuxProcessor()(fakeContext('mux', root, payload({ outputContainer: 'mp4', mediaPath: 'job1/nope.mp4' })).ctx)).rejects.toMatchObject({
      name: 'PermanentError',
      code: 'MEDIA_MISSING',
    });
    await expect(
      createMuxProcessor()(fakeContext('mux', root, payload({ outputContainer: 'mp4', dubbedAudioPath: 'job1/nope.wav', dubbedLanguage: 'es' })).ctx),
    ).rejects.toMatchObject({ code: 'DUBBED_AUDIO_MISSING' });
  });

  it('an abort mid-mux kills ffmpeg and leaves no output file', async () => {
    const long = await makeSources(root, 'slow', { duration: 40, size: '640x480' });
    const f = fakeContext(
      'mux',
      root,
      { jobId: 'slow', generation: 0, workDir: 'slow', mediaPath: long.mediaPath, dubbedAudioPath: long.dubPath, dubbedLanguage: 'es', outputContainer: 'webm' },
      {
        onProgress: (p, controller) => {
          if (p.percent > 0 && p.step?.startsWith('muxing')) controller.abort('canceled: test');
        },
      },
    );
    const started = Date.now();
    const err = await createMuxProcessor()(f.ctx).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'AbortError' });
    expect(Date.now() - started).toBeLessThan(15_000);
    const files = await readdir(join(root, 'slow'));
    expect(files.sort()).toEqual(['dub.es.wav', 'source.mp4']);
    // No ffmpeg still writing into that directory.
    const { stdout } = await promisify(execFile)('ps', ['-eo', 'args']);
    expect(stdout.split('\n').filter((l) => l.includes('ffmpeg') && l.includes(join(root, 'slow')))).toEqual([]);
    const last = f.progress.at(-1)!;
    expect(last.percent).toBeLessThan(100);
  });
});

describe('mux planning and checks', () => {
  const h264 = [
    { index: 0, codec_type: 'video', codec_name: 'h264' },
    { index: 1, codec_type: 'audio', codec_name: 'aac' },
    { index: 2, codec_type: 'subtitle', codec_name: 'mov_text' },
  ];

  it('copies what the container allows and transcodes the rest', () => {
    expect(planMux({ container: 'mp4', source: h264, hasDub: false }).args).toEqual(
      expect.arrayContaining(['-map', '0:0', '-map', '0:1', '-c:v', 'copy', '-c:a:0', 'copy', '-sn', '-movflags', '+faststart']),
    );
    const vp9 = [
      { index: 0, codec_type: 'video', codec_name: 'vp9' },
      { index: 1, codec_type: 'audio', codec_name: 'opus' },
    ];
    const toMp4 = planMux({ container: 'mp4', source: vp9, hasDub: true, dubbedLanguage: 'de-AT' });
    expect(toMp4.args).toEqual(expect.arrayContaining(['-c:v', 'libx264', '-c:a:0', 'aac', '-c:a:1', 'aac', 'language=deu', 'title=Dubbed (de-AT)']));
    expect(toMp4.expected).toEqual({ video: 1, audio: 2, dubLanguage: 'deu' });
    expect(planMux({ container: 'webm', source: vp9, hasDub: false }).args).toEqual(expect.arrayContaining(['-c:v', 'copy', '-c:a:0', 'copy']));
    expect(planMux({ container: 'webm', source: h264, hasDub: false }).args).toEqual(expect.arrayContaining(['-c:v', 'libvpx-vp9', '-c:a:0', 'libopus']));
    expect(planMux({ container: 'mkv', source: h264, hasDub: true }).args).toEqual(expect.arrayContaining(['-c:v', 'copy', '-c:a:1', 'libopus', 'language=und']));
  });

  it('skips cover art, handles audio-only media, and makes the dub default when it is the only audio', () => {
    const cover = [
      { index: 0, codec_type: 'video', codec_name: 'mjpeg', disposition: { attached_pic: 1 } },
      { index: 1, codec_type: 'audio', codec_name: 'mp3' },
    ];
    expect(planMux({ container: 'mp4', source: cover, hasDub: false }).expected).toEqual({ video: 0, audio: 1, dubLanguage: null });
    const videoOnly = planMux({ container: 'mkv', source: [{ index: 0, codec_type: 'video', codec_name: 'h264' }], hasDub: true, dubbedLanguage: 'es' });
    expect(videoOnly.args).toEqual(expect.arrayContaining(['-disposition:a:0', 'default', 'language=spa']));
    expect(() => planMux({ container: 'mp4', source: [], hasDub: false })).toThrow(/NOTHING_TO_MUX/);
  });

  it('checks the output: stream counts, webm codecs, dub language (ISO 639-2/T or /B), duration', () => {
    const expected = { video: 1, audio: 2, dubLanguage: 'deu' };
    const good = [
      { index: 0, codec_type: 'video', codec_name: 'vp9' },
      { index: 1, codec_type: 'audio', codec_name: 'opus' },
      { index: 2, codec_type: 'audio', codec_name: 'opus', tags: { language: 'ger' } },
    ];
    expect(checkOutput(good, 10.1, 10, 'webm', expected)).toEqual([]);
    expect(checkOutput(good.slice(0, 2), 10, 10, 'webm', expected)).toEqual([
      'expected 2 audio stream(s), found 1',
      'dubbed track language is missing, expected deu',
    ]);
    expect(checkOutput([{ ...good[0]!, codec_name: 'h264' }, ...good.slice(1)], 10, 10, 'webm', expected)).toEqual(['video codec h264 is not allowed in webm']);
    expect(checkOutput(good, 5, 10, 'webm', expected)).toEqual(['output lasts 5.00 s, source 10.00 s']);
  });

  it('parses ffmpeg -progress blocks', () => {
    const blocks: unknown[] = [];
    const feed = createProgressParser((b) => blocks.push(b));
    for (const l of ['frame=10', 'total_size=1000', 'out_time_us=2000000', 'speed=1.5x', 'progress=continue', 'out_time_us=N/A', 'speed=N/A', 'progress=end']) feed(l);
    expect(blocks).toEqual([
      { outTimeSec: 2, speedX: 1.5, totalSize: 1000, end: false },
      { outTimeSec: 2, speedX: null, totalSize: 1000, end: true },
    ]);
  });

  it('maps BCP 47 tags to ISO 639-2', () => {
    expect(toIso639_2('es')).toBe('spa');
    expect(toIso639_2('pt-BR')).toBe('por');
    expect(toIso639_2('zh-Hans')).toBe('zho');
    expect(toIso639_2('yue')).toBe('yue');
    expect(toIso639_2('qq')).toBe('und');
    expect(toIso639_2(undefined)).toBe('und');
  });
});
