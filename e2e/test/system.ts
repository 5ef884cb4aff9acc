/**
 * Starts the whole system as production does: a private redis-server (AOF on) and every built
 * process (`node apps/<app>/dist/server.js`) with its own ports, one SQLite file and MEDIA_ROOT
 * in a temp dir. Processes can be killed and restarted to inject faults.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { freePort, waitFor as pollUntil } from '@dubgate/test-support/net';
import { startRedisServer, type RedisServer } from '@dubgate/test-support/redis-server';

export const ROOT = new URL('../../', import.meta.url).pathname;

export { freePort };

/** The shared poller, with this harness's default timeout. */
export function waitFor<T>(what: string, fn: Parameters<typeof pollUntil<T>>[1], timeoutMs = 60_000, everyMs = 100): Promise<T> {
  return pollUntil(what, fn, timeoutMs, everyMs);
}

export type AppName = 'api' | 'scheduler' | 'relay' | 'realtime' | 'worker-download' | 'worker-dub' | 'worker-mux';
const APPS: AppName[] = ['api', 'scheduler', 'relay', 'realtime', 'worker-download', 'worker-dub', 'worker-mux'];
const PORT_VAR: Record<AppName, string> = {
  api: 'API_PORT',
  scheduler: 'SCHEDULER_PORT',
  relay: 'RELAY_PORT',
  realtime: 'REALTIME_PORT',
  'worker-download': 'WORKER_PORT',
  'worker-dub': 'WORKER_PORT',
  'worker-mux': 'WORKER_PORT',
};

export interface System {
  dir: string;
  mediaRoot: string;
  redisUrl: string;
  apiUrl: string;
  realtimeUrl: string;
  adminPassword: string;
  dbPath: string;
  redisPort: number;
  ports: Record<AppName, number>;
  /** Bearer token of the admin. */
  token(): Promise<string>;
  api<T = unknown>(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: T }>;
  socket(token: string): Promise<Socket>;
  kill(app: AppName, signal?: NodeJS.Signals): Promise<void>;
  /** Starts (or restarts) one process; `extraEnv` adds settings for this start only. */
  start(app: AppName, extraEnv?: Record<string, string>): Promise<void>;
  /** SIGKILLs the private redis-server (AOF keeps what was fsynced). */
  killRedis(): Promise<void>;
  /** Starts redis-server again on the same port and directory (replays the AOF). */
  startRedis(): Promise<void>;
  /** Whether the process of this app is running. */
  running(app: AppName): boolean;
  /** Resolves when the app's current process exits (at once if it is not running). */
  exited(app: AppName): Promise<void>;
  stop(): Promise<void>;
}

export async function startSystem(opts: { env?: Record<string, string>; apps?: AppName[] } = {}): Promise<System> {
  const dir = mkdtempSync(join(tmpdir(), 'dubgate-e2e-'));
  const mediaRoot = join(dir, 'media');
  mkdirSync(mediaRoot, { recursive: true });
  mkdirSync(join(dir, 'logs'));
  // AOF with fsync on every write: a SIGKILLed Redis comes back with everything acknowledged.
  const redisOptions = { dir, args: ['--appendonly', 'yes', '--appendfsync', 'always', '--maxmemory-policy', 'noeviction'] };
  let redis: RedisServer = await startRedisServer(redisOptions);
  const redisUrl = redis.url;
  // Again on the same port and directory (replays the AOF).
  async function startRedis() {
    redis = await startRedisServer({ ...redisOptions, port: redis.port });
  }
  const killRedis = () => redis.kill();

  const ports = {} as Record<AppName, number>;
  for (const app of APPS) ports[app] = await freePort();
  const adminPassword = 'e2e-admin-password-0123456789';
  const env = {
    ...process.env,
    REDIS_URL: redisUrl,
    DB_PATH: join(dir, 'gateway.db'),
    MEDIA_ROOT: mediaRoot,
    JWT_SECRET: 'e2e-secret-0123456789-0123456789-0123456789',
    ADMIN_PASSWORD: adminPassword,
    ALLOW_PRIVATE_URLS: 'true',
    LOG_LEVEL: 'info',
    NODE_ENV: 'test',
    SHUTDOWN_TIMEOUT_MS: '10000',
    STAGE_BACKOFF_MS: '200',
    RECONCILE_INTERVAL_MS: '2000',
    SCHEDULER_LOCK_TTL_MS: '2000',
    ...opts.env,
  };
  const children = new Map<AppName, ChildProcess>();

  async function start(app: AppName, extraEnv: Record<string, string> = {}) {
    const out = createWriteStream(join(dir, 'logs', `${app}.log`), { flags: 'a' });
    const child = spawn(process.execPath, [join(ROOT, 'apps', app, 'dist', 'server.js')], {
      env: { ...env, [PORT_VAR[app]]: String(ports[app]), ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    child.stdout!.pipe(out);
    child.stderr!.pipe(out);
    children.set(app, child);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${app} did not report ready; see ${dir}/logs/${app}.log`)), 60_000);
      child.once('message', (m) => {
        if (m === 'ready') {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${app} exited with ${code} before ready; see ${dir}/logs/${app}.log`));
      });
    });
  }

  async function kill(app: AppName, signal: NodeJS.Signals = 'SIGKILL') {
    const child = children.get(app);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
    children.delete(app);
  }

  for (const app of opts.apps ?? APPS) await start(app);

  const apiUrl = `http://127.0.0.1:${ports.api}`;
  let adminToken: string | null = null;
  const sockets: Socket[] = [];

  async function api<T>(method: string, path: string, body?: unknown, token?: string) {
    const res = await fetch(`${apiUrl}${path}`, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : null) as T };
  }

  return {
    dir,
    mediaRoot,
    redisUrl,
    apiUrl,
    realtimeUrl: `http://127.0.0.1:${ports.realtime}`,
    adminPassword,
    dbPath: env.DB_PATH,
    redisPort: redis.port,
    ports,
    api,
    killRedis,
    startRedis,
    running: (app) => children.has(app),
    exited(app) {
      const child = children.get(app);
      if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
      return new Promise<void>((resolve) => child.once('exit', () => resolve()));
    },
    async token() {
      if (!adminToken) {
        const r = await api<{ token: string }>('POST', '/api/auth/login', { username: 'admin', password: adminPassword });
        adminToken = r.body.token;
      }
      return adminToken;
    },
    async socket(token: string) {
      const s = io(`http://127.0.0.1:${ports.realtime}`, { transports: ['websocket'], auth: { token }, forceNew: true });
      sockets.push(s);
      await new Promise<void>((resolve, reject) => {
        s.once('connect', () => resolve());
        s.once('connect_error', reject);
      });
      return s;
    },
    kill,
    start,
    async stop() {
      for (const s of sockets) s.close();
      for (const app of [...children.keys()].reverse()) await kill(app, 'SIGTERM');
      await redis.stop();
      if (!process.env.E2E_KEEP) rmSync(dir, { recursive: true, force: true });
    },
  };
}
