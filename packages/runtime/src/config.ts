/**
 * One validated configuration object per process, read once at start.
 *
 * Building blocks: a field says how to parse one variable and what to use when it is
 * unset; `loadConfig(fields)` reads the environment (plus an optional `.env` file),
 * validates every field, reports all problems in one `ConfigError`, and returns a
 * frozen object keyed by variable name. Each process lists the fields it needs.
 */
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  linkSync,
  mkdirSync,
  readFileSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { isIP } from 'node:net';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parseEnv } from 'node:util';

// ---------------------------------------------------------------------------
// Field definitions

export interface FieldContext {
  /** Merged variables: the `.env` file overridden by the real environment; blank values removed. */
  readonly env: Readonly<Record<string, string>>;
  /** Directory relative paths are resolved against. */
  readonly cwd: string;
  /**
   * The value of another field (resolved once and shared), e.g. per-stage retries falling back
   * to MAX_RETRIES. If that field is invalid its problem is reported under its own name.
   */
  get<T>(field: Field<string, T>): T;
}

export interface Field<N extends string = string, T = unknown> {
  /** The environment variable, and the key in the loaded configuration. */
  readonly name: N;
  /** One line for the README's configuration table. */
  readonly doc: string;
  /** The default as the README shows it; `undefined` means the variable is required. */
  readonly defaultDoc: string | undefined;
  /** Never echo the value in errors or summaries. */
  readonly secret?: boolean;
  /** The fallback has side effects (writes a file): only run once every other field is valid. */
  readonly deferred?: boolean;
  /** Turns the raw (non-blank) value into T; throws an Error whose message says what is wrong. */
  parse(raw: string, ctx: FieldContext): T;
  /** Value when the variable is unset; absent means required. */
  fallback?(ctx: FieldContext): T;
}

export type FieldValue<F> = F extends Field<string, infer T> ? T : never;

/** The loaded configuration for a list of fields: `{ readonly API_PORT: number, ... }`. */
export type ConfigOf<F extends readonly Field<string, unknown>[]> = {
  readonly [K in F[number] as K['name']]: FieldValue<K>;
};

export function defineField<const N extends string, T>(field: Field<N, T>): Field<N, T> {
  return Object.freeze({ ...field });
}

/** Makes a field optional: unset gives `undefined`. */
export function optional<N extends string, T>(field: Field<N, T>): Field<N, T | undefined> {
  return defineField<N, T | undefined>({
    ...field,
    defaultDoc: 'unset',
    parse: (raw, ctx) => field.parse(raw, ctx),
    fallback: () => undefined,
  });
}

interface Documented<T> {
  doc: string;
  default?: T;
  /** How the default appears in the README when it is not just `String(default)`. */
  defaultDoc?: string;
}

function withDefault<T>(opts: Documented<T>): Pick<Field<string, T>, 'defaultDoc' | 'fallback'> {
  if (opts.default === undefined) return { defaultDoc: opts.defaultDoc };
  const value = opts.default;
  return { defaultDoc: opts.defaultDoc ?? String(value), fallback: () => value };
}

export function integerField<const N extends string>(
  name: N,
  opts: Documented<number> & { min?: number; max?: number },
): Field<N, number> {
  const min = opts.min ?? Number.MIN_SAFE_INTEGER;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  return defineField({
    name,
    doc: opts.doc,
    ...withDefault(opts),
    parse: (raw) => parseInteger(raw, min, max),
  });
}

export function portField<const N extends string>(name: N, opts: Documented<number>): Field<N, number> {
  return integerField(name, { ...opts, min: 0, max: 65535 });
}

export function stringField<const N extends string>(
  name: N,
  opts: Documented<string> & { pattern?: RegExp; patternDoc?: string; minLength?: number; maxLength?: number; secret?: boolean },
): Field<N, string> {
  return defineField({
    name,
    doc: opts.doc,
    ...withDefault(opts),
    ...(opts.secret ? { secret: true } : {}),
    parse: (raw) => {
      if (opts.minLength !== undefined && raw.length < opts.minLength) {
        throw new Error(`must be at least ${opts.minLength} characters (got ${raw.length})`);
      }
      if (opts.maxLength !== undefined && raw.length > opts.maxLength) {
        throw new Error(`must be at most ${opts.maxLength} characters (got ${raw.length})`);
      }
      if (opts.pattern && !opts.pattern.test(raw)) {
        throw new Error(`must be ${opts.patternDoc ?? `of the form ${String(opts.pattern)}`}`);
      }
      return raw;
    },
  });
}

