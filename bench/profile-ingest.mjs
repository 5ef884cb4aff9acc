// CPU profile of the api under ingest load: starts the built api under `node --cpu-prof`, drives
// POST /api/jobs with autocannon (64 connections) and prints the top self-time functions.
//   node bench/profile-ingest.mjs [--seconds 15] [--log-level info] [--out bench/results/api-ingest.cpuprofile]
import { mkdtempSync, readdirSync, rmSync, copyFileSync, readFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startRedis } from './lib/harness.mjs';
import { startApi, runIngest, summarize } from './lib/ingest.mjs';
import { topFunctions } from './lib/top-functions.mjs';

const { values: args } = parseArgs({ options: { seconds: { type: 'string', default: '15' }, 'log-level': { type: 'string', default: 'info' }, out: { type: 'string' } } });
const root = new URL('..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'dubgate-prof-'));
const profDir = join(dir, 'prof');
const cleanups = [];
try {
  const redisUrl = await startRedis(dir, cleanups);
  const apiCleanups = [];
  const api = await startApi({ root, dir, redisUrl, cleanups: apiCleanups, logLevel: args['log-level'], nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] });
  await runIngest({ url: `${api.base}/api/jobs`, token: api.token, duration: 2 });
  const s = summarize(await runIngest({ url: `${api.base}/api/jobs`, token: api.token, duration: Number(args.seconds) }));
  console.log(`ingest under --cpu-prof: ${s.rps.toFixed(0)} req/s, p99 ${s.p99} ms, codes ${JSON.stringify(s.codes)}`);
  for (const c of apiCleanups.reverse()) await c(); // SIGTERM: the profile is written on exit
  const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  const out = args.out ?? join(root, 'bench/results/api-ingest.cpuprofile');
  mkdirSync(join(out, '..'), { recursive: true });
  copyFileSync(join(profDir, file), out);
  const { totalMs, top } = topFunctions(JSON.parse(readFileSync(out, 'utf8')), 15);
  console.log(`profile ${out}: ${totalMs.toFixed(0)} ms sampled (whole process life)`);
  for (const t of top) console.log(`${t.pct.toFixed(1).padStart(5)}%  ${t.selfMs.toFixed(0).padStart(7)} ms  ${t.fn}`);
} finally {
  for (const c of cleanups.reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
}
