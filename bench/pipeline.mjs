// Pipeline benchmark: the built api and the built scheduler as child processes, stage workers
// (plain BullMQ workers, instant valid results) in this process. Submits N jobs at once through
// POST /api/jobs, waits until all are COMPLETE, checks every job's state_change sequence through
// GET /api/jobs/:id, and reports the stage handoff time (a stage's completion to the next stage
// being enqueued): measured directly (BullMQ finishedOn → next job's timestamp) and from the
// scheduler's dubgate_stage_handoff_seconds histogram.
//
//   node bench/pipeline.mjs [--jobs 1000] [--concurrency 32] [--timeout 300]
// Uses REDIS_URL when set (the default prefixes q and gw: use a Redis of its own), else starts
// a private redis-server.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { startRedis, startProcess, freePort, waitForHttp } from './lib/harness.mjs';

const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '32' },
    timeout: { type: 'string', default: '300' },
  },
});
const N = Number(args.jobs);
const inFlight = Number(args.concurrency);
const timeoutMs = Number(args.timeout) * 1000;
const root = new URL('..', import.meta.url).pathname;

// bullmq is a dependency of the scheduler, not of the bench package: load it from there.
const requireFromScheduler = createRequire(join(root, 'apps/scheduler/package.json'));
const { Worker } = await import(pathToFileURL(requireFromScheduler.resolve('bullmq')).href);

const WITH_DUB = ['QUEUED>DOWNLOADING', 'DOWNLOADING>DOWNLOADED', 'DOWNLOADED>DUBBING', 'DUBBING>DUBBED', 'DUBBED>MUXING', 'MUXING>COMPLETE'];
const WITHOUT_DUB = ['QUEUED>DOWNLOADING', 'DOWNLOADING>DOWNLOADED', 'DOWNLOADED>MUXING', 'MUXING>COMPLETE'];

const dir = mkdtempSync(join(tmpdir(), 'dubgate-bench-pipeline-'));
const cleanups = [];
const cleanup = async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
};
process.on('SIGINT', () => cleanup().then(() => process.exit(130)));

function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

/** Quantile from Prometheus histogram buckets (cumulative), interpolating inside a bucket. */
function histogramQuantile(buckets, q) {
  const total = buckets.at(-1)?.count ?? 0;
  if (total === 0) return NaN;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const { le, count } of buckets) {
    if (count >= rank) {
      if (le === Infinity) return prevLe;
      return prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(1, count - prevCount);
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

function parseHistogram(text, name) {
  const buckets = [];
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}_bucket\\{[^}]*le="([^"]+)"[^}]*\\} (\\S+)`).exec(line);
    if (m) buckets.push({ le: m[1] === '+Inf' ? Infinity : Number(m[1]), count: Number(m[2]) });
  }
  return buckets.sort((a, b) => a.le - b.le);
}

const ms = (v) => (Number.isFinite(v) ? `${v.toFixed(1)} ms` : 'n/a');