export function enumField<const N extends string, const V extends string>(
  name: N,
  values: readonly V[],
  opts: Documented<V>,
): Field<N, V> {
  return defineField({
    name,
    doc: opts.doc,
    ...withDefault(opts),
    parse: (raw) => {
      const value = raw.trim();
      if (!(values as readonly string[]).includes(value)) throw new Error(`must be one of ${values.join(', ')}`);
      return value as V;
    },
  });
}

export function booleanField<const N extends string>(name: N, opts: Documented<boolean>): Field<N, boolean> {
  return defineField({
    name,
    doc: opts.doc,
    ...withDefault(opts),
    parse: (raw) => {
      const value = raw.trim().toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(value)) return true;
      if (['0', 'false', 'no', 'off'].includes(value)) return false;
      throw new Error('must be true or false (also accepted: 1/0, yes/no, on/off)');
    },
  });
}

export function byteSizeField<const N extends string>(name: N, opts: Documented<number>): Field<N, number> {
  return defineField({ name, doc: opts.doc, ...withDefault(opts), parse: (raw) => parseByteSize(raw) });
}

/** A filesystem path, returned absolute (resolved against `cwd`) so a later chdir changes nothing. */
export function pathField<const N extends string>(name: N, opts: Documented<string>): Field<N, string> {
  const fallback = opts.default;
  return defineField({
    name,
    doc: opts.doc,
    defaultDoc: opts.defaultDoc ?? fallback,
    parse: (raw, ctx) => resolvePath(raw, ctx.cwd),
    ...(fallback === undefined ? {} : { fallback: (ctx: FieldContext) => resolvePath(fallback, ctx.cwd) }),
  });
}

export function redisUrlField<const N extends string>(name: N, opts: Documented<string>): Field<N, string> {
  return defineField({
    name,
    doc: opts.doc,
    ...withDefault(opts),
    // The URL may carry a password: never echo it back.
    secret: true,
    parse: (raw) => parseRedisUrl(raw),
  });
}

// ---------------------------------------------------------------------------
// Parsers (exported for reuse and tests)

export function parseInteger(raw: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number {
  const text = raw.trim();
  const value = /^[+-]?\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new Error(`must be an integer from ${min} to ${max}`);
  }
  return value;
}

const BYTE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/**
 * `1073741824`, `500MB` (10^6), `2GiB` (2^30), `1.5 GB`; case-insensitive. Bare `K`/`M`/`G`
 * are refused because tools disagree on whether they mean 1000 or 1024.
 */
export function parseByteSize(raw: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(raw.trim());
  const unit = match?.[2]?.toLowerCase() || 'b';
  const factor = BYTE_UNITS[unit];
  if (!match || factor === undefined) {
    throw new Error('must be a byte size: an integer, or a number with B, KB, MB, GB, TB, KiB, MiB, GiB or TiB');
  }
  const value = Number(match[1]) * factor;
  if (!Number.isSafeInteger(Math.floor(value))) throw new Error('is too large');
  if (unit === 'b' && !Number.isInteger(value)) throw new Error('must be a whole number of bytes');
  return Math.floor(value);
}

export function parseRedisUrl(raw: string): string {
  const text = raw.trim();
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error('must be a URL such as redis://127.0.0.1:6379');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new Error(`must use redis:// or rediss:// (got ${url.protocol}//)`);
  }
  if (!url.hostname) throw new Error('must name a host, e.g. redis://127.0.0.1:6379');
  return text;
}

function resolvePath(raw: string, cwd: string): string {
  return isAbsolute(raw) ? raw : resolve(cwd, raw);
}

// ---------------------------------------------------------------------------
// The JWT secret file

export const JWT_SECRET_FILE = 'jwt-secret';
export const MIN_SECRET_LENGTH = 32;

function errCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as { code?: string }).code : undefined;
}

function readSecret(file: string): string {
  const secret = readFileSync(file, 'utf8').trim();
  if (secret.length < MIN_SECRET_LENGTH) {
    throw new Error(`${file} holds fewer than ${MIN_SECRET_LENGTH} characters; delete it to generate a new secret`);
  }
  // Tighten a file someone loosened: a readable signing key lets anyone mint tokens.
  if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  return secret;
}

