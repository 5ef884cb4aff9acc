/**
 * Shared test helpers: an api built on a fresh SQLite file and media root in a temp dir, its own
 * BullMQ and gateway key prefixes on the Redis at REDIS_URL, and cleanup of all of it.
 * Every response the app sends is recorded, and close() fails the test if any was a 5xx
 * (invariant 6), except the /healthz 503 that reports a dependency down and an overload 503
 * that says when to retry.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { Redis } from 'ioredis';
import { closeDatabase, openDatabase, type Database } from '@dubgate/db/open';
import { startRedisServer, type RedisServer } from '@dubgate/test-support/redis-server';
import { buildApp } from '../src/app.js';
import { loadApiConfig, type ApiConfig } from '../src/config.js';

export const ADMIN_USERNAME = 'admin';
export const ADMIN_PASSWORD = 'admin-password-for-tests';
export const USER_PASSWORD = 'user-password-for-tests';
export const JWT_SECRET = 'test-jwt-secret-0123456789abcdef0123456789abcdef';

export function redisUrl(): string {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error('REDIS_URL must point at a disposable Redis for these tests');
  return url;
}

export const rand = (): string => randomBytes(5).toString('hex');

export interface RecordedResponse {
  method: string;
  url: string;
  status: number;
  /** A deliberate "busy, retry later" (503 with Retry-After), not a failure. */
  retryAfter?: string;
}

export interface TestApp {
  app: FastifyInstance;
  config: ApiConfig;
  dir: string;
  dbPath: string;
  mediaRoot: string;
  queuePrefix: string;
  gatewayKeyPrefix: string;
  /** Every response the app sent. */
  responses: RecordedResponse[];
  /** A second connection to the same SQLite file, for assertions and for setting up states. */
  db(): Database;
  /** A plain Redis client on the same Redis, for assertions. */
  redis(): Redis;
  /** Closes the app, deletes the Redis keys under both prefixes, removes the temp dir. Safe twice. */
  close(): Promise<void>;
}

export interface TestAppOptions {
  /** Extra or overriding environment for loadApiConfig. */
  env?: Record<string, string | undefined>;
  /** Another Redis than REDIS_URL (a dedicated one the test stops). */
  redisUrl?: string;
  /** A short name for the prefixes, e.g. the test file. */
  name?: string;
}

export async function createTestApp(opts: TestAppOptions = {}): Promise<TestApp> {
  const dir = mkdtempSync(join(tmpdir(), 'dubgate-api-test-'));
  const dbPath = join(dir, 'data', 'gateway.db');
  const mediaRoot = join(dir, 'media');
  const tag = `${opts.name ?? 'api'}-${rand()}`;
  const queuePrefix = `qt-${tag}`;
  const gatewayKeyPrefix = `gwt-${tag}`;
  const url = opts.redisUrl ?? redisUrl();
  const loaded = loadApiConfig({
    env: {
      DB_PATH: dbPath,
      MEDIA_ROOT: mediaRoot,
      REDIS_URL: url,
      JWT_SECRET,
      ADMIN_USERNAME,
      ADMIN_PASSWORD,
      LOG_LEVEL: 'silent',
      // Tests log in often from one address; the rate-limit test sets its own low limits.
      LOGIN_MAX_PER_CLIENT: '100000',
      LOGIN_MAX_PER_USERNAME: '100000',
      ...opts.env,
    },
    envFile: false,
  });
  const config: ApiConfig = { ...loaded, queuePrefix, gatewayKeyPrefix };
  const app = await buildApp({ config });
  const responses: RecordedResponse[] = [];
  app.addHook('onResponse', async (request, reply) => {
    const retryAfter = reply.getHeader('retry-after');
    responses.push({ method: request.method, url: request.url, status: reply.statusCode, ...(retryAfter !== undefined ? { retryAfter: String(retryAfter) } : {}) });
  });

  let sideDb: Database | null = null;
  let sideRedis: Redis | null = null;
  let closed: Promise<void> | null = null;

  async function doClose() {
    try {
      await app.close();
    } finally {
      closeDatabase(sideDb);
      // Bounded: a test's dedicated Redis may be stopped or hung by now.
      const r = sideRedis ?? new Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true, connectTimeout: 2_000, commandTimeout: 2_000 });
      r.on('error', () => {});
      try {
        if (r.status === 'wait') await r.connect();
        await deleteKeysUnder(r, queuePrefix);
        await deleteKeysUnder(r, gatewayKeyPrefix);
      } catch {
        // A dedicated Redis that is gone already took its keys with it.
      }
      r.disconnect();
      rmSync(dir, { recursive: true, force: true });
    }
    const serverErrors = responses.filter(
      (r) => r.status >= 500 && !(r.status === 503 && (r.url.startsWith('/healthz') || r.retryAfter !== undefined)),
    );
    if (serverErrors.length > 0) throw new Error(`the api answered 5xx: ${JSON.stringify(serverErrors)}`);
  }

  return {
    app,
    config,
    dir,
    dbPath,
    mediaRoot,
    queuePrefix,
    gatewayKeyPrefix,
    responses,
    db: () => (sideDb ??= openDatabase(dbPath)),
    redis: () => (sideRedis ??= new Redis(url, { maxRetriesPerRequest: 1, commandTimeout: 5_000 })),
    close: () => (closed ??= doClose()),
  };
}

