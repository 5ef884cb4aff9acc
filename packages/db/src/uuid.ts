import { randomFillSync } from 'node:crypto';

// Monotonic within this process: ids made in the same millisecond still sort in creation order.
let lastMs = -1;
let lastSeq = 0;
const rand = new Uint8Array(16);
// Random bytes are taken from a pool refilled 4 KiB at a time: one randomFillSync per 256 ids
// instead of one per id (it showed in the api's ingest profile).
const pool = new Uint8Array(4096);
let poolOffset = pool.length;
function fillRandom(target: Uint8Array): void {
  if (poolOffset + target.length > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  target.set(pool.subarray(poolOffset, poolOffset + target.length));
  poolOffset += target.length;
}

/** A UUID v7 (RFC 9562): 48-bit Unix ms timestamp, then a 12-bit sequence, then random bits. */
export function uuidv7(now: number = Date.now()): string {
  let ms = now;
  let seq: number;
  fillRandom(rand);
  if (ms <= lastMs) {
    // Same (or an earlier, clock went back) millisecond: count up in rand_a instead of going backwards.
    ms = lastMs;
    seq = lastSeq + 1;
    if (seq > 0xfff) {
      ms += 1;
      seq = 0;
    }
  } else {
    // Start low in the 12-bit space so many ids fit in one millisecond.
    seq = ((rand[6]! << 8) | rand[7]!) & 0x3ff;
  }
  lastMs = ms;
  lastSeq = seq;

  const b = rand;
  b[0] = Math.floor(ms / 2 ** 40) & 0xff;
  b[1] = Math.floor(ms / 2 ** 32) & 0xff;
  b[2] = (ms >>> 24) & 0xff;
  b[3] = (ms >>> 16) & 0xff;
  b[4] = (ms >>> 8) & 0xff;
  b[5] = ms & 0xff;
  b[6] = 0x70 | ((seq >>> 8) & 0x0f);
  b[7] = seq & 0xff;
  b[8] = 0x80 | (b[8]! & 0x3f);
  const hex = Buffer.from(b).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Milliseconds since the epoch encoded in a UUID v7. */
export function uuidv7Time(id: string): number {
  return Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16);
}
