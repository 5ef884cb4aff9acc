import type { Database } from 'better-sqlite3';
import { MIGRATIONS, type Migration } from './migrations.js';

export type { Migration } from './migrations.js';
export { MIGRATIONS } from './migrations.js';

export interface MigrateResult {
  /** Schema version before and after. */
  from: number;
  to: number;
  /** Versions this call applied (empty when another process had already done it). */
  applied: number[];
}

export class MigrationError extends Error {
  readonly code = 'MIGRATION_FAILED';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MigrationError';
  }
}

const CREATE_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version    INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  applied_at TEXT NOT NULL
)`;

interface AppliedRow {
  version: number;
  name: string;
}

function readApplied(db: Database): AppliedRow[] {
  const exists = db
    .prepare(`SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'`)
    .pluck()
    .get();
  if (!exists) return [];
  return db.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all() as AppliedRow[];
}

function check(applied: AppliedRow[], migrations: readonly Migration[]): void {
  const known = new Map(migrations.map((m) => [m.version, m.name]));
  for (const row of applied) {
    const name = known.get(row.version);
    if (name === undefined) {
      throw new MigrationError(
        `database schema version ${row.version} (${row.name}) is newer than this code knows; refusing to run on it`,
      );
    }
    if (name !== row.name) {
      throw new MigrationError(`migration ${row.version} is "${row.name}" in the database but "${name}" in the code`);
    }
  }
}

/** Current schema version (0 for an empty database). */
export function schemaVersion(db: Database): number {
  const applied = readApplied(db);
  return applied.length === 0 ? 0 : applied[applied.length - 1]!.version;
}

/**
 * Applies pending migrations. Safe when several processes open the same new file at once:
 * the work runs under BEGIN IMMEDIATE (the write lock, waiting up to busy_timeout) and the
 * applied versions are re-read inside it, so whoever comes second finds nothing to do.
 */
export function migrate(db: Database, migrations: readonly Migration[] = MIGRATIONS): MigrateResult {
  const ordered = [...migrations].sort((a, b) => a.version - b.version);
  for (let i = 1; i < ordered.length; i++) {
    if (ordered[i]!.version === ordered[i - 1]!.version) {
      throw new MigrationError(`duplicate migration version ${ordered[i]!.version}`);
    }
  }
  const latest = ordered.length === 0 ? 0 : ordered[ordered.length - 1]!.version;

  // Cheap read first: the usual start finds everything applied and takes no write lock.
  const before = readApplied(db);
  check(before, ordered);
  const current = before.length === 0 ? 0 : before[before.length - 1]!.version;
  if (current >= latest && before.length === ordered.length) return { from: current, to: current, applied: [] };

  const run = db.transaction((): MigrateResult => {
    db.exec(CREATE_TABLE);
    const applied = readApplied(db);
    check(applied, ordered);
    const done = new Set(applied.map((r) => r.version));
    const from = applied.length === 0 ? 0 : applied[applied.length - 1]!.version;
    const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
    const ran: number[] = [];
    for (const m of ordered) {
      if (done.has(m.version)) continue;
      if (m.version < from) {
        throw new MigrationError(`migration ${m.version} (${m.name}) is older than the applied version ${from}`);
      }
      try {
        db.exec(m.sql);
      } catch (err) {
        throw new MigrationError(`migration ${m.version} (${m.name}) failed: ${(err as Error).message}`, { cause: err });
      }
      record.run(m.version, m.name, new Date().toISOString());
      ran.push(m.version);
    }
    return { from, to: ran.length > 0 ? ran[ran.length - 1]! : from, applied: ran };
  });
  return run.immediate();
}
