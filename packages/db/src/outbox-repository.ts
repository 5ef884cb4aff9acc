import type { Database } from 'better-sqlite3';
import type { GroupCommit } from './group-commit.js';
import type { ChannelMessages, EventChannel } from '@dubgate/contracts/events';
import type { Stage } from '@dubgate/contracts/states';
import type { StagePayloads } from '@dubgate/contracts/stages';
import { fromJson } from './json.js';
import { systemClock, toIso, type Clock } from './time.js';

/** What an 'enqueue' row asks the drainer to do: `queue(stage).add(..., payload, { jobId: queueJobId })`. */
export type EnqueueMessage = {
  [S in Stage]: {
    stage: S;
    /** Deterministic BullMQ job id (contracts' stageJobId): adding twice adds once. */
    queueJobId: string;
    payload: StagePayloads[S];
    /** Optional BullMQ delay in ms (retry backoff). */
    delayMs?: number;
  };
}[Stage];

/** What a 'publish' row asks the drainer to do: `redis.publish(channel, JSON.stringify(message))`. */
export type PublishMessage = {
  [C in EventChannel]: { channel: C; message: ChannelMessages[C] };
}[EventChannel];

export type OutboxInput =
  | { kind: 'enqueue'; jobId: string | null; payload: EnqueueMessage; availableAt?: Date | string }
  | { kind: 'publish'; jobId: string | null; payload: PublishMessage; availableAt?: Date | string };

interface OutboxMeta {
  id: number;
  jobId: string | null;
  createdAt: string;
  availableAt: string;
  attempts: number;
  lastError: string | null;
}
/** A row just written, as delivery needs it (what `get(id)` would read back). */
export type OutboxItem =
  | { id: number; kind: 'enqueue'; payload: EnqueueMessage }
  | { id: number; kind: 'publish'; payload: PublishMessage };

export type OutboxRecord =
  | (OutboxMeta & { kind: 'enqueue'; payload: EnqueueMessage })
  | (OutboxMeta & { kind: 'publish'; payload: PublishMessage });

interface OutboxRow {
  id: number;
  job_id: string | null;
  kind: 'enqueue' | 'publish';
  payload: string;
  created_at: string;
  available_at: string;
  attempts: number;
  last_error: string | null;
}

function toRecord(row: OutboxRow): OutboxRecord {
  const meta: OutboxMeta = {
    id: row.id,
    jobId: row.job_id,
    createdAt: row.created_at,
    availableAt: row.available_at,
    attempts: row.attempts,
    lastError: row.last_error,
  };
  // payload has a json_valid CHECK, so fromJson only returns null for a literal JSON null.
  return { ...meta, kind: row.kind, payload: fromJson(row.payload) } as OutboxRecord;
}

const MAX_ERROR_LENGTH = 2000;

export interface OutboxRepositoryOptions {
  clock?: Clock;
}

export function createOutboxRepository(db: Database, opts: OutboxRepositoryOptions = {}) {
  const clock = opts.clock ?? systemClock;
  const insert = db.prepare<[string | null, string, string, string, string]>(
    'INSERT INTO outbox (job_id, kind, payload, created_at, available_at) VALUES (?, ?, ?, ?, ?)',
  );
  // Every row in the table is pending: delivered rows are deleted (migration 3).
  const due = db.prepare<[string, number], OutboxRow>('SELECT * FROM outbox WHERE available_at <= ? ORDER BY id LIMIT ?');
  const remove = db.prepare<[number]>('DELETE FROM outbox WHERE id = ?');
  const failed = db.prepare<[string, string, number]>(
    'UPDATE outbox SET attempts = attempts + 1, last_error = ?, available_at = ? WHERE id = ?',
  );
  const pending = db.prepare<[], number>('SELECT count(*) FROM outbox').pluck();
  const oldestPending = db.prepare<[], string | null>('SELECT min(available_at) FROM outbox').pluck();
  const byId = db.prepare<[number], OutboxRow>('SELECT * FROM outbox WHERE id = ?');

  /** Appends rows in order and returns their ids. Joins the caller's transaction when there is one. */
  const addRows = (rows: readonly OutboxInput[]): number[] => {
    const now = toIso(clock());
    return rows.map((r) => {
      const availableAt = r.availableAt === undefined ? now : toIso(r.availableAt);
      return Number(insert.run(r.jobId, r.kind, JSON.stringify(r.payload), now, availableAt).lastInsertRowid);
    });
  };
  const addTx = db.transaction(addRows);
  // Joins the caller's transaction as is (no savepoint): the caller's rollback covers it.
  const add = (rows: readonly OutboxInput[]) => (db.inTransaction ? addRows(rows) : addTx(rows));

  const removeRows = (ids: readonly number[]): number => {
    let n = 0;
    for (const id of ids) n += remove.run(id).changes;
    return n;
  };
  const removeTx = db.transaction(removeRows);
  // Joins the caller's transaction as is, like add.
  const removeMany = (ids: readonly number[]) => (db.inTransaction ? removeRows(ids) : removeTx(ids));

  return {
    add(rows: readonly OutboxInput[]): number[] {
      return rows.length === 0 ? [] : add(rows);
    },

    /** Like add, and returns the rows as written, so the writer can deliver them without reading back. */
    append(rows: readonly OutboxInput[]): OutboxItem[] {
      if (rows.length === 0) return [];
      const ids = add(rows);
      return rows.map((r, i) => ({ id: ids[i]!, kind: r.kind, payload: r.payload }) as OutboxItem);
    },

    /** Pending rows whose time has come, oldest first. */
    listDue(limit: number, now: Date | string = clock()): OutboxRecord[] {
      return due.all(toIso(now), Math.max(0, Math.trunc(limit))).map(toRecord);
    },

    /** Deletes delivered rows; returns how many were still there. */
    removeDelivered(ids: readonly number[]): number {
      return ids.length === 0 ? 0 : removeMany(ids);
    },

    /** Records a failed delivery attempt and when to try again. */
    markFailed(id: number, error: string, retryAt: Date | string): boolean {
      return failed.run(error.slice(0, MAX_ERROR_LENGTH), toIso(retryAt), id).changes > 0;
    },

    pendingCount(): number {
      return pending.get() ?? 0;
    },

    /** available_at of the oldest pending row, or null: how far behind the drainer is. */
    oldestPendingAt(): string | null {
      return oldestPending.get() ?? null;
    },

    /** A pending row, or null (never written, or delivered and deleted). */
    get(id: number): OutboxRecord | null {
      const row = byId.get(id);
      return row ? toRecord(row) : null;
    },
  };
}

export type OutboxRepository = ReturnType<typeof createOutboxRepository>;

/**
 * The outbox as a delivering process uses it, with `removeDelivered` joining the process's next
 * group commit instead of committing a transaction of its own after every delivery.
 */
export function groupCommittedOutbox(outbox: OutboxRepository, commits: Pick<GroupCommit, 'run'>) {
  return {
    listDue: (limit: number, now?: Date) => outbox.listDue(limit, now),
    markFailed: (id: number, error: string, retryAt: Date) => outbox.markFailed(id, error, retryAt),
    removeDelivered: (ids: readonly number[]) => commits.run(() => outbox.removeDelivered(ids)),
  };
}
