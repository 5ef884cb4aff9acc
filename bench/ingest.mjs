// Ingest benchmark: POST /api/jobs on the real api process (auth, validation, SQLite with
// outbox, BullMQ enqueue, publish) beside a bare Fastify route with the same schema and no I/O,
// in the same run, alternating A B A B after a warm-up. Prints median throughput and p99.
//
//   node bench/ingest.mjs [--connections 64] [--duration 5] [--rounds 3]
// Uses REDIS_URL when set, else starts a private redis-server.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startRedis, median } from './lib/harness.mjs';
import { startApi, startBaseline, runIngest, summarize } from './lib/ingest.mjs';

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
  const api = await startApi({ root, dir, redisUrl, cleanups, logLevel: 'warn' });
  const baseline = await startBaseline({ root, cleanups });
  const targets = {
    ours: { url: `${api.base}/api/jobs`, token: api.token },
    baseline: { url: `http://127.0.0.1:${baseline.port}/api/jobs` },
  };
  const run = async (name, seconds) => summarize(await runIngest({ ...targets[name], connections, duration: seconds }));

  console.error(`warm-up ${Math.max(2, duration / 2)} s each`);
  await run('ours', Math.max(2, duration / 2));
  await run('baseline', Math.max(2, duration / 2));
  const results = { ours: [], baseline: [] };
  for (let i = 0; i < rounds; i++) {
    for (const name of ['ours', 'baseline']) {
      const r = await run(name, duration);
      const non2xx = r.non2xx + r.errors + r.timeouts;
      results[name].push({ rps: r.rps, p99: r.p99, p50: r.p50, non2xx });
      console.error(`round ${i + 1} ${name.padEnd(8)} ${r.rps.toFixed(0)} req/s  p50 ${r.p50} ms  p99 ${r.p99} ms  non-2xx/errors ${non2xx}`);
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
