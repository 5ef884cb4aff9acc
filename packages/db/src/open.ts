import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import type { Database } from 'better-sqlite3';
import { migrate } from './migrate.js';

export type { Database } from 'better-sqlite3';

export interface OpenDatabaseOptions {
  /** How long a statement waits for another connection's lock. Default 5000 ms. */
  busyTimeoutMs?: number;
  /** Apply pending migrations after opening. Default true. */
  migrate?: boolean;
  /** Open read-only (no directory creation, no migrations). */
  readonly?: boolean;
  /** SQLite page cache per connection in KiB. Default 65536 (64 MiB). */
  cacheSizeKiB?: number;
  /** Memory-map this many bytes of the file (0 disables). Default 268435456 (256 MiB). */
  mmapSizeBytes?: number;
}

const DEFAULT_BUSY_TIMEOUT_MS = 5000;

/**
 * Opens (creating if needed) the SQLite database at `path`, configured for several processes
 * sharing one file: WAL, foreign keys on, a busy timeout, synchronous=NORMAL. Then migrates.
 */
export function openDatabase(path: string, opts: OpenDatabaseOptions = {}): Database {
  const memory = path === ':memory:' || path === '';
  const readonly = opts.readonly ?? false;
  if (!memory && !readonly) mkdirSync(dirname(resolve(path)), { recursive: true });

  const busyTimeoutMs = opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  const db = new BetterSqlite3(path, { readonly, timeout: busyTimeoutMs });
  try {
    db.pragma(`busy_timeout = ${Math.max(0, Math.trunc(busyTimeoutMs))}`);
    if (!memory && !readonly) setWal(db, busyTimeoutMs);
    db.pragma('foreign_keys = ON');
    db.pragma('synchronous = NORMAL');
    db.pragma(`cache_size = -${Math.max(0, Math.trunc(opts.cacheSizeKiB ?? 65536))}`);
    db.pragma(`mmap_size = ${Math.max(0, Math.trunc(opts.mmapSizeBytes ?? 268435456))}`);
    db.pragma('temp_store = MEMORY');
    if (!readonly && (opts.migrate ?? true)) migrate(db);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * Switching a new file to WAL takes an exclusive lock, and SQLite does not always call the busy
 * handler for it: when two processes create the file at once one may get SQLITE_BUSY straight
 * away. Retry with a short sleep until busy_timeout runs out.
 */
function setWal(db: Database, busyTimeoutMs: number): void {
  const deadline = Date.now() + busyTimeoutMs;
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    try {
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (String(mode).toLowerCase() === 'wal') return;
    } catch (err) {
      if ((err as { code?: string }).code?.startsWith('SQLITE_BUSY') !== true) throw err;
    }
    if (Date.now() >= deadline) throw new Error(`could not switch ${db.name} to WAL mode: database is busy`);
    sleepSync(delay);
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

/** Closes the database; safe to call twice. Checkpoints the WAL on the way out. */
export function closeDatabase(db: Database | null | undefined): void {
  if (!db || !db.open) return;
  try {
    if (!db.readonly && !db.inTransaction) db.pragma('optimize');
  } catch {
    // Best effort: closing must not fail because of housekeeping.
  }
  db.close();
}
