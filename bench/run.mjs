// One command for every benchmark of issue 8, each workload beside its baseline in the same run:
//   node bench/run.mjs [--quick] [--only ingest,drain,fanout,connections,burst,processes,listjobs]
// Alternates ours/baseline (A B A B) after a warm-up, ≥5 repeats (3 shorter ones with --quick),
// reports median and range, prints a table of absolute figures and ratios against the goals and
// writes bench/results/latest.json. Needs the built apps (turbo run build) and redis-server.
import { fork, spawn, execFileSync } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { startRedis, startProcess, freePort, waitForHttp, median, publishProgressAtRate, cpuMsOf } from './lib/harness.mjs';
import { startApi, startBaseline, runIngest, summarize } from './lib/ingest.mjs';

const { values: args } = parseArgs({ options: { quick: { type: 'boolean', default: false }, only: { type: 'string' }, out: { type: 'string' } } });
const QUICK = args.quick;
// BENCH_FAN_MORE_RATES=10000,15000: fan-out also at these rates, same clients (informative figures).
const moreRates = (dflt) => (process.env.BENCH_FAN_MORE_RATES ? process.env.BENCH_FAN_MORE_RATES.split(',').map(Number).filter((n) => n > 0) : dflt);
const ONLY = args.only ? new Set(args.only.split(',')) : null;
const want = (w) => !ONLY || ONLY.has(w);
const root = new URL('..', import.meta.url).pathname;
const P = QUICK
  ? { repeats: 3, ingestSeconds: 2, warmSeconds: 1, drainJobs: Number(process.env.BENCH_DRAIN_JOBS ?? 600), fanClients: Number(process.env.BENCH_FAN_CLIENTS ?? 500), fanRate: Number(process.env.BENCH_FAN_RATE ?? 5000), fanMoreRates: moreRates([]), fanSeconds: 3, connections: 2000, burstSeconds: 10, drainTimeout: 60 }
  : { repeats: 5, ingestSeconds: 5, warmSeconds: 3, drainJobs: Number(process.env.BENCH_DRAIN_JOBS ?? 30000), fanClients: 1000, fanRate: 25000, fanMoreRates: moreRates([20000]), fanSeconds: 10, connections: 10000, burstSeconds: 60, drainTimeout: 600 };

const requireFrom = (pkg) => createRequire(join(root, pkg, 'package.json'));
const { Worker, Queue } = await import(pathToFileURL(requireFrom('apps/scheduler').resolve('bullmq')).href);
const version = (fromPkg, name) => {
  try { return JSON.parse(readFileSync(requireFrom(fromPkg).resolve(`${name}/package.json`), 'utf8')).version; } catch { return null; }
};

