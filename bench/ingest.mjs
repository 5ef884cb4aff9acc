// Ingest benchmark: POST /api/jobs on the real api process (auth, validation, SQLite with
// outbox, BullMQ enqueue, publish) beside a bare Fastify route with the same schema and no I/O,
// in the same run, alternating A B A B after a warm-up. Prints median throughput and p99.
//
//   node bench/ingest.mjs [--connections 64] [--duration 5] [--rounds 3]
// Uses REDIS_URL when set, else starts a private redis-server.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { startRedis, startProcess, freePort, waitForHttp, median } from './lib/harness.mjs';

const require = createRequire(import.meta.url);
const autocannon = require('autocannon');
const { values: args } = parseArgs({
  options: {
    connections: { type: 'string', default: '64' },
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
  },
});
const connections = Number(args.connections);
const duration = Number(args.duration);
const rounds = Number(args.rounds);
const root = new URL('..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'dubgate-bench-'));
const cleanups = [];
const cleanup = async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
};
process.on('SIGINT', () => cleanup().then(() => process.exit(130)));

try {
  const redisUrl = process.env.REDIS_URL ?? (await startRedis(dir, cleanups));
  const apiPort = await freePort();
  const password = 'bench-password-0123456789';
  await startProcess(join(root, 'apps/api/dist/server.js'), {
    env: { ...process.env, REDIS_URL: redisUrl, API_PORT: String(apiPort), DB_PATH: join(dir, 'gw.db'), MEDIA_ROOT: join(dir, 'media'), ADMIN_PASSWORD: password, LOG_LEVEL: 'warn', LOGIN_MAX_PER_CLIENT: '1000' },
    cleanups,
  });
  await waitForHttp(`http://127.0.0.1:${apiPort}/healthz`);
  const login = await fetch(`http://127.0.0.1:${apiPort}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password }),
  }).then((r) => r.json());

  const baseline = await startProcess(join(root, 'bench/lib/baseline-server.mjs'), { env: process.env, cleanups, portFromStdout: true });

  const body = JSON.stringify({ url: 'https://videos.example.com/watch?v=bench', requestedDubbing: true, targetLang: 'es', formatPreset: '720p' });
  const targets = {
    ours: { url: `http://127.0.0.1:${apiPort}/api/jobs`, headers: { 'content-type': 'application/json', authorization: `Bearer ${login.token}` } },
    baseline: { url: `http://127.0.0.1:${baseline.port}/api/jobs`, headers: { 'content-type': 'application/json' } },
  };
  const run = (name, seconds) =>
    new Promise((resolve, reject) =>
      autocannon({ ...targets[name], method: 'POST', body, connections, duration: seconds }, (err, r) => (err ? reject(err) : resolve(r))),
    );

  console.error(`warm-up ${Math.max(2, duration / 2)} s each`);
  await run('ours', Math.max(2, duration / 2));
  await run('baseline', Math.max(2, duration / 2));
  const results = { ours: [], baseline: [] };
  for (let i = 0; i < rounds; i++) {
    for (const name of ['ours', 'baseline']) {
      const r = await run(name, duration);
      const non2xx = r.non2xx + r.errors + r.timeouts;
      results[name].push({ rps: r.requests.average, p99: r.latency.p99, p50: r.latency.p50, non2xx });
      console.error(`round ${i + 1} ${name.padEnd(8)} ${r.requests.average.toFixed(0)} req/s  p50 ${r.latency.p50} ms  p99 ${r.latency.p99} ms  non-2xx/errors ${non2xx}`);
    }
  }
  const summary = Object.fromEntries(
    Object.entries(results).map(([k, rs]) => [k, { rps: median(rs.map((r) => r.rps)), p99: median(rs.map((r) => r.p99)), non2xx: rs.reduce((a, r) => a + r.non2xx, 0) }]),
  );
  console.log(`\ningest, ${connections} connections, ${rounds} rounds of ${duration} s (medians)`);
  console.log(`  POST /api/jobs (auth + SQLite + outbox + enqueue)  ${summary.ours.rps.toFixed(0)} req/s  p99 ${summary.ours.p99} ms  failed ${summary.ours.non2xx}`);
  console.log(`  validation-only Fastify route (same schema)        ${summary.baseline.rps.toFixed(0)} req/s  p99 ${summary.baseline.p99} ms  failed ${summary.baseline.non2xx}`);
  console.log(`  ratio: throughput ${(summary.ours.rps / summary.baseline.rps).toFixed(2)}x, p99 ${(summary.ours.p99 / Math.max(summary.baseline.p99, 1)).toFixed(2)}x`);
} finally {
  await cleanup();
}
