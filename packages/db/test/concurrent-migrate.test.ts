import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { closeDatabase, openDatabase } from '../src/open.js';
import { MIGRATIONS } from '../src/migrate.js';
import { tempDir } from './helpers.js';

// Real processes on the built package: this is the start of api, scheduler and relay at once.
const dist = fileURLToPath(new URL('../dist/', import.meta.url));
const CHILD = `
const [path, startAt, name] = process.argv.slice(1);
const { openDatabase, closeDatabase } = await import(${JSON.stringify(pathToFileURL(join(dist, 'open.js')).href)});
const { schemaVersion } = await import(${JSON.stringify(pathToFileURL(join(dist, 'migrate.js')).href)});
while (Date.now() < Number(startAt)) {} // line up with the others
const db = openDatabase(path);
db.prepare("INSERT INTO users (id, username, password_hash, role, created_at) VALUES (?, ?, 'h', 'user', ?)")
  .run(name, name, new Date().toISOString());
process.stdout.write(JSON.stringify({ version: schemaVersion(db) }));
closeDatabase(db);
`;

function child(path: string, startAt: number, name: string): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--input-type=module', '-e', CHILD, path, String(startAt), name], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => resolve({ code, out, err }));
  });
}

describe('two processes migrating the same new file', () => {
  it('all succeed, every round, and the schema is applied once', async () => {
    expect(existsSync(join(dist, 'open.js')), 'build first: tsc -p tsconfig.build.json').toBe(true);
    const latest = MIGRATIONS[MIGRATIONS.length - 1]!.version;
    const procs = 4;
    for (let round = 0; round < 4; round++) {
      const path = join(tempDir(), `round-${round}`, 'gateway.db');
      const startAt = Date.now() + 700;
      const results = await Promise.all(Array.from({ length: procs }, (_, i) => child(path, startAt, `p${round}-${i}`)));
      for (const r of results) {
        expect(r.err).toBe('');
        expect(r.code).toBe(0);
        expect(JSON.parse(r.out)).toEqual({ version: latest });
      }
      const db = openDatabase(path);
      expect(db.prepare('SELECT version FROM schema_migrations ORDER BY version').pluck().all()).toEqual(
        MIGRATIONS.map((m) => m.version),
      );
      expect(db.prepare('SELECT count(*) FROM users').pluck().get()).toBe(procs);
      closeDatabase(db);
    }
  });
});