/** Every key under `prefix:` (SCAN, not KEYS). */
export async function keysUnder(redis: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

export async function deleteKeysUnder(redis: Redis, prefix: string): Promise<void> {
  const keys = await keysUnder(redis, prefix);
  for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
}

// ---------------------------------------------------------------------------------------------
// Auth

export interface Login {
  token: string;
  csrfToken: string;
  /** `dubgate_session=<jwt>`, ready for a cookie header. */
  cookie: string;
  /** The raw Set-Cookie header. */
  setCookie: string;
  user: { id: string; username: string; role: string };
  response: LightMyRequestResponse;
}

export async function login(app: FastifyInstance, username: string, password: string, remoteAddress?: string): Promise<Login> {
  const res = await app.inject({
    method: 'POST',
    url: '/api/auth/login',
    payload: { username, password },
    ...(remoteAddress ? { remoteAddress } : {}),
  });
  if (res.statusCode !== 200) throw new Error(`login of ${username} failed: ${res.statusCode} ${res.body}`);
  const body = res.json<{ token: string; csrfToken: string; user: Login['user'] }>();
  const raw = res.headers['set-cookie'];
  const setCookie = (Array.isArray(raw) ? raw.find((c) => c.startsWith('dubgate_session=')) : raw) ?? '';
  return { token: body.token, csrfToken: body.csrfToken, user: body.user, cookie: setCookie.split(';')[0]!, setCookie, response: res };
}

export const loginAdmin = (app: FastifyInstance): Promise<Login> => login(app, ADMIN_USERNAME, ADMIN_PASSWORD);

export const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

/** Creates a user through `POST /api/users` (as the admin) and logs them in. */
export async function createUser(
  app: FastifyInstance,
  adminToken: string,
  username: string,
  role: 'user' | 'admin' = 'user',
): Promise<Login> {
  const res = await app.inject({
    method: 'POST',
    url: '/api/users',
    headers: bearer(adminToken),
    payload: { username, password: USER_PASSWORD, role },
  });
  if (res.statusCode !== 201) throw new Error(`creating ${username} failed: ${res.statusCode} ${res.body}`);
  return login(app, username, USER_PASSWORD);
}

export function decodeJwtPayload(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
}

/** Signs a JWT by hand (HMAC), so tests can forge expired, misaddressed or foreign tokens. */
export function signJwt(
  payload: Record<string, unknown>,
  opts: { secret?: string; alg?: 'HS256' | 'HS384' | 'HS512' | 'none'; header?: Record<string, unknown> } = {},
): string {
  const alg = opts.alg ?? 'HS256';
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${b64({ alg, typ: 'JWT', ...opts.header })}.${b64(payload)}`;
  if (alg === 'none') return `${input}.`;
  const hash = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }[alg];
  return `${input}.${createHmac(hash, opts.secret ?? JWT_SECRET).update(input).digest('base64url')}`;
}

// ---------------------------------------------------------------------------------------------
// Jobs and assertions

export interface JobBody {
  url: string;
  requestedDubbing?: boolean;
  targetLang?: string;
  formatPreset?: string;
  outputContainer?: string;
}

export interface JobJson {
  id: string;
  ownerId: string;
  url: string;
  status: string;
  generation: number;
  requestedDubbing: boolean;
  targetLang: string | null;
  formatPreset: string;
  outputContainer: string;
  failedStage: string | null;
  [k: string]: unknown;
}

let urlCounter = 0;
export const videoUrl = (slug = `v${++urlCounter}-${rand()}`): string => `https://videos.example.com/watch/${slug}`;

export async function postJob(
  app: FastifyInstance,
  token: string,
  body: Partial<JobBody> = {},
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/api/jobs', headers: { ...bearer(token), ...headers }, payload: { url: videoUrl(), ...body } });
}

/** Creates a job and returns it; throws unless the answer is 201. */
export async function createJob(app: FastifyInstance, token: string, body: Partial<JobBody> = {}): Promise<JobJson> {
  const res = await postJob(app, token, body);
  if (res.statusCode !== 201) throw new Error(`creating a job failed: ${res.statusCode} ${res.body}`);
  return res.json<{ job: JobJson }>().job;
}

/** Row counts of the tables a refused request must leave alone. */
export function counts(db: Database): Record<'jobs' | 'events' | 'outbox' | 'media' | 'users' | 'sessions' | 'tokens', number> {
  const one = (table: string) => db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;
  return {
    jobs: one('jobs'),
    events: one('job_events'),
    outbox: one('outbox'),
    media: one('media'),
    users: one('users'),
    sessions: one('sessions'),
    tokens: one('api_tokens'),
  };
}

export interface ErrorJson {
  error: { code: string; message: string; requestId: string; details?: Array<{ path: string; message: string }> };
}

/**
 * Asserts the one error shape `{ error: { code, message, requestId } }` (details optional) and
 * the status, and returns the body.
 */
export function expectError(res: LightMyRequestResponse, status: number, code?: string): ErrorJson {
  const problems: string[] = [];
  if (res.statusCode !== status) problems.push(`status ${res.statusCode}, expected ${status}`);
  let body: ErrorJson | undefined;
  try {
    body = res.json<ErrorJson>();
  } catch {
    problems.push('body is not JSON');
  }
  if (body) {
    const keys = Object.keys(body);
    if (keys.length !== 1 || keys[0] !== 'error') problems.push(`top-level keys ${keys.join(',')}`);
    const e = body.error ?? ({} as ErrorJson['error']);
    const extra = Object.keys(e).filter((k) => !['code', 'message', 'requestId', 'details'].includes(k));
    if (extra.length) problems.push(`unexpected keys ${extra.join(',')}`);
    if (typeof e.code !== 'string' || !/^[A-Z_]+$/.test(e.code)) problems.push('code is not a stable code');
    if (typeof e.message !== 'string' || e.message.length === 0) problems.push('message missing');
    if (typeof e.requestId !== 'string' || e.requestId.length === 0) problems.push('requestId missing');
    if (code !== undefined && e.code !== code) problems.push(`code ${e.code}, expected ${code}`);
  }
  if (!String(res.headers['content-type'] ?? '').startsWith('application/json')) problems.push(`content-type ${res.headers['content-type']}`);
  if (problems.length) throw new Error(`${problems.join('; ')}\n  body: ${res.body.slice(0, 500)}`);
  return body!;
}

/**
 * Polls `cond` until it holds. The default deadline is generous (two packages' suites share 2
 * cores): a wait returns as soon as the condition holds, so it costs nothing when all is well.
 */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 30_000, stepMs = 20): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/**
 * Subscribes a separate connection to `channel` and collects the parsed messages.
 * `ready` resolves once Redis confirmed the subscription.
 */
export function collectMessages(url: string, channel: string) {
  const sub = new Redis(url, { maxRetriesPerRequest: null });
  const messages: Array<Record<string, unknown>> = [];
  sub.on('message', (ch: string, text: string) => {
    if (ch === channel) messages.push(JSON.parse(text) as Record<string, unknown>);
  });
  const ready = sub.subscribe(channel);
  return {
    messages,
    ready,
    /** Waits for a message matching `pred`. */
    async next(pred: (m: Record<string, unknown>) => boolean, timeoutMs = 30_000) {
      await waitFor(() => messages.some(pred), timeoutMs);
      return messages.find(pred)!;
    },
    close: async () => {
      sub.disconnect();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Processes

/** A TCP port with nothing listening on it right now. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Resolves true once something accepts TCP connections on the port, false when refused. */
export function canConnect(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

/** A redis-server of the test's own: on `port` when given (a restart keeps the URL), else a free one. */
export type OwnRedis = RedisServer;
export const startRedis = (port?: number): Promise<OwnRedis> => startRedisServer(port === undefined ? {} : { port });

export { startHungRedis } from '@dubgate/test-support/net';
