import type { Stage } from '@dubgate/contracts/states';
import type { StageQueues } from './stage-queues.js';
import type { EventPublisher } from './publisher.js';
import type { Redis } from 'ioredis';
import type { Logger } from './connections.js';

/**
 * Delivers outbox rows: what a committed SQLite transaction asked to be enqueued or published.
 * The API delivers its own rows right after commit; the scheduler drains whatever is left
 * (process killed between commit and enqueue, Redis down). Enqueueing uses deterministic
 * BullMQ ids, so delivering a row twice adds its job once (invariant 2).
 *
 * The store is typed structurally so this package does not depend on the db package.
 */
export type OutboxItem =
  | { id: number; kind: 'enqueue'; payload: { stage: Stage; queueJobId: string; payload: unknown; delayMs?: number } }
  | { id: number; kind: 'publish'; payload: { channel: string; message: unknown } };

export interface OutboxStore {
  listDue(limit: number, now?: Date): readonly OutboxItem[];
  markDelivered(ids: readonly number[]): unknown;
  markFailed(id: number, error: string, retryAt: Date): unknown;
}

export interface OutboxDeliveryOptions {
  store: OutboxStore;
  stageQueues: Pick<StageQueues, 'enqueueRaw' | 'queues'>;
  publisher: Pick<EventPublisher, 'publishRaw'>;
  logger?: Logger;
  /**
   * Keeps the job-owner key realtime nodes authorize with: set on job_added, deleted on
   * job_removed, as part of delivering those rows (so it survives Redis outages too).
   */
  ownership?: { redis: Pick<Redis, 'set' | 'del'>; ownerKey: (jobId: string) => string };
  /** Delay before a failed row is tried again; grows with its attempts. */
  retryDelayMs?: (attempts: number) => number;
  clock?: () => number;
}

export interface DeliveryReport {
  delivered: number[];
  failed: Array<{ id: number; error: string }>;
}

export interface OutboxDelivery {
  /** Delivers these rows in order; a failed row is marked for retry, the rest still go. */
  deliver(items: readonly OutboxItem[]): Promise<DeliveryReport>;
  /**
   * Delivers up to `limit` due rows from the store. Rows younger than `graceMs` are left to the
   * process that wrote them (the API delivers its own right after commit), so they go out once.
   */
  drain(limit?: number, graceMs?: number): Promise<DeliveryReport>;
}

const defaultRetryDelay = (attempts: number) => Math.min(60_000, 1_000 * 2 ** Math.min(attempts, 6));

export function createOutboxDelivery(options: OutboxDeliveryOptions): OutboxDelivery {
  const { store, stageQueues, publisher, logger } = options;
  const retryDelay = options.retryDelayMs ?? defaultRetryDelay;
  const clock = options.clock ?? Date.now;
  const attemptsById = new Map<number, number>();

  async function deliverOne(item: OutboxItem): Promise<void> {
    if (item.kind === 'enqueue') {
      const { stage, queueJobId, payload, delayMs } = item.payload;
      if (delayMs && delayMs > 0) {
        // Delayed rows (retry backoff) bypass enqueueRaw, which has no delay; same deterministic id.
        const queue = stageQueues.queues[stage] as unknown as { add(name: string, data: unknown, opts: object): Promise<unknown> };
        await queue.add(stage, payload, { jobId: queueJobId, delay: delayMs });
      } else {
        await stageQueues.enqueueRaw(stage, queueJobId, payload);
      }
    } else {
      const { channel, message } = item.payload;
      await recordOwnership(message);
      await publisher.publishRaw(channel, JSON.stringify(message));
    }
  }

  async function recordOwnership(message: unknown): Promise<void> {
    if (!options.ownership || typeof message !== 'object' || message === null) return;
    const m = message as { type?: unknown; jobId?: unknown; payload?: { ownerId?: unknown } };
    if (typeof m.jobId !== 'string') return;
    const key = options.ownership.ownerKey(m.jobId);
    if (m.type === 'job_added' && typeof m.payload?.ownerId === 'string') await options.ownership.redis.set(key, m.payload.ownerId);
    else if (m.type === 'job_removed') await options.ownership.redis.del(key);
  }

  async function deliver(items: readonly OutboxItem[]): Promise<DeliveryReport> {
    const report: DeliveryReport = { delivered: [], failed: [] };
    for (const item of items) {
      try {
        await deliverOne(item);
        report.delivered.push(item.id);
        attemptsById.delete(item.id);
      } catch (err) {
        const error = err instanceof Error ? err.message : String(err);
        report.failed.push({ id: item.id, error });
        const attempts = (attemptsById.get(item.id) ?? 0) + 1;
        attemptsById.set(item.id, attempts);
        if (attemptsById.size > 10_000) attemptsById.clear();
        try {
          store.markFailed(item.id, error, new Date(clock() + retryDelay(attempts)));
        } catch (markErr) {
          logger?.error({ err: markErr, outboxId: item.id }, 'could not record outbox failure');
        }
      }
    }
    if (report.delivered.length > 0) store.markDelivered(report.delivered);
    if (report.failed.length > 0) {
      logger?.warn({ failed: report.failed.length, firstError: report.failed[0]?.error }, 'outbox rows not delivered; will retry');
    }
    return report;
  }

  return {
    deliver,
    async drain(limit = 500, graceMs = 5_000) {
      const due = store.listDue(limit, new Date(clock() - graceMs));
      return due.length === 0 ? { delivered: [], failed: [] } : deliver(due);
    },
  };
}