/**
 * Returns the secret kept in `file`, creating it (mode 0600) on first use. Processes that
 * start together race here, so the file is written aside and hard-linked into place: the
 * first link wins and every process then reads the same complete value.
 */
export function loadOrCreateSecretFile(file: string): string {
  try {
    return readSecret(file);
  } catch (err) {
    if (errCode(err) !== 'ENOENT') throw err;
  }
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const secret = randomBytes(48).toString('base64url');
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(tmp, `${secret}\n`, { mode: 0o600, flag: 'wx' });
  try {
    chmodSync(tmp, 0o600); // mode above is filtered by the umask
    try {
      linkSync(tmp, file);
    } catch (err) {
      const code = errCode(err);
      if (code !== 'EEXIST') {
        // Filesystems without hard links: exclusive create is the next best thing.
        try {
          writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
        } catch (err2) {
          if (errCode(err2) !== 'EEXIST') throw err2;
        }
      }
    }
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
  }
  return readSecret(file);
}

function dataDirOf(dbPath: string, cwd: string): string {
  return dbPath === ':memory:' ? resolve(cwd, 'data') : dirname(dbPath);
}

// ---------------------------------------------------------------------------
// The shared catalog (names from ARCHITECTURE.md)

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const DB_PATH = defineField({
  name: 'DB_PATH',
  doc: 'SQLite file (its directory also holds the generated jwt-secret)',
  defaultDoc: './data/gateway.db',
  // `:memory:` is better-sqlite3's in-memory database, not a path.
  parse: (raw, ctx) => (raw === ':memory:' ? raw : resolvePath(raw, ctx.cwd)),
  fallback: (ctx) => resolvePath('./data/gateway.db', ctx.cwd),
});

const MAX_RETRIES = integerField('MAX_RETRIES', { doc: 'stage retries before a job fails', default: 3, min: 0, max: 100 });

function stageRetries<const N extends string>(name: N, stage: string): Field<N, number> {
  return defineField({
    name,
    doc: `retries for the ${stage} stage`,
    defaultDoc: 'MAX_RETRIES',
    parse: (raw) => parseInteger(raw, 0, 100),
    fallback: (ctx) => ctx.get(MAX_RETRIES),
  });
}

export const FIELDS = {
  DB_PATH,
  REDIS_URL: redisUrlField('REDIS_URL', {
    doc: 'Redis to use: a redis:// or rediss:// URL',
    defaultDoc: 'unset: the start command runs a private redis-server',
  }),
  MEDIA_ROOT: pathField('MEDIA_ROOT', { doc: 'where media files live', default: './data/media' }),
  API_PORT: portField('API_PORT', { doc: 'REST API port', default: 3000 }),
  REALTIME_PORT: portField('REALTIME_PORT', { doc: 'Socket.IO port', default: 3001 }),
  HOST: defineField({
    name: 'HOST',
    doc: 'address the servers listen on',
    defaultDoc: '127.0.0.1',
    parse: (raw) => {
      const host = raw.trim();
      if (isIP(host) === 0 && !/^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host)) {
        throw new Error('must be an IP address or a host name');
      }
      return host;
    },
    fallback: () => '127.0.0.1',
  }),
  JWT_SECRET: defineField({
    name: 'JWT_SECRET',
    doc: `signing key, at least ${MIN_SECRET_LENGTH} characters`,
    defaultDoc: 'generated once and kept in <dirname(DB_PATH)>/jwt-secret (mode 0600)',
    secret: true,
    deferred: true,
    parse: (raw) => {
      if (raw.length < MIN_SECRET_LENGTH) {
        throw new Error(`must be at least ${MIN_SECRET_LENGTH} characters (got ${raw.length})`);
      }
      return raw;
    },
    fallback: (ctx) => loadOrCreateSecretFile(join(dataDirOf(ctx.get(DB_PATH), ctx.cwd), JWT_SECRET_FILE)),
  }),
  ADMIN_USERNAME: stringField('ADMIN_USERNAME', {
    doc: 'first admin account, created at first start',
    default: 'admin',
    maxLength: 64,
    pattern: /^[A-Za-z0-9_.@-]+$/,
    patternDoc: 'letters, digits, and _ . @ - only',
  }),
  ADMIN_PASSWORD: optional(
    stringField('ADMIN_PASSWORD', {
      doc: 'password of the first admin (unset: generated and printed once)',
      secret: true,
    }),
  ),
  MIN_FREE_DISK_BYTES: byteSizeField('MIN_FREE_DISK_BYTES', {
    doc: 'downloads wait while MEDIA_ROOT has less free space (accepts 500MB, 2GiB, ...)',
    default: 2 ** 30,
    defaultDoc: '1GiB',
  }),
  MAX_RETRIES,
  MAX_RETRIES_DOWNLOAD: stageRetries('MAX_RETRIES_DOWNLOAD', 'download'),
  MAX_RETRIES_DUB: stageRetries('MAX_RETRIES_DUB', 'dub'),
  MAX_RETRIES_MUX: stageRetries('MAX_RETRIES_MUX', 'mux'),
  // Shared by realtime (its redis-adapter) and relay (its emitter): one setting, one prefix.
  REALTIME_ADAPTER_KEY: stringField('REALTIME_ADAPTER_KEY', {
    doc: 'channel prefix of @socket.io/redis-adapter; the relay\'s emitter uses the same',
    default: 'socket.io',
    minLength: 1,
    maxLength: 100,
    pattern: /^[A-Za-z0-9_.:-]+$/,
    patternDoc: 'letters, digits, and _ . : - only',
  }),
  // Shared: the api enqueues downloads and the scheduler the later stages; both set BullMQ's backoff.
  STAGE_BACKOFF_MS: integerField('STAGE_BACKOFF_MS', {
    doc: 'base delay of the exponential backoff between stage attempts',
    default: 5000,
    min: 0,
    max: 3_600_000,
  }),
  SHUTDOWN_TIMEOUT_MS: integerField('SHUTDOWN_TIMEOUT_MS', {
    doc: 'graceful shutdown limit in milliseconds',
    default: 30000,
    min: 1,
    max: 3_600_000,
  }),
  LOG_LEVEL: enumField('LOG_LEVEL', LOG_LEVELS, { doc: 'pino level', default: 'info' }),
  NODE_ENV: enumField('NODE_ENV', ['production', 'development', 'test'], {
    doc: 'runtime mode',
    default: 'production',
  }),
} as const;

