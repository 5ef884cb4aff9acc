// Ingest workload, shared by bench/run.mjs, bench/ingest.mjs and bench/profile-ingest.mjs: start the built api
// (auth, validation, SQLite + outbox, BullMQ enqueue), log in, and drive POST /api/jobs with
// autocannon; the baseline is bench/lib/baseline-server.mjs (same schema, no I/O).
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { freePort, waitForHttp, startProcess } from './harness.mjs';

const require = createRequire(import.meta.url);
export const autocannon = require('autocannon');
export const PASSWORD = 'bench-password-0123456789';
export const JOB_BODY = JSON.stringify({ url: 'https://videos.example.com/watch?v=bench', requestedDubbing: true, targetLang: 'es', formatPreset: '720p' });

/** Starts the built api; returns { port, token, child, base }. nodeArgs e.g. ['--cpu-prof']. */
export async function startApi({ root, dir, name = 'api', redisUrl, cleanups, logLevel = 'info', env = {}, nodeArgs = [] }) {
  const port = await freePort();
  const { child } = await startProcess(join(root, 'apps/api/dist/server.js'), {
    nodeArgs,
    cwd: dir,
    cleanups,
    env: {
      ...process.env,
      REDIS_URL: redisUrl,
      API_PORT: String(port),
      DB_PATH: join(dir, `${name}.db`),
      MEDIA_ROOT: join(dir, 'media'),
      ADMIN_PASSWORD: PASSWORD,
      LOG_LEVEL: logLevel,
      LOGIN_MAX_PER_CLIENT: '1000',
      JWT_SECRET: 'bench-jwt-secret-0123456789abcdef0123456789abcdef',
      MIN_FREE_DISK_BYTES: '1MB',
      ...env,
    },
  });
  const base = `http://127.0.0.1:${port}`;
  await waitForHttp(`${base}/healthz`);
  const login = await fetch(`${base}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: PASSWORD }),
  }).then((r) => r.json());
  return { port, base, token: login.token, child };
}

export async function startBaseline({ root, cleanups }) {
  return startProcess(join(root, 'bench/lib/baseline-server.mjs'), { env: process.env, cleanups, portFromStdout: true });
}

/** One autocannon run; varies the URL per request so every job is distinct. */
export function runIngest({ url, token, connections = 64, duration, overallRate, timeout = 10, onCreated }) {
  let i = 0;
  const tag = Math.random().toString(36).slice(2, 8);
  return new Promise((resolve, reject) =>
    autocannon(
      {
        url,
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        connections,
        duration,
        timeout,
        ...(overallRate ? { overallRate } : {}),
        requests: [
          {
            setupRequest: (req) => ({
              ...req,
              body: JSON.stringify({ url: `https://videos.example.com/watch?v=${tag}${i++}`, requestedDubbing: true, targetLang: 'es', formatPreset: '720p' }),
            }),
            ...(onCreated
              ? { onResponse: (status, body) => { if (status === 201) { try { onCreated(JSON.parse(body).job.id); } catch {} } } }
              : {}),
          },
        ],
      },
      (err, r) => (err ? reject(err) : resolve(r)),
    ),
  );
}

export function summarize(r) {
  const codes = Object.fromEntries(Object.entries(r.statusCodeStats ?? {}).map(([k, v]) => [k, v.count]));
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, ok: codes['201'] ?? r['2xx'], codes, errors: r.errors, timeouts: r.timeouts, non2xx: r.non2xx };
}
