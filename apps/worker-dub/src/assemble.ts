/**
 * Assembly of the dubbed track: one PCM WAV as long as the media, each cue clip placed at its
 * cue's start, silence in between.
 *
 * It is a "concat with generated silence" done in Node rather than one ffmpeg filter graph:
 * an `adelay`+`amix` graph with hundreds of inputs opens hundreds of files at once and grows
 * with the cue count, while this walks the clips in order and streams the track to disk, so
 * memory is bounded by the longest run of overlapping clips and time is linear in the track
 * length. Clips that still overlap (a long line squeezed into a short slot even after the
 * speed-up) are mixed by summing, like `amix` with normalize=0, and clipped to 16 bits.
 * All clips are already in the track's format (see wav.ts), so no resampling happens here,
 * and the output is byte-for-byte the same for the same clips: the stage is idempotent.
 */
import { open } from 'node:fs/promises';
import { throwIfAborted } from '@dubgate/worker-sdk/errors';
import { BYTES_PER_SAMPLE, CHANNELS, SAMPLE_RATE, readWav, wavHeader } from './wav.js';

export interface PlacedClip {
  /** Absolute path of a PCM s16le mono WAV at SAMPLE_RATE. */
  path: string;
  /** Where it starts in the track, in seconds. */
  startSec: number;
}

export interface AssembleOptions {
  clips: readonly PlacedClip[];
  /** Track length in seconds; clips beyond it are cut. */
  durationSec: number;
  outPath: string;
  signal?: AbortSignal;
  sampleRate?: number;
  /** Reports the share (0..1) of clips placed so far. */
  onProgress?: (fraction: number) => void;
}

const SILENCE_CHUNK_SAMPLES = 64 * 1024;

export async function assembleTrack(opts: AssembleOptions): Promise<{ samples: number; clipsPlaced: number }> {
  const rate = opts.sampleRate ?? SAMPLE_RATE;
  const totalSamples = Math.max(0, Math.round(opts.durationSec * rate));
  const dataBytes = totalSamples * BYTES_PER_SAMPLE * CHANNELS;
  const clips = opts.clips
    .map((c, idx) => ({ ...c, offset: Math.max(0, Math.round(c.startSec * rate)), idx }))
    .sort((a, b) => a.offset - b.offset || a.idx - b.idx);

  const fh = await open(opts.outPath, 'w');
  try {
    await fh.write(wavHeader(dataBytes, rate, CHANNELS));
    const silence = Buffer.alloc(SILENCE_CHUNK_SAMPLES * BYTES_PER_SAMPLE);
    // Samples already written, and the mix of clips from `cursor` on that is not written yet.
    let cursor = 0;
    let pending = new Int32Array(0);
    let pendingLen = 0;

    const writeSamples = async (n: number) => {
      // Writes n samples from the mix buffer (then silence past its end) and advances the cursor.
      const fromPending = Math.min(n, pendingLen);
      if (fromPending > 0) {
        const out = Buffer.alloc(fromPending * BYTES_PER_SAMPLE);
        for (let k = 0; k < fromPending; k++) {
          const v = pending[k]!;
          out.writeInt16LE(v > 32767 ? 32767 : v < -32768 ? -32768 : v, k * BYTES_PER_SAMPLE);
        }
        await fh.write(out);
        pending.copyWithin(0, fromPending, pendingLen);
        pending.fill(0, pendingLen - fromPending, pendingLen);
        pendingLen -= fromPending;
      }
      let rest = n - fromPending;
      while (rest > 0) {
        const k = Math.min(rest, SILENCE_CHUNK_SAMPLES);
        await fh.write(silence, 0, k * BYTES_PER_SAMPLE);
        rest -= k;
      }
      cursor += n;
    };

    let placed = 0;
    for (let c = 0; c < clips.length; c++) {
      if (opts.signal) throwIfAborted(opts.signal);
      const clip = clips[c]!;
      if (clip.offset >= totalSamples) continue;
      if (clip.offset > cursor) await writeSamples(clip.offset - cursor);
      const wav = await readWav(clip.path);
      if (wav.sampleRate !== rate || wav.channels !== CHANNELS || wav.bitsPerSample !== BYTES_PER_SAMPLE * 8) {
        throw new Error(`clip ${clip.path} is ${wav.sampleRate} Hz/${wav.channels} ch/${wav.bitsPerSample} bit, expected ${rate}/${CHANNELS}/16`);
      }
      const n = Math.min(wav.data.length / BYTES_PER_SAMPLE, totalSamples - clip.offset);
      const at = clip.offset - cursor; // >= 0: clips are sorted and the cursor never passes an offset
      const need = at + n;
      if (need > pending.length) {
        const grown = new Int32Array(Math.max(need, pending.length * 2));
        grown.set(pending.subarray(0, pendingLen));
        pending = grown;
      }
      for (let k = 0; k < n; k++) pending[at + k] = pending[at + k]! + wav.data.readInt16LE(k * BYTES_PER_SAMPLE);
      pendingLen = Math.max(pendingLen, need);
      placed++;
      opts.onProgress?.((c + 1) / clips.length);
    }
    if (opts.signal) throwIfAborted(opts.signal);
    await writeSamples(totalSamples - cursor);
    await fh.sync();
    return { samples: totalSamples, clipsPlaced: placed };
  } finally {
    await fh.close();
  }
}
