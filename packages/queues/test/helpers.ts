import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { DownloadPayload, DubPayload, MuxPayload } from '@dubgate/contracts/stages';
import type { Logger } from '../src/connections.js';

export function redisUrl(): string {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error('REDIS_URL must point at a disposable Redis for these tests');
  return url;
}

export const rand = (): string => randomBytes(5).toString('hex');
/** A queue prefix no other test run uses. */
export const uniquePrefix = (): string => `q-test-${rand()}`;
export const uniqueJobId = (): string => `job-${rand()}`;

/** Every key under `prefix:` (SCAN, not KEYS, like production code would). */
export async function keysUnder(redis: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

export async function deleteKeysUnder(redis: Redis, prefix: string): Promise<void> {
  const keys = await keysUnder(redis, prefix);
  for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
}

export interface CapturingLogger extends Logger {
  entries: Array<{ level: string; obj: object; msg: string | undefined }>;
}
export function capturingLogger(): CapturingLogger {
  const entries: CapturingLogger['entries'] = [];
  const at = (level: string) => (obj: object, msg?: string) => void entries.push({ level, obj, msg });
  return { entries, info: at('info'), warn: at('warn'), error: at('error') };
}

export { closedPort, startHungRedis } from '@dubgate/test-support/net';

export function downloadPayload(jobId: string, generation = 0): DownloadPayload {
  return {
    jobId,
    generation,
    workDir: jobId,
    url: 'https://example.com/watch?v=abc',
    formatPreset: 'best',
    wantSubtitles: false,
  };
}

export function dubPayload(jobId: string, generation = 0): DubPayload {
  return { jobId, generation, workDir: jobId, mediaPath: `${jobId}/source.mp4`, targetLang: 'de' };
}

export function muxPayload(jobId: string, generation = 0): MuxPayload {
  return { jobId, generation, workDir: jobId, mediaPath: `${jobId}/source.mp4`, outputContainer: 'mp4' };
}

/**
 * Polls `cond` until it holds. The default deadline is generous (two packages' suites share 2
 * cores): a wait returns as soon as the condition holds, so it costs nothing when all is well.
 */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 30_000, stepMs = 20): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
