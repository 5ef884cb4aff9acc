// listJobs at scale: builds a database of BENCH_ROWS jobs (default 1,000,000) in a temp dir, then
// times each query shape. Run after building: `pnpm --filter @dubgate/db bench`.
// BENCH_DB=/path/to.db keeps the database (and reuses it when it already has the rows).
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { closeDatabase, openDatabase } from '../dist/open.js';
import { createJobsRepository } from '../dist/jobs-repository.js';
import { uuidv7 } from '../dist/uuid.js';
import { optimizeSearchIndex } from '../dist/maintenance.js';

const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 200);
const keep = process.env.BENCH_DB;
const dir = keep ? null : mkdtempSync(join(tmpdir(), 'dubgate-bench-'));
const path = keep ?? join(dir, 'bench.db');

// Deterministic data: mulberry32.
let seed = 0x9e3779b9;
function rand() {
  seed |= 0;
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const YT = ALNUM + '-_';
const str = (n, chars = ALNUM) => { let s = ''; for (let i = 0; i < n; i++) s += chars[(rand() * chars.length) | 0]; return s; };
const digits = (n) => str(n, '0123456789');
const hex = (n) => str(n, '0123456789abcdef');
const pick = (a) => a[(rand() * a.length) | 0];
function weighted(entries) {
  const total = entries.reduce((s, [, w]) => s + w, 0);
  return () => { let r = rand() * total; for (const [v, w] of entries) { if ((r -= w) < 0) return v; } return entries[0][0]; };
}
const WORDS = ['music', 'live', 'official', 'trailer', 'tutorial', 'cooking', 'news', 'review', 'gaming', 'travel',
  'podcast', 'interview', 'highlights', 'documentary', 'lecture', 'concert', 'remix', 'cover', 'vlog', 'unboxing',
  'science', 'history', 'football', 'piano', 'guitar', 'speedrun', 'recipe', 'comedy', 'debate', 'keynote'];
const USERS = Array.from({ length: 400 }, () => `${pick(WORDS)}${digits(3)}`);
const SUBS = ['videos', 'documentaries', 'music', 'gaming', 'science', 'sports', 'movies', 'aww', 'todayilearned'];
const slug = () => `${pick(WORDS)}-${pick(WORDS)}-${pick(WORDS)}`;
const host = weighted([
  [() => `https://www.youtube.com/watch?v=${str(11, YT)}`, 30],
  [() => `https://youtu.be/${str(11, YT)}`, 10],
  [() => `https://m.youtube.com/watch?v=${str(11, YT)}&t=${digits(3)}s`, 3],
  [() => `https://vimeo.com/${digits(9)}`, 8],
  [() => `https://www.dailymotion.com/video/x${str(7).toLowerCase()}`, 5],
  [() => `https://www.twitch.tv/videos/${digits(10)}`, 5],
  [() => `https://www.tiktok.com/@${pick(USERS)}/video/${digits(19)}`, 6],
  [() => `https://twitter.com/${pick(USERS)}/status/${digits(19)}`, 3],
  [() => `https://x.com/${pick(USERS)}/status/${digits(19)}`, 4],
  [() => `https://www.instagram.com/reel/${str(11)}/`, 4],
  [() => `https://www.facebook.com/watch/?v=${digits(15)}`, 3],
  [() => `https://www.reddit.com/r/${pick(SUBS)}/comments/${str(6).toLowerCase()}/${slug().replace(/-/g, '_')}/`, 3],
  [() => `https://soundcloud.com/${pick(USERS)}/${slug()}`, 3],
  [() => `https://www.bilibili.com/video/BV${str(10)}`, 3],
  [() => `https://archive.org/details/${slug()}-${digits(4)}`, 2],
  [() => `https://www.nicovideo.jp/watch/sm${digits(8)}`, 2],
  [() => `https://rumble.com/v${str(6).toLowerCase()}-${slug()}.html`, 2],
  [() => `https://streamable.com/${str(6).toLowerCase()}`, 1],
  [() => `https://odysee.com/@${pick(USERS)}:${hex(1)}/${slug()}:${hex(1)}`, 1],
  [() => `https://peertube.example.org/w/${str(22)}`, 1],
  [() => `https://cdn.example.net/media/20${digits(2)}/${hex(16)}.mp4`, 1],
]);
// Old jobs are finished; the newest 2% hold the queue backlog and the few running stages.
const RECENT = Math.max(1, Math.floor(ROWS * 0.02));
const oldState = weighted([['COMPLETE', 870], ['FAILED', 80], ['CANCELED', 50]]);
const recentState = weighted([
  ['QUEUED', 700], ['COMPLETE', 200], ['FAILED', 40], ['CANCELED', 20], ['DOWNLOADING', 5],
  ['DOWNLOADED', 5], ['DUBBING', 15], ['DUBBED', 5], ['MUXING', 10],
]);
const state = (i) => (i >= ROWS - RECENT ? recentState() : oldState());

function build(db) {
  const users = ['admin', 'alice', 'bob'].map((u) => ({ id: uuidv7(), username: u }));
  const addUser = db.prepare(`INSERT INTO users (id, username, password_hash, role, created_at) VALUES (?, ?, 'x', ?, ?)`);
  for (const u of users) addUser.run(u.id, u.username, u.username === 'admin' ? 'admin' : 'user', new Date().toISOString());
  const owner = weighted([[users[0].id, 15], [users[1].id, 55], [users[2].id, 30]]);
  const addJob = db.prepare(`INSERT INTO jobs (id, owner_id, url, requested_dubbing, target_lang, format_preset,
      output_container, state, generation, attempt, failed_stage, error_code, error_message, output_path, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, 'best', 'mp4', ?, 0, 1, ?, ?, ?, ?, ?, ?)`);
  const addMedia = db.prepare(`INSERT INTO media (job_id, kind, path, size_bytes, duration_sec, width, height, title, created_at)
    VALUES (?, 'source', ?, ?, ?, 1920, 1080, ?, ?)`);
  const start = Date.now() - 365 * 24 * 3600 * 1000;
  const step = (365 * 24 * 3600 * 1000) / ROWS;
  const t0 = performance.now();
  db.transaction(() => {
    for (let i = 0; i < ROWS; i++) {
      const ms = Math.floor(start + i * step);
      const at = new Date(ms).toISOString();
      const id = uuidv7(ms);
      const st = state(i);
      const dub = rand() < 0.3;
      const failed = st === 'FAILED';
      addJob.run(id, owner(), host()(), dub ? 1 : 0, dub ? 'de' : null, st, failed ? pick(['download', 'dub', 'mux']) : null,
        failed ? 'STAGE_FAILED' : null, failed ? 'worker exited with code 1' : null,
        st === 'COMPLETE' ? `${id}/output.mp4` : null, at, at);
      // Jobs past the download have a source file with a title (also searchable).
      if (st !== 'QUEUED' && st !== 'DOWNLOADING' && !(failed && rand() < 0.5) && !(st === 'CANCELED' && rand() < 0.5)) {
        const title = `${pick(WORDS)} ${pick(WORDS)} ${pick(WORDS)} ${digits(2)}`;
        addMedia.run(id, `${id}/source.mp4`, 1000000 + ((rand() * 1e9) | 0), 60 + rand() * 3600, title, at);
      }
      if (i > 0 && i % 200_000 === 0) console.error(`  ${i} rows, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
  })();
  db.exec('ANALYZE');
  // A bulk load leaves the search index in many segments; the periodic merge (mergeSearchIndex) would
  // have folded them as the jobs arrived one by one. BENCH_NO_OPTIMIZE=1 measures without it.
  if (!process.env.BENCH_NO_OPTIMIZE) optimizeSearchIndex(db);
  console.log(`built ${ROWS} jobs in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return users;
}

let db = openDatabase(path);
let users;
const have = db.prepare('SELECT count(*) FROM jobs').pluck().get();
if (have >= ROWS) {
  users = ['admin', 'alice', 'bob'].map((u) => db.prepare('SELECT id, username FROM users WHERE username = ?').get(u));
  console.log(`reusing ${path} (${have} jobs)`);
} else {
  if (have > 0) throw new Error(`${path} holds ${have} jobs; remove it or point BENCH_DB elsewhere`);
  users = build(db);
  // Reopen so the timings below see a normal connection, not the one that wrote the data.
  closeDatabase(db);
  db = openDatabase(path);
}
const size = db.prepare('SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()').pluck().get();
console.log(`database ${(size / 1024 / 1024).toFixed(0)} MiB, SQLite ${db.prepare('SELECT sqlite_version()').pluck().get()}`);

const repo = createJobsRepository(db);
const [admin, alice, bob] = users;
// A narrow search: part of the video id of some existing job.
const sampleUrls = db.prepare('SELECT url FROM jobs WHERE seq % 99991 = 7 LIMIT 10').pluck().all();
const idTerms = sampleUrls.map((u) => u.slice(-8, -1));
const owned = db.prepare(`SELECT url, state FROM jobs WHERE owner_id = ? AND seq % 49999 = 3 LIMIT 10`).all(bob.id);

const shapes = [
  ['status only (admin, FAILED)', [{ statuses: ['FAILED'] }]],
  ['status only (owner, QUEUED+FAILED)', [{ ownerId: alice.id, statuses: ['QUEUED', 'FAILED'] }]],
  ['no filter (owner)', [{ ownerId: bob.id }]],
  ['search only (admin, host)', ['youtube', 'vimeo', 'tiktok', 'reddit', 'watch?v='].map((search) => ({ search }))],
  ['search only (admin, video id)', idTerms.map((search) => ({ search }))],
  ['search only (owner, host/title)', ['youtube', 'documentary', 'twitch'].map((search) => ({ ownerId: alice.id, search }))],
  ['status+search (admin)', [['FAILED', 'youtube'], ['COMPLETE', 'vimeo'], ['CANCELED', 'tiktok'], ['QUEUED', 'dailymotion'], ['FAILED', 'concert']]
    .map(([s, search]) => ({ statuses: [s], search }))],
  ['status+search (owner)', [['FAILED', 'youtube'], ['COMPLETE', 'youtu.be'], ['CANCELED', 'instagram'], ['QUEUED', 'vimeo'], ['FAILED', 'piano']]
    .map(([s, search]) => ({ ownerId: bob.id, statuses: [s], search }))],
  ['status+search (multi-status, owner)', [{ ownerId: alice.id, statuses: ['FAILED', 'CANCELED'], search: 'youtube' }]],
  ['status+search (small set: DUBBING)', [{ statuses: ['DUBBING'], search: 'youtube' }, { ownerId: alice.id, statuses: ['MUXING'], search: 'vimeo' }]],
  ['status+search (sparse: QUEUED+nicovideo)', [{ statuses: ['QUEUED'], search: 'nicovideo' }, { ownerId: bob.id, statuses: ['QUEUED'], search: 'streamable' }]],
  ['status+search (video id)', idTerms.map((search) => ({ statuses: ['COMPLETE'], search }))],
  ['search only (admin, pasted full URL)', sampleUrls.map((search) => ({ search }))],
  ['status+search (owner, pasted full URL)', owned.map(({ url, state }) => ({ ownerId: bob.id, statuses: [state], search: url }))],
  ['status+search (long broad term)', [{ statuses: ['FAILED'], search: 'https://www.youtube.com/watch?v=' }, { ownerId: alice.id, statuses: ['COMPLETE'], search: 'youtube.com/watch' }]],
  ['status+search (short term, LIKE)', [{ statuses: ['FAILED'], search: 'x.' }, { ownerId: alice.id, statuses: ['COMPLETE'], search: 'tv' }]],
];

function time(fn) { const t = performance.now(); const r = fn(); return [performance.now() - t, r]; }
function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { p50: q(0.5), p99: q(0.99), max: s[s.length - 1] };
}
const fmt = (x) => x.toFixed(2).padStart(7);

function run(label, variants, page2) {
  const samples = [];
  let example;
  for (let i = 0; i < 20; i++) repo.listJobs({ limit: 50, ...variants[i % variants.length] }); // warm up
  for (let i = 0; i < RUNS; i++) {
    const v = { limit: 50, ...variants[i % variants.length] };
    if (page2) {
      const first = repo.listJobs(v);
      if (!first.nextCursor) continue;
      const [ms, r] = time(() => repo.listJobs({ ...v, cursor: first.nextCursor }));
      samples.push(ms);
      example ??= r;
    } else {
      const [ms, r] = time(() => repo.listJobs(v));
      samples.push(ms);
      example ??= r;
    }
  }
  const { p50, p99, max } = stats(samples);
  const ex = example ? `items=${example.items.length} total=${example.total}${example.totalExact ? '' : '+'}` : 'no page 2';
  console.log(`${label.padEnd(48)} ${fmt(p50)} ${fmt(p99)} ${fmt(max)}   ${ex}`);
  return { label, p50, p99, max };
}

console.log(`\n${'shape (limit 50, ' + RUNS + ' runs)'.padEnd(48)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'max ms'.padStart(7)}`);
const results = [];
for (const [label, variants] of shapes) results.push(run(label, variants, false));
const shape = (label) => shapes.find(([l]) => l === label)[1];
results.push(run('cursor page 2: status+search (owner)', shape('status+search (owner)'), true));
results.push(run('cursor page 2: search only (admin, host)', shape('search only (admin, host)'), true));
results.push(run('cursor page 2: status only (admin)', shape('status only (admin, FAILED)'), true));
results.push(run('offset 500: status+search (admin)', shape('status+search (admin)').map((v) => ({ ...v, offset: 500 })), false));

const worst = results.filter((r) => r.label.includes('status+search'));
const bad = worst.filter((r) => r.p50 >= 10 || r.p99 >= 10);
console.log(bad.length === 0 ? '\nstatus+search: p50 and p99 under 10 ms in every shape' : `\nOVER 10 ms: ${bad.map((b) => b.label).join(', ')}`);

closeDatabase(db);
if (dir) rmSync(dir, { recursive: true, force: true });
process.exitCode = bad.length === 0 ? 0 : 1;
