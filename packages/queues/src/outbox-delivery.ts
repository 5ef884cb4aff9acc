import type { Stage } from '@dubgate/contracts/states';
import type { StageQueues } from './stage-queues.js';
import type { EventPublisher } from './publisher.js';
import type { Redis } from 'ioredis';
import type { Logger } from './connections.js';
import { assertStagePayload } from './validation.js';

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
  /** Deletes delivered rows. May return a promise (a group commit); delivery waits for it. */
  removeDelivered(ids: readonly number[]): unknown;
  markFailed(id: number, error: string, retryAt: Date): unknown;
}

/** The part of an ioredis pipeline delivery uses. */
export interface DeliveryPipeline {
  set(key: string, value: string): unknown;
  del(key: string): unknown;
  publish(channel: string, message: string): unknown;
  exec(): Promise<Array<[Error | null, unknown]> | null>;
}

export interface OutboxDeliveryOptions {
  store: OutboxStore;
  stageQueues: Pick<StageQueues, 'enqueueMany'>;
  publisher: Pick<EventPublisher, 'publishRaw'>;
  /**
   * A pipeline on the publishing connection: a batch's owner keys and publishes then go in one
   * write, in row order. Without it each row is published on its own.
   */
  pipeline?: () => DeliveryPipeline;
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
  /**
   * Delivers these rows: enqueues in one pipeline per stage, publishes in row order. A failed
   * row is marked for retry; the rest still go.
   */
  deliver(items: readonly OutboxItem[]): Promise<DeliveryReport>;
  /**
   * Like deliver, but rows asked for in the same turn of the event loop (many requests answered
   * together after one group commit) are delivered as one batch. Resolves with this call's rows.
   */
  deliverSoon(items: readonly OutboxItem[]): Promise<DeliveryReport>;
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

  // Without a pipeline: everything up to the first await runs synchronously, so rows started in
  // order still reach the connection in order (an owner key is set before its job_added goes out).
  function startOne(item: Extract<OutboxItem, { kind: 'publish' }>): Promise<unknown> {
    const { channel, message } = item.payload;
    const owner = ownershipCommand(message);
    const ownership = !owner
      ? null
      : owner.op === 'set'
        ? options.ownership!.redis.set(owner.key, owner.value)
        : options.ownership!.redis.del(owner.key);
    const published = publisher.publishRaw(channel, JSON.stringify(message));
    return ownership ? Promise.all([ownership, published]) : published;
  }

  type Outcome = { ok: true } | { ok: false; error: string };
  const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

  /** Enqueue rows: one addBulk pipeline per stage. A payload that fails validation fails alone. */
  function startEnqueues(rows: ReadonlyArray<Extract<OutboxItem, { kind: 'enqueue' }>>, outcomes: Map<number, Promise<Outcome>>) {
    const byStage = new Map<Stage, Array<Extract<OutboxItem, { kind: 'enqueue' }>>>();
    for (const row of rows) {
      try {
        assertStagePayload(row.payload.stage, row.payload.payload);
      } catch (err) {
        outcomes.set(row.id, Promise.resolve({ ok: false, error: errorText(err) }));
        continue;
      }
      const list = byStage.get(row.payload.stage) ?? [];
      list.push(row);
      byStage.set(row.payload.stage, list);
    }
    for (const [stage, list] of byStage) {
      const added = stageQueues
        .enqueueMany(
          stage,
          list.map((r) => ({ queueJobId: r.payload.queueJobId, payload: r.payload.payload, delayMs: r.payload.delayMs })),
        )
        .then(
          (): Outcome => ({ ok: true }),
          (err: unknown): Outcome => ({ ok: false, error: errorText(err) }),
        );
      for (const r of list) outcomes.set(r.id, added);
    }
  }

