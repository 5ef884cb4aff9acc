// PM2 process file for production: `npm run prod:start` (scripts/prod.sh runs the workspace's
// own pm2 with PM2_HOME=./data/pm2). The README's "Running it in production" section explains it.
//
// ESM like the rest of the repository; PM2 7 loads it with require(), which Node.js 20.19+ and
// 22.12+ do for ES modules (the named `apps` export is what PM2 reads).
//
// Every process is `node apps/<name>/dist/server.js` in fork mode, exactly as `npm start`, the
// tests and the container images run it. Each one sends process.send('ready') once it serves,
// so PM2 (wait_ready) only counts it up, and only moves on to the next instance during a
// reload, after that.
//
// Settings come from the environment, then ./.env (the environment wins), then the defaults
// below. The processes themselves also read ./.env (their working directory is this folder).
//
//   shared      REDIS_URL, DB_PATH, MEDIA_ROOT (all three required), JWT_SECRET, LOG_LEVEL,
//               SHUTDOWN_TIMEOUT_MS (default 30000; PM2 waits 5 s longer before SIGKILL), HOST
//   port plan   API_PORT_BASE 3100 (instance i listens on base + i), API_INSTANCES 2,
//               REALTIME_PORT_BASE 3200, REALTIME_INSTANCES 2,
//               SCHEDULER_PORT_BASE 9102, SCHEDULER_INSTANCES 2 (one acts, one stands by),
//               RELAY_PORT 9104, WORKER_DOWNLOAD_PORT 9111, WORKER_DUB_PORT 9112, WORKER_MUX_PORT 9113
//   api         TRUST_PROXY (default 127.0.0.1: nginx on this host), plus everything the api reads
//   logs        LOG_DIR (default ./data/logs): <name>-out.log and <name>-err.log, JSON lines
//
// deploy/nginx.conf and deploy/prometheus.yml are written for the default port plan; after
// changing it, render nginx again (node deploy/render-nginx.mjs) and edit the Prometheus targets.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseEnv } from 'node:util';

const ROOT = dirname(fileURLToPath(import.meta.url));

/** The environment over ./.env, blank values counting as unset (as the processes read them). */
function loadSettings() {
  const file = join(ROOT, '.env');
  const fromFile = existsSync(file) ? parseEnv(readFileSync(file, 'utf8')) : {};
  const merged = {};
  for (const source of [fromFile, process.env]) {
    for (const [k, v] of Object.entries(source)) if (v !== undefined && String(v).trim() !== '') merged[k] = String(v);
  }
  return merged;
}

const settings = loadSettings();
const problems = [];

function integer(name, fallback, min, max) {
  const raw = settings[name];
  if (raw === undefined) return fallback;
  const value = /^\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    problems.push(`${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(raw)})`);
    return fallback;
  }
  return value;
}

function requiredPath(name) {
  const raw = settings[name];
  if (raw === undefined) {
    problems.push(`${name} is required in production (set it in the environment or in .env)`);
    return undefined;
  }
  return isAbsolute(raw) || raw === ':memory:' ? raw : resolve(ROOT, raw);
}

const REDIS_URL = settings.REDIS_URL;
if (REDIS_URL === undefined) problems.push('REDIS_URL is required in production (e.g. redis://127.0.0.1:6379)');
const DB_PATH = requiredPath('DB_PATH');
const MEDIA_ROOT = requiredPath('MEDIA_ROOT');
const SHUTDOWN_TIMEOUT_MS = integer('SHUTDOWN_TIMEOUT_MS', 30_000, 1, 3_600_000);
const LOG_DIR = settings.LOG_DIR ? resolve(ROOT, settings.LOG_DIR) : join(ROOT, 'data', 'logs');

const port = (name, fallback) => integer(name, fallback, 1, 65535);
const count = (name, fallback) => integer(name, fallback, 1, 64);