const log = (...a) => console.error(`[${((performance.now()) / 1000).toFixed(1).padStart(6)} s]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const stat = (values) => {
  const v = values.filter((x) => Number.isFinite(x));
  return { median: v.length ? median(v) : null, min: v.length ? Math.min(...v) : null, max: v.length ? Math.max(...v) : null, runs: values };
};
const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
const figures = [];
/** ratio = ours/baseline; goal: { op: '>=' | '<=', value } on the ratio (or on ours when absolute). */
function figure(workload, name, unit, ours, baseline, goal, note) {
  const o = typeof ours === 'object' && ours !== null ? ours : { median: ours };
  const b = baseline === null || baseline === undefined ? null : typeof baseline === 'object' ? baseline : { median: baseline };
  const ratio = b && o.median !== null && b.median ? o.median / b.median : null;
  let met = null;
  if (goal) {
    const x = goal.on === 'ours' ? o.median : ratio;
    met = x === null || x === undefined ? false : goal.op === '>=' ? x >= goal.value : goal.op === '<=' ? x <= goal.value : x === goal.value;
  }
  const f = { workload, name, unit, ours: o, baseline: b, ratio, goal: goal ? `${goal.on === 'ours' ? 'value' : 'ratio'} ${goal.op} ${goal.value}` : null, met, note };
  figures.push(f);
  return f;
}
const notes = [];

function parseMetric(text, name) {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

async function withEnv(fn) {
  const dir = mkdtempSync(join(tmpdir(), 'dubgate-run-'));
  const cleanups = [];
  try {
    const redisUrl = await startRedis(dir, cleanups);
    return await fn({ dir, cleanups, redisUrl });
  } finally {
    for (const c of cleanups.reverse()) await Promise.resolve().then(c).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}
const redisConn = (url) => { const u = new URL(url); return { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null }; };

// ---------------------------------------------------------------- ingest + observability cost
let sustainableRps = null;
async function ingest() {
  log('ingest: api (LOG_LEVEL=info, metrics on), api (LOG_LEVEL=silent, metrics off), bare Fastify route');
  await withEnv(async ({ dir, cleanups, redisUrl }) => {
    const info = await startApi({ root, dir, name: 'info', redisUrl, cleanups, logLevel: 'info' });
    // Off: no logs, and prom-client's recording calls made no-ops by a bench-only preload.
    const silent = await startApi({ root, dir, name: 'silent', redisUrl, cleanups, logLevel: 'silent', nodeArgs: ['-r', join(root, 'bench/lib/metrics-off.cjs')] });
    const base = await startBaseline({ root, cleanups });
    const targets = {
      ours: { url: `${info.base}/api/jobs`, token: info.token },
      silent: { url: `${silent.base}/api/jobs`, token: silent.token },
      baseline: { url: `http://127.0.0.1:${base.port}/api/jobs` },
    };
    for (const k of Object.keys(targets)) await runIngest({ ...targets[k], duration: P.warmSeconds });
    const res = { ours: [], silent: [], baseline: [] };
    for (let i = 0; i < P.repeats; i++) {
      for (const k of ['ours', 'baseline', 'silent']) {
        const s = summarize(await runIngest({ ...targets[k], duration: P.ingestSeconds }));
        res[k].push(s);
        log(`  ingest round ${i + 1} ${k.padEnd(8)} ${s.rps.toFixed(0)} req/s p99 ${s.p99} ms codes ${JSON.stringify(s.codes)} timeouts ${s.timeouts}`);
      }
    }
    const rps = (k) => stat(res[k].map((r) => r.rps));
    const p99 = (k) => stat(res[k].map((r) => r.p99));
    figure('ingest', 'throughput', 'req/s', rps('ours'), rps('baseline'), { op: '>=', value: 0.5 }, 'POST /api/jobs (auth+validation+SQLite+outbox+enqueue, LOG_LEVEL=info) vs same-schema Fastify route, 64 connections');
    figure('ingest', 'latency p99', 'ms', p99('ours'), p99('baseline'), { op: '<=', value: 3 });
    const failedOf = (k) => res[k].reduce((a, r) => a + r.errors + r.timeouts + (r.non2xx ?? 0), 0);
    figure('ingest', 'failed requests (ours)', 'count', failedOf('ours'), null, { on: 'ours', op: '<=', value: 0 });
    // A side that fails fast would look fast: both sides of the observability figure must succeed.
    figure('observability', 'failed requests (observability off)', 'count', failedOf('silent'), null, { on: 'ours', op: '<=', value: 0 });
    sustainableRps = rps('ours').median;
    figure('observability', 'throughput, logs+metrics on vs off', 'req/s', rps('ours'), rps('silent'), { op: '>=', value: 0.9 },
      'on = LOG_LEVEL=info with every metric recorded; off = LOG_LEVEL=silent with prom-client\'s recording calls made no-ops and no default process metrics (bench/lib/metrics-off.cjs, preloaded; the api itself has no switch to turn metrics off)');
    figure('observability', 'latency p99, on vs off', 'ms', p99('ours'), p99('silent'), null);
  });
}

