import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, type Job, type JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { ALL_EVENT_CHANNELS, CHANNEL_SCHEMAS, CONTROL_CANCEL_CHANNEL, type CancelSignal } from '@dubgate/contracts/events';
import type { DownloadPayload, DubPayload } from '@dubgate/contracts/stages';
import type { Stage } from '@dubgate/contracts/states';
import { registerContractFormats } from '@dubgate/queues/validation';
import { createLogger, type Logger } from '@dubgate/runtime/logger';

registerContractFormats();

export function redisUrl(): string {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error('REDIS_URL must point at a disposable Redis for these tests');
  return url;
}

export const rand = (): string => randomBytes(4).toString('hex');
export const uniquePrefix = (): string => `q-sdk-${rand()}`;
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Polls `cond` until it holds. The default deadline is generous (the suites run two packages at
 * once on 2 cores): a wait returns as soon as the condition holds, so it costs nothing when all is well.
 */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 30_000, what = 'condition', stepMs = 20): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await sleep(stepMs);
  }
}

export const testLogger = (): Logger => createLogger({ name: 'worker-sdk-test', level: process.env.TEST_LOG ? 'debug' : 'silent' });

export function tempDir(label: string): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), `dubgate-${label}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function downloadPayload(jobId: string, generation = 0): DownloadPayload {
  return { jobId, generation, workDir: jobId, url: 'https://videos.example.com/v.mp4', formatPreset: 'best', wantSubtitles: false };
}

export function dubPayload(jobId: string, generation = 0): DubPayload {
  return { jobId, generation, workDir: jobId, mediaPath: `${jobId}/source.mp4`, targetLang: 'es' };
}

/** A producer queue for one stage under `prefix`, as the gateway would add jobs. */
export function producer(stage: Stage, prefix: string) {
  const connection = new Redis(redisUrl(), { maxRetriesPerRequest: null });
  const queue = new Queue(stage, { connection, prefix });
  return {
    queue,
    add: (jobId: string, data: unknown, opts: JobsOptions = {}) =>
      queue.add(stage, data, { jobId, attempts: 1, backoff: { type: 'fixed', delay: 0 }, ...opts }),
    async job(id: string): Promise<Job | undefined> {
      return (await queue.getJob(id)) ?? undefined;
    },
    async state(id: string): Promise<string> {
      return (await queue.getJob(id))?.getState() ?? 'missing';
    },
    async close() {
      await queue.close();
      connection.disconnect();
    },
  };
}

export interface Received {
  channel: string;
  message: Record<string, unknown> & { jobId: string; type: string; payload: Record<string, unknown> };
  valid: boolean;
  errors: string[];
}

const validators = Object.fromEntries(Object.entries(CHANNEL_SCHEMAS).map(([ch, s]) => [ch, TypeCompiler.Compile(s)]));

/** Subscribes to every events:* channel and checks each message against CHANNEL_SCHEMAS. */
export async function listen() {
  const sub = new Redis(redisUrl());
  const messages: Received[] = [];
  sub.on('message', (channel: string, text: string) => {
    // events:* channels are global to the Redis: other packages' tests running at the same time
    // publish there too, malformed messages included. Only objects can be ours (tests filter by jobId).
    let message: Received['message'];
    try {
      message = JSON.parse(text) as Received['message'];
    } catch {
      return;
    }
    if (typeof message !== 'object' || message === null) return;
    const v = validators[channel];
    const valid = v ? v.Check(message) : false;
    const errors = v && !valid ? [...v.Errors(message)].map((e) => `${e.path} ${e.message}`) : [];
    messages.push({ channel, message, valid, errors });
  });
  await sub.subscribe(...ALL_EVENT_CHANNELS);
  return {
    messages,
    of: (jobId: string, channel?: string) => messages.filter((m) => m.message.jobId === jobId && (!channel || m.channel === channel)),
    close: async () => {
      sub.disconnect();
    },
  };
}

export async function publishCancel(signal: Omit<CancelSignal, 'timestamp'> & { timestamp?: string }): Promise<void> {
  const pub = new Redis(redisUrl());
  try {
    await pub.publish(CONTROL_CANCEL_CHANNEL, JSON.stringify({ timestamp: new Date().toISOString(), ...signal }));
  } finally {
    pub.disconnect();
  }
}

/** Deletes every key under `prefix:`. */
export async function deleteKeys(prefix: string): Promise<void> {
  const redis = new Redis(redisUrl());
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** Sum of the samples of `name` whose labels include `labels`, in Prometheus text. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) sum += Number(m[3]);
  }
  return sum;
}
