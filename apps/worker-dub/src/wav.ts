import { readFile } from 'node:fs/promises';

/** The format every cue clip and the dubbed track use: PCM s16le, mono. */
export const SAMPLE_RATE = 24_000;
export const CHANNELS = 1;
export const BYTES_PER_SAMPLE = 2;

export interface WavData {
  sampleRate: number;
  channels: number;
  bitsPerSample: number;
  /** The PCM bytes of the `data` chunk. */
  data: Buffer;
}

/**
 * Reads a PCM WAV file (any chunk order, extra chunks skipped). A `data` size larger than the
 * file (streaming writers put 0xFFFFFFFF there) is cut to what the file holds. Throws on anything
 * that is not PCM WAV.
 */
export function parseWav(buf: Buffer): WavData {
  if (buf.length < 12 || buf.toString('ascii', 0, 4) !== 'RIFF' || buf.toString('ascii', 8, 12) !== 'WAVE') {
    throw new Error('not a WAV file');
  }
  let fmt: { format: number; channels: number; sampleRate: number; bitsPerSample: number } | null = null;
  let pos = 12;
  while (pos + 8 <= buf.length) {
    const id = buf.toString('ascii', pos, pos + 4);
    const size = buf.readUInt32LE(pos + 4);
    const start = pos + 8;
    if (id === 'fmt ' && start + 16 <= buf.length) {
      fmt = {
        format: buf.readUInt16LE(start),
        channels: buf.readUInt16LE(start + 2),
        sampleRate: buf.readUInt32LE(start + 4),
        bitsPerSample: buf.readUInt16LE(start + 14),
      };
    } else if (id === 'data') {
      if (!fmt) throw new Error('WAV data before fmt');
      // 1 = PCM, 0xFFFE = WAVE_FORMAT_EXTENSIBLE (ffmpeg uses it for some layouts).
      if (fmt.format !== 1 && fmt.format !== 0xfffe) throw new Error(`WAV format ${fmt.format} is not PCM`);
      const end = Math.min(buf.length, start + size);
      return { sampleRate: fmt.sampleRate, channels: fmt.channels, bitsPerSample: fmt.bitsPerSample, data: buf.subarray(start, end) };
    }
    pos = start + size + (size % 2);
  }
  throw new Error('WAV without a data chunk');
}

export async function readWav(path: string): Promise<WavData> {
  return parseWav(await readFile(path));
}

export function wavDurationSec(w: WavData): number {
  const frame = w.channels * (w.bitsPerSample / 8);
  return frame > 0 && w.sampleRate > 0 ? w.data.length / frame / w.sampleRate : 0;
}

/** A canonical 44-byte header for PCM s16le. */
export function wavHeader(dataBytes: number, sampleRate = SAMPLE_RATE, channels = CHANNELS): Buffer {
  const h = Buffer.alloc(44);
  const blockAlign = channels * BYTES_PER_SAMPLE;
  h.write('RIFF', 0, 'ascii');
  h.writeUInt32LE(36 + dataBytes, 4);
  h.write('WAVE', 8, 'ascii');
  h.write('fmt ', 12, 'ascii');
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20);
  h.writeUInt16LE(channels, 22);
  h.writeUInt32LE(sampleRate, 24);
  h.writeUInt32LE(sampleRate * blockAlign, 28);
  h.writeUInt16LE(blockAlign, 32);
  h.writeUInt16LE(BYTES_PER_SAMPLE * 8, 34);
  h.write('data', 36, 'ascii');
  h.writeUInt32LE(dataBytes, 40);
  return h;
}