// ---------------------------------------------------------------- drain + burst (api + scheduler + no-op stage workers)
const processors = {
  download: (d) => ({ mediaPath: `${d.jobId}/source.mp4`, sizeBytes: 1024 }),
  dub: (d) => ({ audioPath: `${d.jobId}/dub.wav`, language: d.targetLang, cues: 3 }),
  mux: (d) => ({ outputPath: `${d.jobId}/output.${d.outputContainer}`, container: d.outputContainer, sizeBytes: 2048 }),
};
async function postJobs(api, n, inFlight = 64) {
  let next = 0, ok = 0, failed = 0;
  const tag = randomUUID().slice(0, 8);
  async function go() {
    while (next < n) {
      const i = next++;
      const r = await fetch(`${api.base}/api/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${api.token}` },
        body: JSON.stringify({ url: `https://videos.example.com/watch?v=d${tag}${i}`, requestedDubbing: true, targetLang: 'es' }),
      });
      await r.arrayBuffer();
      r.status === 201 ? ok++ : failed++;
    }
  }
  await Promise.all(Array.from({ length: inFlight }, go));
  return { ok, failed };
}
const perStageRate = (times) => {
  if (times.length < 2) return null;
  const s = [...times].sort((a, b) => a - b);
  return (s.length - 1) / ((s.at(-1) - s[0]) / 1000);
};
async function plainDrain(redisUrl, n, name) {
  const connection = redisConn(redisUrl);
  const q = new Queue(name, { connection, prefix: 'b' });
  const t0 = performance.now();
  for (let i = 0; i < n; i += 1000) {
    await q.addBulk(Array.from({ length: Math.min(1000, n - i) }, (_, k) => ({ name: 'noop', data: { i: i + k }, opts: { removeOnComplete: true } })));
  }
  const addMs = performance.now() - t0;
  const times = [];
  let done;
  const all = new Promise((r) => (done = r));
  const w = new Worker(name, async () => ({}), { connection, prefix: 'b', concurrency: 100, autorun: false });
  w.on('completed', () => { times.push(performance.now()); if (times.length >= n) done(); });
  w.on('error', () => {});
  const t1 = performance.now();
  w.run();
  await Promise.race([all, sleep(P.drainTimeout * 1000)]);
  const drainMs = performance.now() - t1;
  await w.close();
  await q.obliterate({ force: true }).catch(() => {});
  await q.close();
  return { addMs, drainMs, drained: times.length, rate: perStageRate(times), overall: (times.length / drainMs) * 1000 };
}
async function drainAndBurst() {
  await withEnv(async ({ dir, cleanups, redisUrl }) => {
    const api = await startApi({ root, dir, name: 'gw', redisUrl, cleanups, logLevel: 'info' });
    const schedPort = await freePort();
    // BENCH_PROFILE_DIR=/path: the scheduler runs under --cpu-prof (profile written at its exit).
    const profileDir = process.env.BENCH_PROFILE_DIR;
    await forkServer(join(root, 'apps/scheduler/dist/server.js'), {
      env: { ...process.env, REDIS_URL: redisUrl, DB_PATH: join(dir, 'gw.db'), MEDIA_ROOT: join(dir, 'media'), LOG_LEVEL: 'info', MIN_FREE_DISK_BYTES: '1MB', SCHEDULER_PORT: String(schedPort), MAX_DOWNLOAD_QUEUE_DEPTH: '1000000' },
      execArgv: profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
      cleanups,
    });
    await waitForHttp(`http://127.0.0.1:${schedPort}/healthz`);
    const connection = redisConn(redisUrl);
    const times = { download: [], dub: [], mux: [] };
    let onMux = () => {};
    const workers = ['download', 'dub', 'mux'].map((stage) => {
      const w = new Worker(stage, async (job) => processors[stage](job.data), { connection, prefix: 'q', concurrency: 100, autorun: false });
      w.on('completed', () => { times[stage].push(performance.now()); if (stage === 'mux') onMux(); });
      w.on('error', () => {});
      return w;
    });
    cleanups.push(() => Promise.all(workers.map((w) => w.close())));
    let started = false;
    const startWorkers = () => { if (!started) { started = true; workers.forEach((w) => w.run()); } else workers.forEach((w) => w.resume()); };
    const pauseWorkers = () => Promise.all(workers.map((w) => w.pause()));
    const waitMux = (count, timeoutMs) => new Promise((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      onMux = () => { if (times.mux.length >= count) { clearTimeout(t); resolve(); } };
      onMux();
    });
    const total = async (q = '') => (await fetch(`${api.base}/api/jobs?limit=1${q}`, { headers: { authorization: `Bearer ${api.token}` } }).then((r) => r.json())).total;

    if (want('drain')) {
      const n = P.drainJobs;
      log(`drain: ${n} jobs through download → dub → mux (api + scheduler, no-op workers concurrency 100) vs plain BullMQ worker`);
      // warm-up: a small batch each
      const w0 = await postJobs(api, 100);
      startWorkers(); await waitMux(w0.ok, 30_000); await pauseWorkers();
      await plainDrain(redisUrl, 1000, 'warm');
      const res = { download: [], dub: [], mux: [], overall: [], baseline: [], baseOverall: [] };
      for (let i = 0; i < P.repeats; i++) {
        for (const k of ['download', 'dub', 'mux']) times[k] = [];
        const t0 = performance.now();
        const posted = await postJobs(api, n);
        const postMs = performance.now() - t0;
        await sleep(300);
        const t1 = performance.now();
        startWorkers();
        await waitMux(posted.ok, P.drainTimeout * 1000);
        const ms = performance.now() - t1;
        await pauseWorkers();
        for (const k of ['download', 'dub', 'mux']) res[k].push(perStageRate(times[k]));
        res.overall.push((times.mux.length / ms) * 1000);
        log(`  drain round ${i + 1} ours: posted ${posted.ok} in ${postMs.toFixed(0)} ms; COMPLETE ${times.mux.length} in ${ms.toFixed(0)} ms; per stage jobs/s download ${res.download.at(-1)?.toFixed(0)} dub ${res.dub.at(-1)?.toFixed(0)} mux ${res.mux.at(-1)?.toFixed(0)}`);
        const b = await plainDrain(redisUrl, n, `plain${i}`);
        res.baseline.push(b.rate); res.baseOverall.push(b.overall);
        log(`  drain round ${i + 1} baseline: addBulk ${b.addMs.toFixed(0)} ms, drained ${b.drained} in ${b.drainMs.toFixed(0)} ms, ${b.rate?.toFixed(0)} jobs/s`);
      }
      for (const k of ['download', 'dub', 'mux']) figure('drain', `jobs/s, stage ${k}`, 'jobs/s', stat(res[k]), stat(res.baseline), { op: '>=', value: 0.6 }, k === 'download' ? `${n} jobs, all with dubbing; per-stage rate = completions / (last − first completion of that stage); baseline = one plain BullMQ worker, concurrency 100, no-op jobs` : undefined);
      figure('drain', 'end-to-end COMPLETE jobs/s (3 stages)', 'jobs/s', stat(res.overall), stat(res.baseOverall), null, 'all three stages in sequence vs one no-op stage: informative only');
    }

    if (want('burst')) {
      const rate = Math.max(50, Math.round(2 * (sustainableRps ?? 500)));
      log(`burst: ${P.burstSeconds} s at ${rate} req/s (2× sustainable ${sustainableRps?.toFixed(0) ?? 'unknown, assumed 500'}), workers running, then drain`);
      const Database = (await import(pathToFileURL(requireFrom('packages/db').resolve('better-sqlite3')).href)).default;
      const db = new Database(join(dir, 'gw.db'), { readonly: true, fileMustExist: true });
      const countRows = () => db.prepare('SELECT count(*) AS n FROM jobs').get().n;
      const before = countRows();
      const beforeSeq = db.prepare('SELECT coalesce(max(seq), 0) AS s FROM jobs').get().s;
      for (const k of ['download', 'dub', 'mux']) times[k] = [];
      startWorkers();
      const ids = [];
      const r = await runIngest({ url: `${api.base}/api/jobs`, token: api.token, connections: 128, duration: P.burstSeconds, overallRate: rate, timeout: 10, onCreated: (id) => ids.push(id) });
      const s = summarize(r);
      const tEnd = performance.now();
      const accepted = s.codes['201'] ?? 0;
      log(`  burst sent ${r.requests.sent} codes ${JSON.stringify(s.codes)} errors ${s.errors} timeouts ${s.timeouts} p99 ${s.p99} ms`);
      const stateOf = db.prepare('SELECT state FROM jobs WHERE id = ?');
      const idSet = new Set(ids);
      let complete = 0;
      const deadline = Date.now() + P.drainTimeout * 1000;
      for (;;) {
        complete = db.prepare(`SELECT count(*) AS n FROM jobs WHERE state = 'COMPLETE' AND seq > ?`).get(beforeSeq).n;
        const rowsNow = countRows() - before;
        if (complete >= rowsNow || Date.now() > deadline) break;
        await sleep(200);
      }
      const drainMs = performance.now() - tEnd;
      const rows = countRows() - before;
      let lost = 0, notComplete = 0;
      for (const id of idSet) { const row = stateOf.get(id); if (!row) lost++; else if (row.state !== 'COMPLETE') notComplete++; }
      const dupUrls = db.prepare('SELECT count(*) - count(DISTINCT url) AS n FROM jobs').get().n;
      const dupIds = ids.length - idSet.size;
      const qDownload = new Queue('download', { connection: redisConn(redisUrl), prefix: 'q' });
      const counts = await qDownload.getJobCounts();
      await qDownload.close();
      db.close();
      await pauseWorkers();
      const b = await plainDrain(redisUrl, accepted, 'burstplain');
      log(`  burst: ${accepted} 201s, rows +${rows} (${rows - accepted} accepted server-side while their request was cut at the end), COMPLETE ${complete}, lost ${lost}, not complete ${notComplete}, duplicate urls ${dupUrls}, download queue ${JSON.stringify(counts)}; drain after burst ${drainMs.toFixed(0)} ms; baseline addBulk ${b.addMs.toFixed(0)} ms + drain ${b.drainMs.toFixed(0)} ms`);
      const refused = (s.codes['429'] ?? 0) + (s.codes['503'] ?? 0);
      figure('burst', 'offered rate', 'req/s', rate, null, null, `${P.burstSeconds} s at 2× the ingest median, 128 connections, autocannon overallRate, 10 s timeout; one run (not repeated)`);
      figure('burst', 'achieved rate (201/s)', 'req/s', accepted / P.burstSeconds, null, null);
      figure('burst', 'accepted (201)', 'count', accepted, null, null);
      figure('burst', 'lost (201 without a row)', 'count', lost, null, { on: 'ours', op: '<=', value: 0 });
      figure('burst', '201 not COMPLETE after drain', 'count', notComplete, null, { on: 'ours', op: '<=', value: 0 });
      figure('burst', 'duplicated (same URL twice / same id twice)', 'count', dupUrls + dupIds, null, { on: 'ours', op: '<=', value: 0 }, 'every request carries a unique URL; BullMQ ids are deterministic per job');
      figure('burst', 'refused 429/503', 'count', refused, null, null);
      figure('burst', 'time-outs + socket errors', 'count', s.timeouts + s.errors, null, { on: 'ours', op: '<=', value: 0 });
      figure('burst', 'drain time after the burst', 'ms', drainMs, b.drainMs, { op: '<=', value: 1.5 }, 'ours: burst end → every accepted job COMPLETE (3 stages, workers ran during the burst too); baseline: plain worker concurrency 100 draining the same count after addBulk (one stage)');
    }
  });
}