export const ports = {
  api: port('API_PORT_BASE', 3100),
  realtime: port('REALTIME_PORT_BASE', 3200),
  scheduler: port('SCHEDULER_PORT_BASE', 9102),
  relay: port('RELAY_PORT', 9104),
  'worker-download': port('WORKER_DOWNLOAD_PORT', 9111),
  'worker-dub': port('WORKER_DUB_PORT', 9112),
  'worker-mux': port('WORKER_MUX_PORT', 9113),
};
export const instances = {
  api: count('API_INSTANCES', 2),
  realtime: count('REALTIME_INSTANCES', 2),
  scheduler: count('SCHEDULER_INSTANCES', 2),
};

if (problems.length > 0) {
  throw new Error(`ecosystem.config.js: invalid production settings:\n  - ${problems.join('\n  - ')}`);
}

/** What every process gets; the rest of each one's settings it reads from the environment or ./.env. */
const shared = {
  NODE_ENV: 'production',
  REDIS_URL,
  DB_PATH,
  MEDIA_ROOT,
  SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
  ...(settings.HOST ? { HOST: settings.HOST } : {}),
  ...(settings.LOG_LEVEL ? { LOG_LEVEL: settings.LOG_LEVEL } : {}),
  ...(settings.JWT_SECRET ? { JWT_SECRET: settings.JWT_SECRET } : {}),
  ...(settings.REALTIME_ADAPTER_KEY ? { REALTIME_ADAPTER_KEY: settings.REALTIME_ADAPTER_KEY } : {}),
};

/** One PM2 app: fork mode, ready signal, graceful stop, restart with backoff, JSON log files. */
function app(name, { env, instances: n = 1, incrementVar } = {}) {
  return {
    name,
    script: join(ROOT, 'apps', name, 'dist', 'server.js'),
    cwd: ROOT,
    exec_mode: 'fork',
    instances: n,
    ...(incrementVar ? { increment_var: incrementVar } : {}),
    env: { ...shared, ...env },
    // Up once it sends 'ready' (it listens and its dependencies are connected); a reload moves
    // to the next instance only then. Past listen_timeout PM2 stops waiting.
    wait_ready: true,
    listen_timeout: 30_000,
    // SIGTERM, then SIGKILL only after the process had its whole SHUTDOWN_TIMEOUT_MS to drain.
    kill_signal: 'SIGTERM',
    kill_timeout: SHUTDOWN_TIMEOUT_MS + 5_000,
    // Signal the node process only: workers stop their own child processes (ffmpeg, espeak-ng)
    // in their shutdown instead of having them killed under a stage that is handing work back.
    treekill: false,
    // Crashes: restart after 100 ms, doubling up to 15 s while it keeps crashing; ten restarts
    // in a row that each lived less than min_uptime mark the app errored.
    autorestart: true,
    exp_backoff_restart_delay: 100,
    max_restarts: 10,
    min_uptime: 10_000,
    // Logs are pino JSON lines with their own ISO time: no PM2 prefix, one file pair per app.
    out_file: join(LOG_DIR, `${name}-out.log`),
    error_file: join(LOG_DIR, `${name}-err.log`),
    merge_logs: true,
    time: false,
  };
}

export const apps = [
  app('api', {
    instances: instances.api,
    incrementVar: 'API_PORT',
    // nginx on this host is the proxy whose X-Forwarded-For the api believes.
    env: { API_PORT: String(ports.api), TRUST_PROXY: settings.TRUST_PROXY ?? '127.0.0.1' },
  }),
  app('realtime', {
    instances: instances.realtime,
    incrementVar: 'REALTIME_PORT',
    env: { REALTIME_PORT: String(ports.realtime) },
  }),
  app('scheduler', {
    instances: instances.scheduler,
    incrementVar: 'SCHEDULER_PORT',
    env: { SCHEDULER_PORT: String(ports.scheduler) },
  }),
  app('relay', { env: { RELAY_PORT: String(ports.relay) } }),
  app('worker-download', { env: { WORKER_PORT: String(ports['worker-download']) } }),
  app('worker-dub', { env: { WORKER_PORT: String(ports['worker-dub']) } }),
  app('worker-mux', { env: { WORKER_PORT: String(ports['worker-mux']) } }),
];

export default { apps };
