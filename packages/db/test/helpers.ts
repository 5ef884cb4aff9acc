import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import type { Database } from 'better-sqlite3';
import { closeDatabase, openDatabase, type OpenDatabaseOptions } from '../src/open.js';
import { createAuthRepository } from '../src/auth-repository.js';
import type { InsertJobInput } from '../src/jobs-repository.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()!();
});

/** A fresh directory removed after the test. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'dubgate-db-test-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A real SQLite file of its own, migrated, closed after the test. */
export function testDb(opts?: OpenDatabaseOptions): { db: Database; path: string } {
  const path = join(tempDir(), 'nested', 'gateway.db');
  const db = openDatabase(path, opts);
  cleanups.push(() => closeDatabase(db));
  return { db, path };
}

/** Creates users and returns their ids. */
export function seedUsers(db: Database, ...names: string[]): string[] {
  const auth = createAuthRepository(db);
  return names.map((username) => {
    const r = auth.createUser({ username, passwordHash: `hash-${username}`, role: username === 'admin' ? 'admin' : 'user' });
    if (!r.ok) throw new Error(`could not create ${username}`);
    return r.user.id;
  });
}

export function jobInput(ownerId: string, over: Partial<InsertJobInput> = {}): InsertJobInput {
  return {
    ownerId,
    url: 'https://www.youtube.com/watch?v=dQw4w9WgXcQ',
    requestedDubbing: false,
    targetLang: null,
    formatPreset: 'best',
    outputContainer: 'mp4',
    ...over,
  };
}

/** Row counts of the tables a refused change must leave alone. */
export function counts(db: Database): { jobs: number; events: number; outbox: number } {
  const one = (sql: string) => db.prepare(sql).pluck().get() as number;
  return {
    jobs: one('SELECT count(*) FROM jobs'),
    events: one('SELECT count(*) FROM job_events'),
    outbox: one('SELECT count(*) FROM outbox'),
  };
}

/** A clock the test moves by hand. */
export function manualClock(start = Date.parse('2025-01-01T00:00:00.000Z')) {
  let now = start;
  return {
    clock: () => new Date(now),
    advance(ms: number) {
      now += ms;
    },
    set(ms: number) {
      now = ms;
    },
  };
}

/**
 * True when `value` has exactly the properties the TypeBox schema declares (optional ones may be
 * missing), recursively for nested object schemas. A structural check without a validator.
 */
export function hasShape(schema: unknown, value: unknown): boolean {
  const s = schema as { type?: string; properties?: Record<string, unknown>; required?: string[]; anyOf?: unknown[] };
  if (s.anyOf) return s.anyOf.some((alt) => hasShape(alt, value));
  if (s.type === 'null') return value === null;
  if (s.type === 'array') return Array.isArray(value) && value.every((v) => hasShape((s as { items?: unknown }).items ?? {}, v));
  if (s.type !== 'object' || !s.properties) {
    if (s.type === 'string') return typeof value === 'string';
    if (s.type === 'integer') return Number.isInteger(value);
    if (s.type === 'number') return typeof value === 'number';
    if (s.type === 'boolean') return typeof value === 'boolean';
    return true;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const obj = value as Record<string, unknown>;
  const props = s.properties;
  if (Object.keys(obj).some((k) => !(k in props))) return false;
  if ((s.required ?? []).some((k) => !(k in obj))) return false;
  return Object.entries(obj).every(([k, v]) => hasShape(props[k], v));
}