  /** Publish rows (and the owner keys they carry) in one pipeline, in row order. */
  function startPublishes(rows: ReadonlyArray<Extract<OutboxItem, { kind: 'publish' }>>, outcomes: Map<number, Promise<Outcome>>) {
    if (rows.length === 0) return;
    if (!options.pipeline) {
      for (const row of rows) {
        const started = startOne(row);
        outcomes.set(
          row.id,
          started.then(
            (): Outcome => ({ ok: true }),
            (err: unknown): Outcome => ({ ok: false, error: errorText(err) }),
          ),
        );
      }
      return;
    }
    const pipeline = options.pipeline();
    const commandsOf: number[] = [];
    for (const row of rows) {
      const { channel, message } = row.payload;
      let n = 1;
      const owner = ownershipCommand(message);
      if (owner?.op === 'set') pipeline.set(owner.key, owner.value);
      else if (owner?.op === 'del') pipeline.del(owner.key);
      if (owner) n++;
      pipeline.publish(channel, JSON.stringify(message));
      commandsOf.push(n);
    }
    const executed = pipeline.exec().then(
      (results) => results ?? [],
      (err: unknown) => err,
    );
    let offset = 0;
    rows.forEach((row, i) => {
      const from = offset;
      const count = commandsOf[i]!;
      offset += count;
      outcomes.set(
        row.id,
        executed.then((results): Outcome => {
          if (!Array.isArray(results)) return { ok: false, error: errorText(results) };
          for (let k = from; k < from + count; k++) {
            const entry = results[k];
            if (!entry) return { ok: false, error: 'no reply from Redis' };
            if (entry[0]) return { ok: false, error: errorText(entry[0]) };
          }
          return { ok: true };
        }),
      );
    });
  }

  function ownershipCommand(message: unknown): { op: 'set'; key: string; value: string } | { op: 'del'; key: string } | null {
    if (!options.ownership || typeof message !== 'object' || message === null) return null;
    const m = message as { type?: unknown; jobId?: unknown; payload?: { ownerId?: unknown } };
    if (typeof m.jobId !== 'string') return null;
    const key = options.ownership.ownerKey(m.jobId);
    if (m.type === 'job_added' && typeof m.payload?.ownerId === 'string') return { op: 'set', key, value: m.payload.ownerId };
    if (m.type === 'job_removed') return { op: 'del', key };
    return null;
  }

  async function deliver(items: readonly OutboxItem[]): Promise<DeliveryReport> {
    const report: DeliveryReport = { delivered: [], failed: [] };
    if (items.length === 0) return report;
    const outcomes = new Map<number, Promise<Outcome>>();
    startEnqueues(items.filter((i) => i.kind === 'enqueue'), outcomes);
    startPublishes(items.filter((i) => i.kind === 'publish'), outcomes);
    const settled = await Promise.all(items.map((item) => outcomes.get(item.id)!));
    settled.forEach((outcome, i) => {
      const item = items[i]!;
      if (outcome.ok) {
        report.delivered.push(item.id);
        attemptsById.delete(item.id);
        return;
      }
      report.failed.push({ id: item.id, error: outcome.error });
      const attempts = (attemptsById.get(item.id) ?? 0) + 1;
      attemptsById.set(item.id, attempts);
      if (attemptsById.size > 10_000) attemptsById.clear();
      try {
        store.markFailed(item.id, outcome.error, new Date(clock() + retryDelay(attempts)));
      } catch (markErr) {
        logger?.error({ err: markErr, outboxId: item.id }, 'could not record outbox failure');
      }
    });
    if (report.delivered.length > 0) await store.removeDelivered(report.delivered);
    if (report.failed.length > 0) {
      logger?.warn({ failed: report.failed.length, firstError: report.failed[0]?.error }, 'outbox rows not delivered; will retry');
    }
    return report;
  }

  // deliverSoon: rows asked for in this turn, delivered together on setImmediate.
  let soon: Array<{ items: readonly OutboxItem[]; resolve: (r: DeliveryReport) => void; reject: (e: unknown) => void }> = [];
  function flushSoon(): void {
    const waiting = soon;
    soon = [];
    deliver(waiting.flatMap((w) => w.items)).then(
      (report) => {
        const failed = new Map(report.failed.map((f) => [f.id, f]));
        for (const w of waiting) {
          const mine: DeliveryReport = { delivered: [], failed: [] };
          for (const item of w.items) {
            const f = failed.get(item.id);
            if (f) mine.failed.push(f);
            else mine.delivered.push(item.id);
          }
          w.resolve(mine);
        }
      },
      (err: unknown) => {
        for (const w of waiting) w.reject(err);
      },
    );
  }

  return {
    deliver,
    deliverSoon(items) {
      if (items.length === 0) return Promise.resolve({ delivered: [], failed: [] });
      return new Promise<DeliveryReport>((resolve, reject) => {
        if (soon.length === 0) setImmediate(flushSoon);
        soon.push({ items, resolve, reject });
      });
    },
    async drain(limit = 500, graceMs = 5_000) {
      const due = store.listDue(limit, new Date(clock() - graceMs));
      return due.length === 0 ? { delivered: [], failed: [] } : deliver(due);
    },
  };
}
