import type { Database } from 'better-sqlite3';
import { JOB_EVENT_TYPES, LOG_LEVELS, type JobEventRecord, type JobEventType, type LogLevel } from '@dubgate/contracts/jobs';
import { toJson } from './json.js';
import { toEvent, type EventRow } from './rows.js';
import { systemClock, toIso, type Clock } from './time.js';

export interface NewEvent {
  type: JobEventType;
  /** Default 'info'. */
  level?: LogLevel;
  message?: string;
  payload?: Record<string, unknown> | null;
  /** Default now. */
  createdAt?: Date | string;
}

export interface NewJobEvent extends NewEvent {
  jobId: string;
}

export interface ListEventsOptions {
  /** Only events with a larger id (exclusive). */
  after?: number;
  limit: number;
  /** Minimum level: 'warn' gives warn and error. */
  level?: LogLevel;
}

export interface EventPage {
  items: JobEventRecord[];
  /** Pass as `after` for the next page; null when this page is the last for now. */
  nextAfter: number | null;
}

const LEVEL_RANK: Readonly<Record<LogLevel, number>> = { debug: 0, info: 1, warn: 2, error: 3 };
const MAX_MESSAGE_LENGTH = 8000;

function assertEvent(e: NewEvent): void {
  if (!(JOB_EVENT_TYPES as readonly string[]).includes(e.type)) throw new RangeError(`unknown event type: ${String(e.type)}`);
  if (e.level !== undefined && !(LOG_LEVELS as readonly string[]).includes(e.level)) {
    throw new RangeError(`unknown log level: ${String(e.level)}`);
  }
}

export interface EventsRepositoryOptions {
  clock?: Clock;
}

export function createEventsRepository(db: Database, opts: EventsRepositoryOptions = {}) {
  const clock = opts.clock ?? systemClock;
  // Inserts nothing when the job is gone, so a late log line for a deleted job is dropped, not an error.
  const insert = db.prepare<{ jobId: string; type: string; level: string; message: string; payload: string | null; createdAt: string }>(
    `INSERT INTO job_events (job_id, type, level, message, payload, created_at)
     SELECT @jobId, @type, @level, @message, @payload, @createdAt
     WHERE EXISTS (SELECT 1 FROM jobs WHERE id = @jobId)`,
  );
  // For a job this transaction has just inserted or updated: the foreign key still guards it,
  // and the EXISTS lookup (a third of the insert's cost) is saved.
  const insertKnown = db.prepare<{ jobId: string; type: string; level: string; message: string; payload: string | null; createdAt: string }>(
    `INSERT INTO job_events (job_id, type, level, message, payload, created_at)
     VALUES (@jobId, @type, @level, @message, @payload, @createdAt)`,
  );
  const page = db.prepare<[string, number, number, number], EventRow>(
    `SELECT * FROM job_events
     WHERE job_id = ? AND id > ?
       AND (CASE level WHEN 'debug' THEN 0 WHEN 'info' THEN 1 WHEN 'warn' THEN 2 ELSE 3 END) >= ?
     ORDER BY id LIMIT ?`,
  );

  function insertOne(jobId: string, e: NewEvent, jobKnown = false): number | null {
    const info = (jobKnown ? insertKnown : insert).run({
      jobId,
      type: e.type,
      level: e.level ?? 'info',
      message: (e.message ?? '').slice(0, MAX_MESSAGE_LENGTH),
      payload: toJson(e.payload),
      createdAt: toIso(e.createdAt ?? clock()),
    });
    return info.changes > 0 ? Number(info.lastInsertRowid) : null;
  }

  const insertBatch = db.transaction((batch: readonly NewJobEvent[]) => batch.map((e) => insertOne(e.jobId, e)));

  return {
    /** Appends one event; returns its id, or null when the job does not exist. */
    insertEvent(jobId: string, event: NewEvent): number | null {
      assertEvent(event);
      return insertOne(jobId, event);
    },

    /** Appends one event for a job the caller's transaction holds (just inserted or updated). */
    insertEventForJobInHand(jobId: string, event: NewEvent): number {
      assertEvent(event);
      return insertOne(jobId, event, true)!;
    },

    /**
     * Appends many events in one transaction. Returns ids aligned with the input; null for rows
     * whose job no longer exists (those are skipped, the rest are written).
     */
    insertEvents(batch: readonly NewJobEvent[]): Array<number | null> {
      batch.forEach(assertEvent);
      return batch.length === 0 ? [] : insertBatch(batch);
    },

    /** A job's events in id order, after `after`. */
    listEvents(jobId: string, options: ListEventsOptions): EventPage {
      const limit = Math.max(1, Math.trunc(options.limit));
      const rows = page.all(jobId, options.after ?? 0, LEVEL_RANK[options.level ?? 'debug'], limit + 1);
      const more = rows.length > limit;
      const items = (more ? rows.slice(0, limit) : rows).map(toEvent);
      return { items, nextAfter: more ? items[items.length - 1]!.id : null };
    },
  };
}

export type EventsRepository = ReturnType<typeof createEventsRepository>;
