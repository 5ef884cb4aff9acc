import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assembleTrack } from '../src/assemble.js';
import { SAMPLE_RATE, parseWav, wavDurationSec, wavHeader } from '../src/wav.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dubgate-assemble-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A clip of `samples` samples, all equal to `value`. */
async function clip(name: string, samples: number, value: number): Promise<string> {
  const data = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++) data.writeInt16LE(value, i * 2);
  const path = join(dir, name);
  await writeFile(path, Buffer.concat([wavHeader(data.length), data]));
  return path;
}

const sampleAt = (wav: ReturnType<typeof parseWav>, sec: number) => wav.data.readInt16LE(Math.round(sec * SAMPLE_RATE) * 2);

describe('assembleTrack', () => {
  it('places clips at their starts, silence between, mixes overlaps with clipping, cuts at the end', async () => {
    const a = await clip('a.wav', SAMPLE_RATE, 1000); // 1 s
    const b = await clip('b.wav', SAMPLE_RATE / 2, 32000); // 0.5 s
    const out = join(dir, 'out.wav');
    const r = await assembleTrack({
      clips: [
        { path: b, startSec: 1.5 }, // overlaps a from 1.5 to 2.0: 33000 → clipped to 32767
        { path: a, startSec: 1 },
        { path: a, startSec: 4.5 }, // runs past the end: cut
        { path: a, startSec: 9 }, // starts after the end: skipped
      ],
      durationSec: 5,
      outPath: out,
    });
    expect(r).toEqual({ samples: 5 * SAMPLE_RATE, clipsPlaced: 3 });
    const wav = parseWav(await readFile(out));
    expect(wavDurationSec(wav)).toBe(5);
    expect(sampleAt(wav, 0.5)).toBe(0);
    expect(sampleAt(wav, 1.2)).toBe(1000);
    expect(sampleAt(wav, 1.7)).toBe(32767);
    expect(sampleAt(wav, 2.2)).toBe(0);
    expect(sampleAt(wav, 4.9)).toBe(1000);
  });

  it('scales to hundreds of clips over a long track', async () => {
    const c = await clip('c.wav', Math.round(SAMPLE_RATE * 1.5), 500);
    const clips = Array.from({ length: 400 }, (_, i) => ({ path: c, startSec: i * 2 }));
    const out = join(dir, 'long.wav');
    const t0 = Date.now();
    const r = await assembleTrack({ clips, durationSec: 800, outPath: out });
    expect(r.clipsPlaced).toBe(400);
    expect(Date.now() - t0).toBeLessThan(20_000);
    const wav = parseWav(await readFile(out));
    expect(wavDurationSec(wav)).toBe(800);
    expect(sampleAt(wav, 798.5)).toBe(500);
    expect(sampleAt(wav, 799.7)).toBe(0);
  });

  it('stops on abort', async () => {
    const c = await clip('d.wav', 100, 1);
    const controller = new AbortController();
    controller.abort('canceled');
    await expect(assembleTrack({ clips: [{ path: c, startSec: 0 }], durationSec: 1, outPath: join(dir, 'x.wav'), signal: controller.signal })).rejects.toMatchObject({
      name: 'AbortError',
    });
  });

  it('reads WAV files with extra chunks and oversized data lengths', () => {
    const data = Buffer.from([1, 0, 2, 0]);
    const header = wavHeader(data.length);
    const list = Buffer.concat([Buffer.from('LIST'), Buffer.from([3, 0, 0, 0]), Buffer.from('abc'), Buffer.from([0])]);
    const withList = Buffer.concat([header.subarray(0, 36), list, header.subarray(36), data]);
    expect(parseWav(withList).data).toEqual(data);
    const streaming = Buffer.concat([header, data]);
    streaming.writeUInt32LE(0xffffffff, 40);
    expect(parseWav(streaming).data).toEqual(data);
    expect(() => parseWav(Buffer.from('not a wav at all'))).toThrow(/not a WAV/);
  });
});