/** Fields every process reads. */
export const BASE_FIELDS = [FIELDS.NODE_ENV, FIELDS.LOG_LEVEL, FIELDS.SHUTDOWN_TIMEOUT_MS] as const;

export interface FieldDescription {
  name: string;
  doc: string;
  /** `undefined`: required. */
  default: string | undefined;
  required: boolean;
  secret: boolean;
}

/** Rows for the README's configuration table (and the test that checks it). */
export function describeFields(fields: readonly Field<string, unknown>[] = Object.values(FIELDS)): FieldDescription[] {
  return fields.map((f) => ({
    name: f.name,
    doc: f.doc,
    default: f.defaultDoc,
    required: f.fallback === undefined,
    secret: f.secret === true,
  }));
}

// ---------------------------------------------------------------------------
// Loading

export interface ConfigIssue {
  name: string;
  message: string;
}

export class ConfigError extends Error {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    const n = issues.length;
    super(
      `Invalid configuration (${n} problem${n === 1 ? '' : 's'}):\n` +
        issues.map((i) => `  - ${i.name}: ${i.message}`).join('\n'),
    );
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export interface LoadConfigOptions {
  /** Variables to read; defaults to `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
  /**
   * A `.env` file: a path (relative to cwd; must exist), `false` for none, or unset to read
   * `<cwd>/.env` when it exists. Real environment variables win over the file.
   */
  envFile?: string | false;
  /** Directory for relative paths; defaults to `process.cwd()`. */
  cwd?: string;
}

// Thrown by ctx.get when a dependency failed: its problem is already on the list.
class DependencyFailed extends Error {}
// A mistake in the field definitions themselves (not in the environment): never collected.
class FieldDefinitionError extends TypeError {}

function describeValue(raw: string, source: string | undefined): string {
  const shown = raw.length > 80 ? `${raw.slice(0, 77)}...` : raw;
  return ` (got ${JSON.stringify(shown)}${source ? ` from ${source}` : ''})`;
}

/**
 * Reads and validates `fields`, reporting every problem at once in a ConfigError.
 * Blank values count as unset (compose passes `VAR=` for unset variables).
 */
export function loadConfig<const F extends readonly Field<string, unknown>[]>(
  fields: F,
  options: LoadConfigOptions = {},
): ConfigOf<F> {
  const cwd = options.cwd ?? process.cwd();
  const issues: ConfigIssue[] = [];

  const fromFile: Record<string, string> = {};
  let filePath: string | undefined;
  if (options.envFile !== false) {
    filePath = resolve(cwd, options.envFile ?? '.env');
    try {
      const parsed = parseEnv(readFileSync(filePath, 'utf8'));
      for (const [k, v] of Object.entries(parsed)) if (v !== undefined) fromFile[k] = v;
    } catch (err) {
      if (errCode(err) !== 'ENOENT' || options.envFile !== undefined) {
        issues.push({ name: filePath, message: `cannot read the env file: ${(err as Error).message}` });
      }
    }
  }

  const env: Record<string, string> = {};
  const sources: Record<string, string> = {};
  for (const [k, v] of Object.entries(fromFile)) {
    if (v.trim() !== '') {
      env[k] = v;
      sources[k] = filePath ?? '.env';
    }
  }
  for (const [k, v] of Object.entries(options.env ?? process.env)) {
    if (v !== undefined && v.trim() !== '') {
      env[k] = v;
      delete sources[k];
    }
  }

  type Outcome = { ok: true; value: unknown } | { ok: false };
  const done = new Map<string, Outcome>();
  const byName = new Map<string, Field<string, unknown>>();
  const inProgress = new Set<string>();

  const ctx: FieldContext = {
    env: Object.freeze({ ...env }),
    cwd,
    get<T>(field: Field<string, T>): T {
      const outcome = resolveField(field as Field<string, unknown>);
      if (!outcome.ok) throw new DependencyFailed(field.name);
      return outcome.value as T;
    },
  };

  function resolveField(field: Field<string, unknown>): Outcome {
    const known = byName.get(field.name);
    if (known && known !== field) throw new FieldDefinitionError(`two different fields are named ${field.name}`);
    byName.set(field.name, field);
    const cached = done.get(field.name);
    if (cached) return cached;
    if (inProgress.has(field.name)) throw new FieldDefinitionError(`fields depend on each other in a cycle at ${field.name}`);
    inProgress.add(field.name);
    let outcome: Outcome;
    const raw = env[field.name];
    try {
      if (raw !== undefined) outcome = { ok: true, value: field.parse(raw, ctx) };
      else if (field.fallback) outcome = { ok: true, value: field.fallback(ctx) };
      else throw new Error(`is required${field.doc ? ` (${field.doc})` : ''}`);
    } catch (err) {
      if (err instanceof FieldDefinitionError) throw err;
      outcome = { ok: false };
      if (!(err instanceof DependencyFailed)) {
        const message = err instanceof Error ? err.message : String(err);
        const got = raw !== undefined && !field.secret ? describeValue(raw, sources[field.name]) : '';
        const from = raw !== undefined && field.secret && sources[field.name] ? ` (from ${sources[field.name]})` : '';
        issues.push({ name: field.name, message: `${message}${got}${from}` });
      }
    }
    inProgress.delete(field.name);
    done.set(field.name, outcome);
    return outcome;
  }

  // Side-effecting fallbacks (creating the JWT secret file) wait until the rest is valid,
  // so a typo elsewhere never leaves files behind.
  const deferred: Field<string, unknown>[] = [];
  for (const field of fields) {
    if (field.deferred && env[field.name] === undefined) deferred.push(field);
    else resolveField(field);
  }
  if (issues.length === 0) for (const field of deferred) resolveField(field);
  if (issues.length > 0) throw new ConfigError(issues);

  const config: Record<string, unknown> = {};
  for (const field of fields) {
    const outcome = done.get(field.name);
    if (outcome?.ok) config[field.name] = outcome.value;
  }
  return Object.freeze(config) as ConfigOf<F>;
}

/** A copy safe to log at start: secrets replaced, passwords in URLs masked. */
export function summarizeConfig(
  config: Readonly<Record<string, unknown>>,
  fields: readonly Field<string, unknown>[] = Object.values(FIELDS),
): Record<string, unknown> {
  const secret = new Set(fields.filter((f) => f.secret).map((f) => f.name));
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    if (typeof value === 'string' && /^rediss?:\/\//.test(value)) {
      try {
        const url = new URL(value);
        if (url.password) url.password = '***';
        out[key] = url.toString();
        continue;
      } catch {
        // fall through
      }
    }
    out[key] = secret.has(key) && value !== undefined ? '[Redacted]' : value;
  }
  return out;
}
