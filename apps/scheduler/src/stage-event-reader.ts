import type { Redis } from 'ioredis';
import { STAGES, type Stage } from '@dubgate/contracts/states';

/**
 * Reads BullMQ's own event streams (`<prefix>:<stage>:events`) from a cursor kept in Redis,
 * so a restarted scheduler continues where it stopped. This is how the scheduler learns of
 * starts, completions and failures: a durable record, not Pub/Sub. Events trimmed away while
 * the scheduler was down are repaired by the reconciler from BullMQ's job records.
 */
export interface StageEvent {
  stage: Stage;
  /** Stream entry id, e.g. "1700000000000-0". */
  id: string;
  event: string;
  jobId: string;
  fields: Record<string, string>;
}

export interface StageEventReaderOptions {
  /** A dedicated connection: XREAD BLOCK holds it. */
  redis: Redis;
  /** Connection for cursor reads/writes (not the blocked one). */
  cursorRedis: Redis;
  queuePrefix: string;
  cursorKey: (stage: Stage) => string;
  batchSize?: number;
  blockMs?: number;
}

export interface StageEventReader {
  /** Waits up to blockMs for events; returns them in stream order per stage. */
  read(): Promise<StageEvent[]>;
  /** Records that everything up to these events is handled. */
  commit(events: readonly StageEvent[]): Promise<void>;
  /** Where each stream is read from. */
  cursors(): Record<Stage, string>;
}

export async function createStageEventReader(opts: StageEventReaderOptions): Promise<StageEventReader> {
  const batchSize = opts.batchSize ?? 500;
  const blockMs = opts.blockMs ?? 1_000;
  const streamKey = (stage: Stage) => `${opts.queuePrefix}:${stage}:events`;
  const cursor = {} as Record<Stage, string>;
  for (const stage of STAGES) {
    // Fresh start: read the whole retained stream; handling is idempotent.
    cursor[stage] = (await opts.cursorRedis.get(opts.cursorKey(stage))) ?? '0-0';
  }

  return {
    cursors: () => ({ ...cursor }),

    async read() {
      const reply = (await opts.redis.xread(
        'COUNT',
        batchSize,
        'BLOCK',
        blockMs,
        'STREAMS',
        ...STAGES.map(streamKey),
        ...STAGES.map((s) => cursor[s]),
      )) as Array<[string, Array<[string, string[]]>]> | null;
      if (!reply) return [];
      const events: StageEvent[] = [];
      for (const [key, entries] of reply) {
        const stage = STAGES.find((s) => streamKey(s) === key);
        if (!stage) continue;
        for (const [id, flat] of entries) {
          const fields: Record<string, string> = {};
          for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
          events.push({ stage, id, event: fields.event ?? '', jobId: fields.jobId ?? '', fields });
        }
      }
      return events;
    },

    async commit(events) {
      const last: Partial<Record<Stage, string>> = {};
      for (const e of events) last[e.stage] = e.id;
      const pipeline = opts.cursorRedis.pipeline();
      for (const stage of STAGES) {
        const id = last[stage];
        if (id) {
          cursor[stage] = id;
          pipeline.set(opts.cursorKey(stage), id);
        }
      }
      await pipeline.exec();
    },
  };
}