try {
  const redisUrl = process.env.REDIS_URL ?? (await startRedis(dir, cleanups));
  const apiPort = await freePort();
  const schedulerPort = await freePort();
  const password = 'bench-password-0123456789';
  const common = {
    ...process.env,
    REDIS_URL: redisUrl,
    DB_PATH: join(dir, 'gw.db'),
    MEDIA_ROOT: join(dir, 'media'),
    LOG_LEVEL: 'warn',
    MIN_FREE_DISK_BYTES: '1MB',
    MAX_RETRIES: '3',
  };
  await startProcess(join(root, 'apps/api/dist/server.js'), {
    env: { ...common, API_PORT: String(apiPort), ADMIN_PASSWORD: password, LOGIN_MAX_PER_CLIENT: '1000', JWT_SECRET: 'bench-jwt-secret-0123456789abcdef0123456789abcdef' },
    cleanups,
  });
  await waitForHttp(`http://127.0.0.1:${apiPort}/healthz`);
  // The api created the database first (migrations, admin), then the scheduler opens it.
  await startProcess(join(root, 'apps/scheduler/dist/server.js'), { env: { ...common, SCHEDULER_PORT: String(schedulerPort) }, cleanups });
  await waitForHttp(`http://127.0.0.1:${schedulerPort}/healthz`);

  const base = `http://127.0.0.1:${apiPort}`;
  const login = await fetch(`${base}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password }),
  }).then((r) => r.json());
  const auth = { authorization: `Bearer ${login.token}` };

  // Stage workers: valid results at once. finishedOn (BullMQ's completion time) of each stage run,
  // and the creation time (job.timestamp) of the run that follows it.
  const connection = (() => {
    const u = new URL(redisUrl);
    return { host: u.hostname, port: Number(u.port || 6379), maxRetriesPerRequest: null };
  })();
  const finished = new Map(); // `${jobId}:${stage}` → finishedOn
  const enqueued = new Map(); // `${jobId}:${stage}` → timestamp
  const calls = { download: 0, dub: 0, mux: 0 };
  const processors = {
    download: (d) => ({ mediaPath: `${d.jobId}/source.mp4`, sizeBytes: 1024 }),
    dub: (d) => ({ audioPath: `${d.jobId}/dub.wav`, language: d.targetLang, cues: 3 }),
    mux: (d) => ({ outputPath: `${d.jobId}/output.${d.outputContainer}`, container: d.outputContainer, sizeBytes: 2048 }),
  };
  const workers = [];
  for (const stage of ['download', 'dub', 'mux']) {
    const w = new Worker(
      stage,
      async (job) => {
        calls[stage]++;
        enqueued.set(`${job.data.jobId}:${stage}`, job.timestamp);
        return processors[stage](job.data);
      },
      { connection, prefix: 'q', concurrency: 50 },
    );
    w.on('completed', (job) => finished.set(`${job.data.jobId}:${stage}`, job.finishedOn));
    w.on('error', () => {});
    workers.push(w);
  }
  cleanups.push(() => Promise.all(workers.map((w) => w.close())));

  // Submit N jobs at once, `inFlight` requests at a time.
  const t0 = Date.now();
  const ids = [];
  const dubbed = new Map();
  let failedPosts = 0;
  let nextIndex = 0;
  async function submitter() {
    while (nextIndex < N) {
      const i = nextIndex++;
      const withDub = i % 2 === 0;
      const res = await fetch(`${base}/api/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...auth },
        body: JSON.stringify({ url: `https://videos.example.com/watch?v=bench-${i}`, requestedDubbing: withDub, ...(withDub ? { targetLang: 'es' } : {}) }),
      });
      if (res.status !== 201) {
        failedPosts++;
        continue;
      }
      const { job } = await res.json();
      ids.push(job.id);
      dubbed.set(job.id, withDub);
    }
  }
  await Promise.all(Array.from({ length: inFlight }, submitter));
  const submitMs = Date.now() - t0;
  console.error(`submitted ${ids.length} jobs in ${submitMs} ms (${failedPosts} refused)`);

  // Wait until every job is COMPLETE.
  const deadline = Date.now() + timeoutMs;
  let complete = 0;
  for (;;) {
    const r = await fetch(`${base}/api/jobs?status=COMPLETE&limit=1`, { headers: auth }).then((x) => x.json());
    complete = r.total;
    if (complete >= ids.length) break;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const totalMs = Date.now() - t0;
  console.error(`${complete} COMPLETE after ${totalMs} ms`);

  // Each job's state_change sequence, from the api.
  let wrong = 0;
  const examples = [];
  let i2 = 0;
  async function checker() {
    while (i2 < ids.length) {
      const id = ids[i2++];
      const detail = await fetch(`${base}/api/jobs/${id}`, { headers: auth }).then((x) => x.json());
      const seq = detail.events.filter((e) => e.type === 'state_change').map((e) => `${e.payload.from}>${e.payload.to}`);
      const want = dubbed.get(id) ? WITH_DUB : WITHOUT_DUB;
      if (detail.eventsTruncated || seq.join() !== want.join()) {
        wrong++;
        if (examples.length < 3) examples.push({ id, seq });
      }
    }
  }
  await Promise.all(Array.from({ length: 16 }, checker));

  // Handoff measured directly: next stage's creation minus the previous stage's completion.
  // Also split: while the api was still ingesting (both write the one SQLite file) and after.
  const handoffs = [];
  const quiet = [];
  const submitEnd = t0 + submitMs;
  for (const id of ids) {
    const pairs = dubbed.get(id) ? [['download', 'dub'], ['dub', 'mux']] : [['download', 'mux']];
    for (const [from, to] of pairs) {
      const done = finished.get(`${id}:${from}`);
      const next = enqueued.get(`${id}:${to}`);
      if (done === undefined || next === undefined) continue;
      handoffs.push(next - done);
      if (done > submitEnd) quiet.push(next - done);
    }
  }
  handoffs.sort((a, b) => a - b);
  quiet.sort((a, b) => a - b);

  const metricsText = await fetch(`http://127.0.0.1:${schedulerPort}/metrics`).then((r) => r.text());
  const buckets = parseHistogram(metricsText, 'dubgate_stage_handoff_seconds');

  console.log(`\npipeline, ${N} jobs (half with dubbing), ${inFlight} submissions in flight, workers concurrency 50`);
  console.log(`  jobs submitted          ${ids.length}${failedPosts ? ` (${failedPosts} refused)` : ''}`);
  console.log(`  jobs completed          ${complete}`);
  console.log(`  wrong sequences         ${wrong}${examples.length ? ` e.g. ${JSON.stringify(examples)}` : ''}`);
  console.log(`  stage runs              download ${calls.download}, dub ${calls.dub}, mux ${calls.mux}`);
  console.log(`  submit time             ${submitMs} ms (${((ids.length / submitMs) * 1000).toFixed(0)} jobs/s)`);
  console.log(`  total time              ${totalMs} ms (submit to all COMPLETE)`);
  console.log(`  handoff, measured       p50 ${ms(quantile(handoffs, 0.5))}  p99 ${ms(quantile(handoffs, 0.99))}  max ${ms(handoffs.at(-1))}  (n=${handoffs.length}; BullMQ finishedOn → next job's timestamp)`);
  console.log(`    after ingest ended     p50 ${ms(quantile(quiet, 0.5))}  p99 ${ms(quantile(quiet, 0.99))}  (n=${quiet.length}; completions after the last POST answered)`);
  console.log(
    `  handoff, histogram      p50 ${ms(histogramQuantile(buckets, 0.5) * 1000)}  p99 ${ms(histogramQuantile(buckets, 0.99) * 1000)}  (n=${buckets.at(-1)?.count ?? 0}; dubgate_stage_handoff_seconds, interpolated in buckets)`,
  );
  if (wrong > 0 || complete < ids.length || ids.length < N) process.exitCode = 1;
} finally {
  await cleanup();
}
