import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, expectTypeOf, it } from 'vitest';
import {
  BASE_FIELDS,
  ConfigError,
  FIELDS,
  describeFields,
  integerField,
  loadConfig,
  loadOrCreateSecretFile,
  optional,
  parseByteSize,
  stringField,
  summarizeConfig,
} from '../src/config.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'runtime-config-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const ALL = Object.values(FIELDS);
const REDIS = { REDIS_URL: 'redis://127.0.0.1:6379' };

function loadError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('fills in the documented defaults', () => {
    const config = loadConfig(ALL, { env: REDIS, envFile: false, cwd: dir });
    expect(config).toMatchObject({
      DB_PATH: join(dir, 'data/gateway.db'),
      REDIS_URL: 'redis://127.0.0.1:6379',
      MEDIA_ROOT: join(dir, 'data/media'),
      API_PORT: 3000,
      REALTIME_PORT: 3001,
      HOST: '127.0.0.1',
      ADMIN_USERNAME: 'admin',
      ADMIN_PASSWORD: undefined,
      MIN_FREE_DISK_BYTES: 1024 ** 3,
      MAX_RETRIES: 3,
      MAX_RETRIES_DOWNLOAD: 3,
      MAX_RETRIES_DUB: 3,
      MAX_RETRIES_MUX: 3,
      SHUTDOWN_TIMEOUT_MS: 30000,
      LOG_LEVEL: 'info',
      NODE_ENV: 'production',
    });
    expect(config.JWT_SECRET.length).toBeGreaterThanOrEqual(32);
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('returns only the fields asked for, typed by name', () => {
    const config = loadConfig([...BASE_FIELDS, FIELDS.REALTIME_PORT], { env: { REALTIME_PORT: '4001' }, envFile: false, cwd: dir });
    expect(config).toEqual({ NODE_ENV: 'production', LOG_LEVEL: 'info', SHUTDOWN_TIMEOUT_MS: 30000, REALTIME_PORT: 4001 });
    expectTypeOf(config.REALTIME_PORT).toEqualTypeOf<number>();
    expectTypeOf(config.LOG_LEVEL).toEqualTypeOf<'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'>();
    // @ts-expect-error not requested
    expect(config.API_PORT).toBeUndefined();
    // nothing written: JWT_SECRET was not asked for
    expect(existsSync(join(dir, 'data'))).toBe(false);
  });

  it('lets a process add its own fields', () => {
    const POLL = integerField('OUTBOX_POLL_MS', { doc: 'outbox poll interval', default: 500, min: 10 });
    const NAME = optional(stringField('WORKER_NAME', { doc: 'worker id' }));
    const config = loadConfig([POLL, NAME], { env: { OUTBOX_POLL_MS: '250' }, envFile: false, cwd: dir });
    expect(config).toEqual({ OUTBOX_POLL_MS: 250, WORKER_NAME: undefined });
    expectTypeOf(config.WORKER_NAME).toEqualTypeOf<string | undefined>();
  });

  it('reports every bad variable in one error, without echoing secrets', () => {
    const env = {
      API_PORT: 'abc',
      REALTIME_PORT: '70000',
      REDIS_URL: 'http://user:hunter2@localhost',
      LOG_LEVEL: 'loud',
      MAX_RETRIES: '1.5',
      JWT_SECRET: 'too-short-secret',
      MIN_FREE_DISK_BYTES: '10 potatoes',
      HOST: 'bad host',
      SHUTDOWN_TIMEOUT_MS: '0',
      NODE_ENV: 'staging',
      ADMIN_USERNAME: 'no spaces please',
    };
    const err = loadError(() => loadConfig(ALL, { env, envFile: false, cwd: dir }));
    expect(err.issues.map((i) => i.name).sort()).toEqual(
      [
        'ADMIN_USERNAME',
        'API_PORT',
        'HOST',
        'JWT_SECRET',
        'LOG_LEVEL',
        'MAX_RETRIES',
        'MIN_FREE_DISK_BYTES',
        'NODE_ENV',
        'REALTIME_PORT',
        'REDIS_URL',
        'SHUTDOWN_TIMEOUT_MS',
      ].sort(),
    );
    for (const issue of err.issues) expect(err.message).toContain(`${issue.name}: ${issue.message}`);
    expect(err.message).toContain('API_PORT: must be an integer from 0 to 65535 (got "abc")');
    expect(err.message).toContain('REALTIME_PORT: must be an integer from 0 to 65535 (got "70000")');
    expect(err.message).toMatch(/REDIS_URL: must use redis:\/\/ or rediss:\/\//);
    expect(err.message).toMatch(/LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent/);
    expect(err.message).toContain('JWT_SECRET: must be at least 32 characters (got 16)');
    expect(err.message).not.toContain('hunter2');
    expect(err.message).not.toContain('too-short-secret');
    // per-stage retries fall back to the bad MAX_RETRIES: reported once, under its own name
    expect(err.issues.filter((i) => i.name.startsWith('MAX_RETRIES'))).toHaveLength(1);
  });

  it('requires REDIS_URL and accepts rediss://', () => {
    const err = loadError(() => loadConfig([FIELDS.REDIS_URL, FIELDS.API_PORT], { env: {}, envFile: false, cwd: dir }));
    expect(err.issues).toEqual([{ name: 'REDIS_URL', message: expect.stringMatching(/^is required/) }]);
    const config = loadConfig([FIELDS.REDIS_URL], { env: { REDIS_URL: 'rediss://:pw@cache.example:6380/2' }, envFile: false, cwd: dir });
    expect(config.REDIS_URL).toBe('rediss://:pw@cache.example:6380/2');
  });

  it('does not create the JWT secret file when other variables are invalid', () => {
    loadError(() => loadConfig(ALL, { env: { ...REDIS, API_PORT: '-1' }, envFile: false, cwd: dir }));
    expect(existsSync(join(dir, 'data', 'jwt-secret'))).toBe(false);
  });

  it('reads .env and lets the real environment win', () => {
    writeFileSync(
      join(dir, '.env'),
      ['# comment', 'API_PORT=4000', 'LOG_LEVEL=debug', 'HOST="0.0.0.0"', 'REDIS_URL=redis://from-file:6379', 'MAX_RETRIES=5'].join('\n'),
    );
    const config = loadConfig([FIELDS.API_PORT, FIELDS.LOG_LEVEL, FIELDS.HOST, FIELDS.REDIS_URL, FIELDS.MAX_RETRIES, FIELDS.MAX_RETRIES_DUB], {
      env: { API_PORT: '5000', REDIS_URL: '', MAX_RETRIES_DUB: '1' },
      cwd: dir,
    });
    expect(config).toEqual({
      API_PORT: 5000, // env wins
      LOG_LEVEL: 'debug',
      HOST: '0.0.0.0',
      REDIS_URL: 'redis://from-file:6379', // a blank env value counts as unset
      MAX_RETRIES: 5,
      MAX_RETRIES_DUB: 1,
    });
  });

  it('names the .env file when a bad value came from it, and refuses a missing explicit file', () => {
    writeFileSync(join(dir, 'custom.env'), 'API_PORT=http\n');
    const err = loadError(() => loadConfig([FIELDS.API_PORT], { env: {}, envFile: 'custom.env', cwd: dir }));
    expect(err.message).toContain(`(got "http" from ${join(dir, 'custom.env')})`);

    const missing = loadError(() => loadConfig([FIELDS.API_PORT], { env: {}, envFile: 'nope.env', cwd: dir }));
    expect(missing.message).toContain('cannot read the env file');
    // the default .env is optional
    expect(loadConfig([FIELDS.API_PORT], { env: {}, cwd: dir }).API_PORT).toBe(3000);
  });

  it('generates the JWT secret once, mode 0600, next to DB_PATH, and reuses it', () => {
    const env = { DB_PATH: 'state/db/gateway.db' };
    const first = loadConfig([FIELDS.DB_PATH, FIELDS.JWT_SECRET], { env, envFile: false, cwd: dir });
    const file = join(dir, 'state/db/jwt-secret');
    expect(first.DB_PATH).toBe(join(dir, 'state/db/gateway.db'));
    expect(readFileSync(file, 'utf8').trim()).toBe(first.JWT_SECRET);
    expect(first.JWT_SECRET.length).toBeGreaterThanOrEqual(32);
    expect(statSync(file).mode & 0o777).toBe(0o600);

    const second = loadConfig([FIELDS.JWT_SECRET], { env, envFile: false, cwd: dir });
    expect(second.JWT_SECRET).toBe(first.JWT_SECRET);

    // a given secret is used as is and the file is left alone
    const given = 'x'.repeat(40);
    expect(loadConfig([FIELDS.JWT_SECRET], { env: { ...env, JWT_SECRET: given }, envFile: false, cwd: dir }).JWT_SECRET).toBe(given);
    expect(readFileSync(file, 'utf8').trim()).toBe(first.JWT_SECRET);
  });

  it('tightens a loosened secret file and refuses a truncated one', () => {
    const file = join(dir, 'jwt-secret');
    const secret = loadOrCreateSecretFile(file);
    chmodSync(file, 0o644);
    expect(loadOrCreateSecretFile(file)).toBe(secret);
    expect(statSync(file).mode & 0o777).toBe(0o600);

    writeFileSync(file, 'short\n');
    expect(() => loadOrCreateSecretFile(file)).toThrow(/fewer than 32 characters/);
    const err = loadError(() => loadConfig([FIELDS.DB_PATH, FIELDS.JWT_SECRET], { env: { DB_PATH: join(dir, 'g.db') }, envFile: false, cwd: dir }));
    expect(err.issues.map((i) => i.name)).toEqual(['JWT_SECRET']);
  });

  it('leaves no temporary files behind', () => {
    mkdirSync(join(dir, 'data'));
    loadOrCreateSecretFile(join(dir, 'data', 'jwt-secret'));
    loadOrCreateSecretFile(join(dir, 'data', 'jwt-secret'));
    expect(readFileSync(join(dir, 'data', 'jwt-secret'), 'utf8')).toMatch(/^[\w-]{64}\n$/);
    expect(statSync(join(dir, 'data')).isDirectory()).toBe(true);
    expect(readdirSync(join(dir, 'data'))).toEqual(['jwt-secret']);
  });

  // PM2 starts api, realtime and scheduler at once: they must all end up with one secret.
  const built = fileURLToPath(new URL('../dist/config.js', import.meta.url));
  it.skipIf(!existsSync(built))('gives processes that start together the same secret', async () => {
    const file = join(dir, 'race', 'jwt-secret');
    const script = `import(${JSON.stringify(built)}).then((m) => process.stdout.write(m.loadOrCreateSecretFile(${JSON.stringify(file)})))`;
    const run = () =>
      new Promise<string>((resolve, reject) => {
        execFile(process.execPath, ['-e', script], (err, stdout) => (err ? reject(err) : resolve(stdout)));
      });
    const secrets = await Promise.all(Array.from({ length: 6 }, run));
    expect(new Set(secrets).size).toBe(1);
    expect(secrets[0]).toBe(readFileSync(file, 'utf8').trim());
    expect(readdirSync(join(dir, 'race'))).toEqual(['jwt-secret']);
  }, 20_000);
});

describe('parseByteSize', () => {
  it.each([
    ['0', 0],
    ['1073741824', 1073741824],
    ['500MB', 500_000_000],
    ['500 mb', 500_000_000],
    ['2GiB', 2 * 1024 ** 3],
    ['1.5GB', 1_500_000_000],
    ['10KiB', 10240],
    ['1TB', 1e12],
    ['42B', 42],
  ])('%s = %d bytes', (text, bytes) => {
    expect(parseByteSize(text)).toBe(bytes);
  });

  it.each(['', 'abc', '-1', '5K', '1.5', '10 potatoes', '1e9', 'GB'])('refuses %j', (text) => {
    expect(() => parseByteSize(text)).toThrow(/byte size|whole number/);
  });

  it('works through the MIN_FREE_DISK_BYTES field', () => {
    expect(loadConfig([FIELDS.MIN_FREE_DISK_BYTES], { env: { MIN_FREE_DISK_BYTES: '500MB' }, envFile: false, cwd: dir }).MIN_FREE_DISK_BYTES).toBe(500e6);
  });
});

describe('catalog', () => {
  it('covers the names in ARCHITECTURE.md and documents each', () => {
    const rows = describeFields();
    const names = rows.map((r) => r.name);
    for (const name of [
      'DB_PATH',
      'REDIS_URL',
      'MEDIA_ROOT',
      'API_PORT',
      'REALTIME_PORT',
      'JWT_SECRET',
      'ADMIN_USERNAME',
      'ADMIN_PASSWORD',
      'MIN_FREE_DISK_BYTES',
      'MAX_RETRIES',
      'SHUTDOWN_TIMEOUT_MS',
      'LOG_LEVEL',
    ]) {
      expect(names).toContain(name);
    }
    for (const row of rows) {
      expect(row.doc.length).toBeGreaterThan(3);
      expect(row.required).toBe(row.name === 'REDIS_URL');
    }
    expect(rows.find((r) => r.name === 'JWT_SECRET')?.secret).toBe(true);
    expect(rows.find((r) => r.name === 'API_PORT')?.default).toBe('3000');
  });

  it('summarizes a config for logging without secrets', () => {
    const config = loadConfig(ALL, { env: { REDIS_URL: 'redis://:hunter2@127.0.0.1:6379', ADMIN_PASSWORD: 'pw' }, envFile: false, cwd: dir });
    const summary = JSON.stringify(summarizeConfig(config));
    expect(summary).not.toContain('hunter2');
    expect(summary).not.toContain(config.JWT_SECRET);
    expect(summary).not.toContain('"pw"');
    expect(summary).toContain('127.0.0.1:6379');
  });
});
