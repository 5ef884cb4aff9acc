import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JOB_EVENT_TYPES, LOG_LEVELS, MEDIA_KINDS } from '@dubgate/contracts/jobs';
import { JOB_STATES } from '@dubgate/contracts/states';
import { closeDatabase, openDatabase } from '../src/open.js';
import { migrate, MigrationError, MIGRATIONS, schemaVersion } from '../src/migrate.js';
import { SCHEMA_JOB_STATES } from '../src/migrations.js';
import { tempDir, testDb } from './helpers.js';

const latest = MIGRATIONS[MIGRATIONS.length - 1]!.version;

describe('openDatabase', () => {
  it('creates the parent directory and sets the pragmas', () => {
    const { db, path } = testDb();
    expect(existsSync(path)).toBe(true);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
    expect(db.pragma('synchronous', { simple: true })).toBe(1); // NORMAL
    expect(schemaVersion(db)).toBe(latest);
  });

  it('takes a custom busy timeout', () => {
    const { db } = testDb({ busyTimeoutMs: 1234 });
    expect(db.pragma('busy_timeout', { simple: true })).toBe(1234);
  });

  it('has FTS5 with the trigram tokenizer', () => {
    const { db } = testDb();
    const version = db.prepare('SELECT sqlite_version()').pluck().get() as string;
    const [maj, min] = version.split('.').map(Number);
    expect(maj! > 3 || (maj === 3 && min! >= 43)).toBe(true); // contentless_delete needs 3.43
    expect(db.prepare(`SELECT count(*) FROM sqlite_schema WHERE name = 'jobs_fts'`).pluck().get()).toBe(1);
  });

  it('closeDatabase is safe to call twice', () => {
    const path = join(tempDir(), 'x.db');
    const db = openDatabase(path);
    closeDatabase(db);
    expect(() => closeDatabase(db)).not.toThrow();
    expect(db.open).toBe(false);
    expect(() => closeDatabase(null)).not.toThrow();
  });

  it('can skip migrations and open read-only', () => {
    const path = join(tempDir(), 'y.db');
    const raw = openDatabase(path, { migrate: false });
    expect(schemaVersion(raw)).toBe(0);
    closeDatabase(raw);
    closeDatabase(openDatabase(path));
    const ro = openDatabase(path, { readonly: true });
    expect(schemaVersion(ro)).toBe(latest);
    expect(() => ro.exec(`INSERT INTO users (id, username, password_hash, created_at) VALUES ('a','b','c','d')`)).toThrow();
    closeDatabase(ro);
  });
});

describe('migrate', () => {
  it('is idempotent: opening twice applies nothing the second time', () => {
    const path = join(tempDir(), 'twice.db');
    const first = openDatabase(path, { migrate: false });
    expect(migrate(first)).toEqual({ from: 0, to: latest, applied: MIGRATIONS.map((m) => m.version) });
    closeDatabase(first);
    const second = openDatabase(path);
    expect(migrate(second)).toEqual({ from: latest, to: latest, applied: [] });
    expect(second.prepare('SELECT count(*) FROM schema_migrations').pluck().get()).toBe(MIGRATIONS.length);
    closeDatabase(second);
  });

  it('applies only the new migrations, in order', () => {
    const { db } = testDb();
    const extra = [
      ...MIGRATIONS,
      { version: latest + 2, name: 'second', sql: 'CREATE TABLE t2 (x INTEGER)' },
      { version: latest + 1, name: 'first', sql: 'CREATE TABLE t1 (x INTEGER); INSERT INTO t1 VALUES (1);' },
    ];
    expect(migrate(db, extra)).toEqual({ from: latest, to: latest + 2, applied: [latest + 1, latest + 2] });
    expect(migrate(db, extra).applied).toEqual([]);
  });

  it('rolls back a failing migration completely', () => {
    const { db } = testDb();
    const bad = [
      ...MIGRATIONS,
      { version: latest + 1, name: 'ok', sql: 'CREATE TABLE fine (x INTEGER)' },
      { version: latest + 2, name: 'broken', sql: 'CREATE TABLE nope (x INTEGER); SELECT * FROM missing_table;' },
    ];
    expect(() => migrate(db, bad)).toThrow(MigrationError);
    expect(schemaVersion(db)).toBe(latest);
    expect(db.prepare(`SELECT count(*) FROM sqlite_schema WHERE name IN ('fine', 'nope')`).pluck().get()).toBe(0);
  });

  it('refuses a database newer than the code, and an edited migration', () => {
    const { db } = testDb();
    db.prepare('INSERT INTO schema_migrations VALUES (?, ?, ?)').run(latest + 5, 'future', new Date().toISOString());
    expect(() => migrate(db)).toThrow(/newer than this code/);
    const other = testDb().db;
    expect(() => migrate(other, [{ ...MIGRATIONS[0]!, name: 'renamed' }])).toThrow(/in the database but/);
  });

  it('freezes the same value lists as the contracts', () => {
    expect(SCHEMA_JOB_STATES).toEqual([...JOB_STATES]);
    const { db } = testDb();
    const sql = (name: string) => db.prepare(`SELECT sql FROM sqlite_schema WHERE name = ?`).pluck().get(name) as string;
    for (const t of JOB_EVENT_TYPES) expect(sql('job_events')).toContain(`'${t}'`);
    for (const l of LOG_LEVELS) expect(sql('job_events')).toContain(`'${l}'`);
    for (const k of MEDIA_KINDS) expect(sql('media')).toContain(`'${k}'`);
  });
});