// ---------------------------------------------------------------- fan-out and connections
const secret = randomUUID() + randomUUID();
function sign(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ ...claims, iss: 'dubgate', aud: 'dubgate', iat: now, exp: now + 3600 })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}
/** fork with IPC (and optional node flags); resolves the port printed on stdout when asked. */
async function forkServer(script, { env, cleanups, execArgv = [], portFromStdout = false }) {
  const child = fork(script, [], { env, execArgv, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  cleanups.push(() => new Promise((resolve) => { if (child.exitCode !== null) return resolve(); child.once('exit', resolve); child.kill('SIGTERM'); setTimeout(() => child.kill('SIGKILL'), 10_000).unref(); }));
  if (!portFromStdout) { child.stdout.resume(); return { child }; }
  const port = await new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => { buf += d; const m = /^(\d+)\n/.exec(buf); if (m) resolve(Number(m[1])); });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
  child.stdout.resume();
  return { child, port };
}
async function startRealtimeStack({ dir, cleanups, redisUrl, relay = true, env = {}, probe = false }) {
  const common = { ...process.env, REDIS_URL: redisUrl, DB_PATH: join(dir, 'gw.db'), MEDIA_ROOT: join(dir, 'media'), JWT_SECRET: secret, LOG_LEVEL: 'info', ...env };
  const execArgv = probe ? ['--expose-gc', '-r', join(root, 'bench/lib/heap-probe.cjs')] : [];
  // BENCH_PROFILE_DIR=/path: relay and realtime run under --cpu-prof (profiles written at exit).
  const profile = process.env.BENCH_PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`] : [];
  let relayPort;
  let relayChild;
  if (relay) {
    relayPort = await freePort();
    ({ child: relayChild } = await startProcess(join(root, 'apps/relay/dist/server.js'), { env: { ...common, RELAY_PORT: String(relayPort) }, cleanups, nodeArgs: profile }));
  }
  const rtPort = await freePort();
  const rt = await forkServer(join(root, 'apps/realtime/dist/server.js'), { env: { ...common, REALTIME_PORT: String(rtPort) }, cleanups, execArgv: [...execArgv, ...profile] });
  if (relay) await waitForHttp(`http://127.0.0.1:${relayPort}/healthz`);
  await waitForHttp(`http://127.0.0.1:${rtPort}/healthz`);
  const bare = await forkServer(join(root, 'bench/lib/bare-socketio-server.mjs'), { env: { ...process.env, REDIS_URL: redisUrl, BARE_CHANNEL: 'bench:bare-progress' }, cleanups, execArgv, portFromStdout: true });
  return { rtPort, relayPort, barePort: bare.port, rtChild: rt.child, bareChild: bare.child, relayChild };
}

async function fanout() {
  const clients = P.fanClients, rate = P.fanRate, seconds = P.fanSeconds, procs = 4;
  log(`fan-out: ${clients} clients, ${rate} events/s for ${seconds} s; relay+realtime vs bare Socket.IO io.to(room).emit`);
  await withEnv(async ({ dir, cleanups, redisUrl }) => {
    const redis = new Redis(redisUrl);
    cleanups.push(() => redis.quit());
    const userId = randomUUID();
    const jobIds = Array.from({ length: clients }, () => randomUUID());
    const pipe = redis.pipeline();
    for (const id of jobIds) pipe.set(`gw:job-owner:${id}`, userId);
    await pipe.exec();
    const { rtPort, barePort, rtChild, bareChild, relayChild } = await startRealtimeStack({ dir, cleanups, redisUrl, env: { RELAY_PROGRESS_PER_SECOND: '1000' } });
    // CPU of the serving processes per delivered message, from /proc (Linux): where the time goes.
    const servers = { ours: { relay: relayChild, realtime: rtChild }, baseline: { bare: bareChild } };
    // One set of client processes per target, connected once and kept for every round; each round
    // publishes to that target's channel only (the relay reads events:progress, the bare server
    // bench:bare-progress), so the idle set costs only idle sockets.
    async function connectSet(port) {
      const per = Math.ceil(clients / procs);
      const children = [];
      await Promise.all(Array.from({ length: procs }, (_, p) => {
        const ids = jobIds.slice(p * per, (p + 1) * per);
        const tokens = ids.map(() => sign({ sub: userId, sid: randomUUID(), role: 'user' }));
        const child = fork(join(root, 'bench/lib/ws-clients.mjs'), [JSON.stringify({ url: `http://127.0.0.1:${port}`, tokens, jobIds: ids })]);
        children.push(child);
        cleanups.push(() => { if (child.exitCode === null) child.kill(); });
        return new Promise((resolve, reject) => child.on('message', (m) => (m.ready ? resolve() : m.error ? reject(new Error(m.error)) : undefined)));
      }));
      return children;
    }
    const t0 = performance.now();
    const sets = { ours: { children: await connectSet(rtPort), channel: 'events:progress', seq: new Map(jobIds.map((id) => [id, 0])) } };
    sets.baseline = { children: await connectSet(barePort), channel: 'bench:bare-progress', seq: new Map(jobIds.map((id) => [id, 0])) };
    log(`  ${clients} clients ×2 connected and subscribed in ${(performance.now() - t0).toFixed(0)} ms`);
    async function round(k, secs, rate) {
      const { children, channel, seq } = sets[k];
      const cpuBefore = Object.fromEntries(Object.entries(servers[k]).map(([name, c]) => [name, cpuMsOf(c.pid)]));
      const { sent, elapsedSeconds: elapsed } = await publishProgressAtRate({ redis, channel, jobIds, seq, rate, seconds: secs });
      // Tail: wait until every message arrived or nothing more arrives for 1 s (at most 30 s), so
      // a backlog never spills into the next round.
      const peek = async () => (await Promise.all(children.map((c) => new Promise((resolve) => { c.once('message', (m) => resolve(m.peek ?? 0)); c.send({ peek: true }); })))).reduce((a, b) => a + b, 0);
      let last = -1, still = 0;
      const tailEnd = Date.now() + 30_000;
      while (Date.now() < tailEnd) {
        await sleep(250);
        const got = await peek();
        if (got >= sent) break;
        still = got === last ? still + 1 : 0;
        if (still >= 4) break;
        last = got;
      }
      const reports = await Promise.all(children.map((c) => new Promise((resolve) => { c.once('message', resolve); c.send({ report: true, keep: true }); })));
      const lags = reports.flatMap((r) => r.lags).sort((a, b) => a - b);
      const received = reports.reduce((a, r) => a + r.received, 0);
      const cpuUsPerMessage = Object.fromEntries(Object.entries(servers[k]).map(([name, c]) => [name, ((cpuMsOf(c.pid) - cpuBefore[name]) * 1000) / Math.max(1, received)]));
      return { sent, received, rate: received / elapsed, gaps: reports.reduce((a, r) => a + r.gaps, 0), p50: quantile(lags, 0.5), p99: quantile(lags, 0.99), max: lags.at(-1), cpuUsPerMessage };
    }
    async function rounds(rate) {
      await round('ours', 1, rate); await round('baseline', 1, rate); // warm-up
      const res = { ours: [], baseline: [] };
      for (let i = 0; i < P.repeats; i++) {
        for (const k of ['ours', 'baseline']) {
          const r = await round(k, seconds, rate);
          res[k].push(r);
          const cpu = Object.entries(r.cpuUsPerMessage).map(([n, us]) => `${n} ${us.toFixed(1)}`).join(', ');
          log(`  fan-out ${rate}/s round ${i + 1} ${k.padEnd(8)} delivered ${r.received}/${r.sent} (${r.rate.toFixed(0)}/s) p50 ${r.p50} p99 ${r.p99} max ${r.max} ms gaps ${r.gaps}; CPU µs/message: ${cpu}`);
        }
      }
      return res;
    }
    const res = await rounds(rate);
    // The same clients at lower rates (full runs): where the path stops keeping up on this machine.
    const more = [];
    for (const r of P.fanMoreRates ?? []) more.push([r, await rounds(r)]);
    for (const set of Object.values(sets)) for (const c of set.children) c.send({ report: true });
    const g = (k, f) => stat(res[k].map(f));
    figure('fan-out', 'deliveries/s', 'msg/s', g('ours', (r) => r.rate), g('baseline', (r) => r.rate), null, `${clients} clients in 4 socket.io-client processes per target, ${rate} events/s published for ${seconds} s per round; RELAY_PROGRESS_PER_SECOND=1000 (coalescing out of the way, default 4/s per job) so every sequence number must arrive`);
    figure('fan-out', 'delivered / published', '%', g('ours', (r) => (100 * r.received) / r.sent), g('baseline', (r) => (100 * r.received) / r.sent), null);
    figure('fan-out', 'lag p99', 'ms', g('ours', (r) => r.p99), g('baseline', (r) => r.p99), { op: '<=', value: 2 });
    figure('fan-out', 'lag p50', 'ms', g('ours', (r) => r.p50), g('baseline', (r) => r.p50), null);
    figure('fan-out', 'CPU per delivered message: relay + realtime vs bare server', 'µs', g('ours', (r) => r.cpuUsPerMessage.relay + r.cpuUsPerMessage.realtime), g('baseline', (r) => r.cpuUsPerMessage.bare), null, 'user + system CPU of the serving processes during the round (/proc), divided by messages delivered; the clients and the publisher are not counted');
    figure('fan-out', 'CPU per delivered message: realtime node alone', 'µs', g('ours', (r) => r.cpuUsPerMessage.realtime), g('baseline', (r) => r.cpuUsPerMessage.bare), null);
    figure('fan-out', 'sequence gaps (sum of rounds)', 'count', res.ours.reduce((a, r) => a + r.gaps, 0), res.baseline.reduce((a, r) => a + r.gaps, 0), { on: 'ours', op: '<=', value: 0 });
    for (const [r, m] of more) {
      const gm = (k, f) => stat(m[k].map(f));
      figure('fan-out', `lag p99 at ${r}/s`, 'ms', gm('ours', (x) => x.p99), gm('baseline', (x) => x.p99), null, `the same ${clients} clients at ${r} events/s: informative (the goal is stated at ${rate}/s)`);
      figure('fan-out', `lag p50 at ${r}/s`, 'ms', gm('ours', (x) => x.p50), gm('baseline', (x) => x.p50), null);
      figure('fan-out', `sequence gaps at ${r}/s`, 'count', m.ours.reduce((a, x) => a + x.gaps, 0), m.baseline.reduce((a, x) => a + x.gaps, 0), { on: 'ours', op: '<=', value: 0 });
    }
  });
}

async function connections() {
  const n = P.connections, procs = Math.max(2, Math.ceil(n / 2500));
  log(`connections: ${n} authenticated sockets on one realtime node vs bare Socket.IO`);
  await withEnv(async ({ dir, cleanups, redisUrl }) => {
    const { rtPort, barePort, rtChild, bareChild } = await startRealtimeStack({ dir, cleanups, redisUrl, relay: false, probe: true });
    const heap = (child) => new Promise((resolve) => {
      const on = (m) => { if (m?.benchHeap !== undefined) { child.off('message', on); resolve(m.benchHeap); } };
      child.on('message', on);
      child.send('bench:heap');
    });
    async function round(k, count) {
      const [port, server] = k === 'ours' ? [rtPort, rtChild] : [barePort, bareChild];
      const h0 = await heap(server);
      const per = Math.ceil(count / procs);
      const t0 = performance.now();
      const children = [];
      const reports = await Promise.all(Array.from({ length: procs }, (_, p) => {
        const child = fork(join(root, 'bench/lib/ws-connect.mjs'), [JSON.stringify({ url: `http://127.0.0.1:${port}`, count: Math.min(per, count - p * per), secret, parallel: 100 })]);
        children.push(child);
        return new Promise((resolve) => child.once('message', resolve));
      }));
      const ms = performance.now() - t0;
      const h1 = await heap(server);
      for (const c of children) c.send({ close: true });
      await Promise.all(children.map((c) => (c.exitCode !== null ? null : new Promise((r) => c.once('exit', r)))));
      await sleep(300);
      const connected = reports.reduce((a, r) => a + r.connected, 0);
      return { connected, failed: reports.reduce((a, r) => a + r.failed, 0), rate: (connected / ms) * 1000, heapPerConn: (h1 - h0) / Math.max(1, connected) };
    }
    await round('ours', Math.min(200, n)); await round('baseline', Math.min(200, n));
    const res = { ours: [], baseline: [] };
    for (let i = 0; i < P.repeats; i++) {
      for (const k of ['ours', 'baseline']) {
        const r = await round(k, n);
        res[k].push(r);
        log(`  connections round ${i + 1} ${k.padEnd(8)} connected ${r.connected} failed ${r.failed} ${r.rate.toFixed(0)}/s heap/conn ${(r.heapPerConn / 1024).toFixed(1)} KiB`);
      }
    }
    const g = (k, f) => stat(res[k].map(f));
    figure('connections', 'heap per connection', 'bytes', g('ours', (r) => r.heapPerConn), g('baseline', (r) => r.heapPerConn), { op: '<=', value: 1.25 }, `${n} sockets; heapUsed after a forced full GC, all connected minus before (IPC probe preloaded with --expose-gc -r bench/lib/heap-probe.cjs in both servers)`);
    figure('connections', 'connection rate', 'conn/s', g('ours', (r) => r.rate), g('baseline', (r) => r.rate), { op: '>=', value: 0.7 }, `${procs} socket.io-client processes, 100 handshakes in flight each (client-bound on 2 cores)`);
    figure('connections', 'failed connections', 'count', res.ours.reduce((a, r) => a + r.failed, 0), res.baseline.reduce((a, r) => a + r.failed, 0), { on: 'ours', op: '<=', value: 0 });
  });
}

// ---------------------------------------------------------------- idle RSS and start-up time
async function processes() {
  log('processes: start-up time and idle RSS of each built process');
  await withEnv(async ({ dir, cleanups, redisUrl }) => {
    const apps = [
      ['api', 'API_PORT'], ['scheduler', 'SCHEDULER_PORT'], ['relay', 'RELAY_PORT'], ['realtime', 'REALTIME_PORT'],
      ['worker-download', 'WORKER_PORT'], ['worker-dub', 'WORKER_PORT'], ['worker-mux', 'WORKER_PORT'],
    ];
    const started = [];
    for (const [app, portVar] of apps) {
      const port = await freePort();
      const env = { ...process.env, REDIS_URL: redisUrl, DB_PATH: join(dir, 'gw.db'), MEDIA_ROOT: join(dir, 'media'), JWT_SECRET: secret, LOG_LEVEL: 'info', ADMIN_PASSWORD: 'bench-password-0123456789', MIN_FREE_DISK_BYTES: '1MB', [portVar]: String(port) };
      const t0 = performance.now();
      const child = fork(join(root, `apps/${app}/dist/server.js`), [], { env, cwd: dir, stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
      cleanups.push(() => new Promise((resolve) => { if (child.exitCode !== null) return resolve(); child.once('exit', resolve); child.kill('SIGTERM'); setTimeout(() => child.kill('SIGKILL'), 10_000).unref(); }));
      let how = 'timeout';
      const ready = new Promise((r) => child.on('message', (m) => { if (m === 'ready' || m?.ready || m?.type === 'ready') { how = 'ready IPC'; r(); } }));
      const healthy = (async () => {
        const end = Date.now() + 20_000;
        while (Date.now() < end) {
          try { const res = await fetch(`http://127.0.0.1:${port}/healthz`); if (res.status === 200) { how = how === 'timeout' ? '200 /healthz' : how; return; } } catch {}
          await sleep(20);
        }
      })();
      await Promise.race([ready, healthy]);
      const ms = performance.now() - t0;
      started.push({ app, port, ms, how });
      log(`  ${app} up in ${ms.toFixed(0)} ms (${how})`);
    }
    await sleep(QUICK ? 2000 : 10000);
    for (const s of started) {
      let rss = null;
      try { rss = parseMetric(await fetch(`http://127.0.0.1:${s.port}/metrics`).then((r) => r.text()), 'process_resident_memory_bytes'); } catch {}
      figure('processes', `start-up ${s.app}`, 'ms', s.ms, null, null, `spawn → ${s.how}`);
      figure('processes', `idle RSS ${s.app}`, 'bytes', rss, null, null);
    }
  });
}

async function listJobs() {
  if (QUICK) { notes.push('listJobs over 1,000,000 jobs: skipped in --quick (building the database takes minutes); run without --quick or `pnpm --filter @dubgate/db bench`.'); return; }
  log('listJobs: packages/db bench over 1,000,000 jobs');
  const out = await new Promise((resolve) => {
    const c = spawn(process.execPath, [join(root, 'packages/db/bench/list-jobs.bench.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = ''; c.stdout.on('data', (d) => (buf += d)); c.on('exit', () => resolve(buf));
  });
  for (const line of out.split('\n')) {
    const m = /^(.+?)\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)\s/.exec(line);
    if (m) {
      figure('listJobs', `${m[1].trim()} p50`, 'ms', Number(m[2]), null, null);
      figure('listJobs', `${m[1].trim()} p99`, 'ms', Number(m[3]), null, { on: 'ours', op: '<=', value: 10 });
    }
  }
}

// ---------------------------------------------------------------- main
const tStart = performance.now();
const cleanupOnSignal = () => process.exit(130);
process.on('SIGINT', cleanupOnSignal);
if (want('ingest')) await ingest();
if (want('drain') || want('burst')) await drainAndBurst();
if (want('fanout')) await fanout();
if (want('connections')) await connections();
if (want('processes')) await processes();
if (want('listjobs')) await listJobs();

const fmtVal = (v, unit) => {
  if (v === null || v === undefined || Number.isNaN(v)) return 'n/a';
  if (unit === 'bytes') return v >= 1048576 ? `${(v / 1048576).toFixed(1)} MiB` : `${(v / 1024).toFixed(1)} KiB`;
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1);
};
const cell = (s, unit) => (s ? `${fmtVal(s.median, unit)}${s.min !== undefined && s.min !== null && s.runs?.length > 1 ? ` (${fmtVal(s.min, unit)}–${fmtVal(s.max, unit)})` : ''}` : '');
const rows = figures.map((f) => [f.workload, `${f.name} [${f.unit}]`, cell(f.ours, f.unit), cell(f.baseline, f.unit), f.ratio === null ? '' : `${f.ratio.toFixed(2)}×`, f.goal ?? '', f.met === null ? '' : f.met ? 'yes' : 'NO']);
const header = ['workload', 'figure', 'ours median (range)', 'baseline median (range)', 'ratio', 'goal', 'met'];
const table = [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
const result = {
  mode: QUICK ? 'quick' : 'full',
  date: new Date().toISOString(),
  durationSeconds: Math.round((performance.now() - tStart) / 1000),
  params: P,
  versions: {
    node: process.version,
    fastify: version('apps/api', 'fastify'),
    bullmq: version('apps/scheduler', 'bullmq'),
    'socket.io': version('apps/realtime', 'socket.io'),
    'socket.io-client': version('bench', 'socket.io-client'),
    autocannon: version('bench', 'autocannon'),
    redis: (() => { try { return /v=(\S+)/.exec(execFileSync('redis-server', ['--version']).toString())?.[1] ?? null; } catch { return null; } })(),
  },
  machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryBytes: os.totalmem(), os: `${os.type()} ${os.release()} ${os.arch()}`, loadavgAtEnd: os.loadavg() },
  figures,
  notes,
};
const outPath = args.out ?? join(root, 'bench/results/latest.json');
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(outPath, JSON.stringify(result, null, 2) + '\n');
console.log(`\n${table}\n`);
for (const n of notes) console.log(`note: ${n}`);
console.log(`\n${QUICK ? 'quick' : 'full'} run in ${result.durationSeconds} s on ${result.machine.cpus} CPUs, ${(result.machine.memoryBytes / 2 ** 30).toFixed(1)} GiB, ${result.machine.os}, node ${process.version}; results in ${outPath}`);
process.exit(0);
